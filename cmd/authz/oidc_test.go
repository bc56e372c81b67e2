package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authzd/authz/provider/store"
	"github.com/authzd/authz/provider/store/postgres"
	"github.com/authzd/authz/provider/store/postgres/pgtest"
)

// TestConfigFile: AUTHZ_CONFIG (YAML, or JSON) sets any setting by its flag
// name and declares upstream providers; the environment overrides the
// file, a flag overrides both, and mistakes exit with one line.
func TestConfigFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	yamlFile := filepath.Join(dir, "authz.yaml")
	if err := os.WriteFile(yamlFile, []byte(`
scopes: [read, write]
session-ttl: 2h
providers:
  - name: corp
    display_name: Corp SSO
    type: github
    client_id: Iv1.abc
    client_secret_env: CORP_SECRET
    allowed_email_domains: [example.com]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	jsonFile := filepath.Join(dir, "authz.json")
	if err := os.WriteFile(jsonFile, []byte(`{"scopes": "read", "local-login": "off", "providers": [{"name": "gh", "type": "github", "client_id": "x", "client_secret": "y"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}

	s := startServer(t, []string{"AUTHZ_CONFIG=" + yamlFile, "CORP_SECRET=s3cret", "AUTHZ_SESSION_TTL=3h"})
	get := func(path string) string {
		resp, err := http.Get("http://" + s.addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if body := get("/login"); !strings.Contains(body, "Continue with Corp SSO") || !strings.Contains(body, `name="password"`) {
		t.Fatalf("login page does not offer the configured provider: %s", body)
	}
	if body := get("/.well-known/openid-configuration"); !strings.Contains(body, `"scopes_supported":["read","write","offline_access","openid","profile","email"]`) {
		t.Fatalf("scopes from the file not applied: %s", body)
	}
	if strings.Contains(s.stderr.String(), "s3cret") {
		t.Fatal("the provider secret was logged")
	}

	s2 := startServer(t, []string{"AUTHZ_CONFIG=" + jsonFile})
	resp, err := http.Get("http://" + s2.addr + "/login")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(body), `name="password"`) || !strings.Contains(string(body), "Continue with gh") {
		t.Fatalf("JSON file with local-login off: %s", body)
	}

	for _, tc := range []struct {
		name string
		env  []string
		want string
	}{
		{"unknown key", []string{"AUTHZ_CONFIG=" + writeFile(t, dir, "bad1.yaml", "isuer: x\n")}, `unknown setting "isuer"`},
		{"missing secret env", []string{"AUTHZ_CONFIG=" + yamlFile}, "CORP_SECRET"},
		{"bad provider type", []string{"AUTHZ_CONFIG=" + writeFile(t, dir, "bad2.yaml", "providers: [{name: x, type: saml, client_id: a, client_secret: b}]\n")}, "type must be"},
		{"missing file", []string{"AUTHZ_CONFIG=" + filepath.Join(dir, "nope.yaml")}, "AUTHZ_CONFIG"},
		// A setting of the file is validated as its variable is, and
		// reported under the file's key and path.
		{"bad proxy-headers in the file", []string{"AUTHZ_CONFIG=" + writeFile(t, dir, "bad3.yaml", "proxy-headers: both\n")},
			"AUTHZ_CONFIG " + filepath.Join(dir, "bad3.yaml") + `: proxy-headers="both"`},
		{"bad AUTHZ_OIDC", []string{"AUTHZ_OIDC=maybe"}, "AUTHZ_OIDC"},
		{"local login off without providers", []string{"AUTHZ_LOCAL_LOGIN=off"}, "AUTHZ_LOCAL_LOGIN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := runCmd(t, append(tc.env, "AUTHZ_ADDR=127.0.0.1:0"), "", "serve")
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			if code == 0 || len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
				t.Fatalf("exit %d, stderr %q; want one line mentioning %q", code, stderr, tc.want)
			}
		})
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestUpstreamUsersInCLI: users created through an upstream provider are
// listed with it, and `authz user delete` removes them (their identity
// too); `user create` takes the OpenID Connect profile claims.
func TestUpstreamUsersInCLI(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.URL(t)
	env := []string{"AUTHZ_DATABASE_URL=" + dbURL, "AUTHZ_ENCRYPTION_KEY=" + testEncryptionKey}
	if _, stderr, code := runCmd(t, env, "", "migrate"); code != 0 {
		t.Fatalf("migrate: %s", stderr)
	}
	if _, stderr, code := runCmd(t, env, "pw-alice-long\n", "user", "create", "alice", "--password-stdin", "--email", "alice@example.com", "--email-verified", "--name", "Alice"); code != 0 {
		t.Fatalf("user create: %s", stderr)
	}
	pool, err := pgxpool.New(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	st := postgres.New(pool)
	now := time.Now()
	if _, _, err := st.SignInUpstream(context.Background(), store.UpstreamSignIn{Provider: "corp", Subject: "s-42",
		Profile: store.User{ID: "u-up", Username: "corp:s-42", Provider: "corp", Email: "bob@corp.example", EmailVerified: true, CreatedAt: now}}, now); err != nil {
		t.Fatal(err)
	}
	out, _, code := runCmd(t, env, "", "user", "list")
	if code != 0 {
		t.Fatal("user list failed")
	}
	var aliceLine, upLine string
	for _, l := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(l, "alice "):
			aliceLine = l
		case strings.HasPrefix(l, "corp:s-42 "):
			upLine = l
		}
	}
	if !strings.Contains(aliceLine, "local") || !strings.Contains(aliceLine, "alice@example.com (verified)") ||
		!strings.Contains(upLine, " corp ") || !strings.Contains(upLine, "bob@corp.example") {
		t.Fatalf("user list:\n%s", out)
	}
	if _, stderr, code := runCmd(t, env, "", "user", "delete", "corp:s-42"); code != 0 {
		t.Fatalf("user delete: %s", stderr)
	}
	if ids, err := st.ListIdentities(context.Background(), "u-up"); err != nil || len(ids) != 0 {
		t.Fatalf("identities after delete: %v %v", ids, err)
	}
	u, err := st.GetUserByUsername(context.Background(), "alice")
	if err != nil || u.Name != "Alice" || !u.EmailVerified {
		t.Fatalf("alice = %+v, %v", u, err)
	}
}
