package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/authzd/authz/provider/store/postgres/pgtest"
)

// TestOperate runs the real binary as an operator would: the admin listener
// serves metrics and pprof (the public one neither), the access log ties
// lines to X-Request-ID, and `authz audit list` shows the administrator's
// and the users' actions with every filter.
func TestOperate(t *testing.T) {
	t.Parallel()
	env := []string{"AUTHZ_DATABASE_URL=" + pgtest.URL(t), "AUTHZ_ENCRYPTION_KEY=" + testEncryptionKey, "AUTHZ_LOG_FORMAT=json"}
	if _, stderr, code := runCmd(t, env, "a-long-enough-password\n", "user", "create", "dora", "--password-stdin"); code != 0 {
		t.Fatalf("user create: %s", stderr)
	}
	out, stderr, code := runCmd(t, env, "", "client", "create", "--name", "Ops app", "--redirect-uri", "https://app.example.com/cb", "--json")
	if code != 0 {
		t.Fatalf("client create: %s", stderr)
	}
	var created struct {
		ClientID string `json:"client_id"`
	}
	if err := json.Unmarshal([]byte(out), &created); err != nil {
		t.Fatal(err)
	}
	admin := freeAddr(t)
	s := startServer(t, append(env, "AUTHZ_ADMIN_ADDR="+admin))

	// A failed sign-in over HTTP.
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get("http://" + s.addr + "/login")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`name="csrf_token" value="([^"]+)"`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF field: %s", body)
	}
	resp, err = c.PostForm("http://"+s.addr+"/login", url.Values{"csrf_token": {string(m[1])}, "username": {"dora"}, "password": {"wrong-password"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	reqID := resp.Header.Get("X-Request-ID")
	if resp.StatusCode != http.StatusUnauthorized || reqID == "" {
		t.Fatalf("failed login: %d, request id %q", resp.StatusCode, reqID)
	}

	get := func(u string) (int, string) {
		t.Helper()
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	status, metrics := get("http://" + admin + "/metrics")
	if status != http.StatusOK || !strings.Contains(metrics, `authz_logins_total{outcome="failed"} 1`) || !strings.Contains(metrics, "go_goroutines") {
		t.Errorf("admin /metrics: %d, want the failed login counted and the Go collector:\n%.2000s", status, metrics)
	}
	// The client made before the start is counted at once, not after the
	// janitor's first interval (5 minutes by default).
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(metrics, "\nauthz_clients 1\n"); {
		if time.Now().After(deadline) {
			t.Fatalf("authz_clients after start: want 1 before the janitor's first interval:\n%.3000s", metrics)
		}
		time.Sleep(50 * time.Millisecond)
		_, metrics = get("http://" + admin + "/metrics")
	}
	if status, _ := get("http://" + admin + "/debug/pprof/"); status != http.StatusOK {
		t.Errorf("admin /debug/pprof/ = %d", status)
	}
	for _, p := range []string{"/metrics", "/debug/pprof/"} {
		if status, _ := get("http://" + s.addr + p); status != http.StatusNotFound {
			t.Errorf("public %s = %d, want 404", p, status)
		}
	}
	// The access-log line and the audit line of that request carry its id.
	var access, audit bool
	for _, line := range strings.Split(s.stderr.String(), "\n") {
		if !strings.Contains(line, `"request_id":"`+reqID+`"`) {
			continue
		}
		access = access || strings.Contains(line, `"msg":"request"`) && strings.Contains(line, `"route":"/login"`) && strings.Contains(line, `"status":401`)
		audit = audit || strings.Contains(line, `"msg":"audit"`) && strings.Contains(line, `"event":"login.failed"`)
	}
	if !access || !audit {
		t.Errorf("log lines with request_id %s: access %v, audit %v\n%s", reqID, access, audit, s.stderr.String())
	}

	if _, stderr, code := runCmd(t, env, "", "keys", "rotate"); code != 0 {
		t.Fatalf("keys rotate: %s", stderr)
	}
	if _, stderr, code := runCmd(t, env, "", "user", "unlock", "dora"); code != 0 {
		t.Fatalf("user unlock: %s", stderr)
	}

	events := func(args ...string) []map[string]any {
		t.Helper()
		out, stderr, code := runCmd(t, env, "", append([]string{"audit", "list", "--json"}, args...)...)
		if code != 0 {
			t.Fatalf("audit list %v: %s", args, stderr)
		}
		var evs []map[string]any
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if line == "" {
				continue
			}
			var ev map[string]any
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Fatalf("audit list --json line %q: %v", line, err)
			}
			evs = append(evs, ev)
		}
		return evs
	}
	names := func(evs []map[string]any) string {
		var n []string
		for _, ev := range evs {
			n = append(n, ev["event"].(string))
		}
		return strings.Join(n, ",")
	}
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"everything, oldest first", nil, "client.registered,login.failed,key.rotated,lockout.cleared"},
		{"by user name", []string{"--user", "dora"}, "login.failed,lockout.cleared"},
		{"by client", []string{"--client", created.ClientID}, "client.registered"},
		{"by event", []string{"--event", "key.rotated"}, "key.rotated"},
		{"since a duration", []string{"--since", "1h"}, "client.registered,login.failed,key.rotated,lockout.cleared"},
		{"since a time in the future", []string{"--since", "2999-01-01T00:00:00Z"}, ""},
		{"limit keeps the newest", []string{"--limit", "1"}, "lockout.cleared"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := names(events(tt.args...)); got != tt.want {
				t.Errorf("audit list %v = %s, want %s", tt.args, got, tt.want)
			}
		})
	}
	failed := events("--event", "login.failed")
	if len(failed) != 1 || failed[0]["username"] != "dora" || failed[0]["client_ip"] != "127.0.0.1" || failed[0]["request_id"] != reqID || failed[0]["actor"] != "user" {
		t.Errorf("login.failed as listed: %v", failed)
	}
	if reg := events("--event", "client.registered"); len(reg) != 1 || reg[0]["actor"] != "admin" || reg[0]["details"].(map[string]any)["trust"] != "admin" {
		t.Errorf("client.registered as listed: %v", reg)
	}
	out, _, code = runCmd(t, env, "", "audit", "list")
	if code != 0 || !strings.HasPrefix(out, "TIME") || !strings.Contains(out, "login.failed") || !strings.Contains(out, "dora") {
		t.Errorf("audit list table:\n%s", out)
	}
	_, stderr, code = runCmd(t, env, "", "audit", "list", "--since", "yesterday")
	if code != 2 || !strings.Contains(stderr, `--since "yesterday"`) {
		t.Errorf("audit list --since yesterday: exit %d, %s", code, stderr)
	}
}
