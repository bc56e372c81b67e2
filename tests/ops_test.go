package tests

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/store"
)

// logBuffer collects a server's JSON log lines; handlers write from many
// goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// records returns every log record whose msg is msg.
func (b *logBuffer) records(t testing.TB, msg string) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b.buf.Bytes()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not JSON: %s", sc.Text())
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startLogged starts a server logging JSON at debug level into the returned buffer.
func startLogged(t *testing.T, st store.Store, mutate func(o *provider.Options)) (*env, *logBuffer) {
	logs := &logBuffer{}
	e := start(t, st, func(o *provider.Options) {
		o.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		if mutate != nil {
			mutate(o)
		}
	})
	return e, logs
}

// scrape reads the admin listener's /metrics over real HTTP.
func scrape(t testing.TB, admin string) string {
	t.Helper()
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", resp.StatusCode, raw)
	}
	return string(raw)
}

// metric sums the samples of name whose labels include every pair of
// labels (Prometheus text format). found is false when no sample matched.
func metric(text, name string, labels ...string) (sum float64, found bool) {
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		head := line[:sp]
		ok := true
		for i := 0; i+1 < len(labels); i += 2 {
			if !strings.Contains(head, labels[i]+`="`+labels[i+1]+`"`) {
				ok = false
			}
		}
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		sum += v
		found = true
	}
	return sum, found
}

// confidentialFlow runs a code flow for a new confidential client and
// returns it with its secret, redirect and token response.
func (e *env) confidentialFlow(b *browser, username, password string) (store.Client, string, tokenResp) {
	e.t.Helper()
	c, secret, redirect := e.loopbackClient(false)
	code := e.codeFor(b, authRequest{clientID: c.ID, redirectURI: redirect, state: "s1", scope: "read", verifier: testVerifier}, username, password)
	tr := e.postToken(exchangeForm(code, redirect, testVerifier, nil), c.ID, secret)
	if tr.Status != http.StatusOK {
		e.t.Fatalf("code exchange: %d %s %s", tr.Status, tr.Error, tr.ErrorDescription)
	}
	return c, secret, tr
}

// TestMetrics: after a flow the admin listener's counters have moved, the
// gauges are set by the janitor, the Go and process collectors and pprof are
// there, and the public listener serves none of it.
func TestMetrics(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		admin := httptest.NewServer(e.srv.AdminHandler())
		t.Cleanup(admin.Close)
		username, password := e.user("metrics-user")

		b := e.browser()
		// One wrong password first.
		p := b.do("GET", provider.PathLogin, nil)
		f := formFields(p.body)
		f.Set("username", username)
		f.Set("password", "wrong-password")
		if p = b.do("POST", provider.PathLogin, f); p.status != http.StatusUnauthorized {
			t.Fatalf("wrong password: %d", p.status)
		}
		c, secret, tr := e.confidentialFlow(b, username, password)
		rt := e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}}, c.ID, secret)
		mustEqual(t, "refresh status", rt.Status, http.StatusOK)
		// Within the grace window the old token wins again.
		again := e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}}, c.ID, secret)
		mustEqual(t, "grace refresh status", again.Status, http.StatusOK)
		// After it, the replay revokes the grant.
		e.clock.Advance(time.Hour)
		reuse := e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}}, c.ID, secret)
		mustEqual(t, "reuse error", reuse.Error, "invalid_grant")
		bad := e.postToken(url.Values{"grant_type": {"authorization_code"}, "code": {"nope"}}, c.ID, "wrong-secret")
		mustEqual(t, "bad client", bad.Error, "invalid_client")
		if status, _ := e.register(t, map[string]any{"redirect_uris": []string{"https://app.example.com/cb"}}); status != http.StatusCreated {
			t.Fatalf("registration: %d", status)
		}
		if status, _ := e.register(t, map[string]any{"redirect_uris": []string{"javascript:alert(1)"}}); status != http.StatusBadRequest {
			t.Fatalf("bad registration: %d", status)
		}
		e.srv.RunJobs(context.Background())

		text := scrape(t, admin.URL)
		for _, tt := range []struct {
			name   string
			labels []string
			min    float64
			max    float64
		}{
			{"authz_http_requests_total", []string{"route", provider.PathToken, "method", "POST", "status", "200"}, 3, 3},
			{"authz_http_requests_total", []string{"route", provider.PathToken, "method", "POST", "status", "401"}, 1, 1},
			{"authz_http_requests_total", []string{"route", provider.PathLogin, "method", "POST", "status", "401"}, 1, 1},
			{"authz_http_request_duration_seconds_count", []string{"route", provider.PathToken, "method", "POST"}, 5, 5},
			{"authz_token_requests_total", []string{"grant_type", "authorization_code", "outcome", "ok"}, 1, 1},
			{"authz_token_requests_total", []string{"grant_type", "refresh_token", "outcome", "ok"}, 2, 2},
			{"authz_token_requests_total", []string{"grant_type", "refresh_token", "outcome", "invalid_grant"}, 1, 1},
			{"authz_token_requests_total", []string{"grant_type", "authorization_code", "outcome", "invalid_client"}, 1, 1},
			{"authz_refresh_rotations_total", []string{"outcome", "rotated"}, 1, 1},
			{"authz_refresh_rotations_total", []string{"outcome", "grace"}, 1, 1},
			{"authz_refresh_rotations_total", []string{"outcome", "reuse_detected"}, 1, 1},
			{"authz_logins_total", []string{"outcome", "ok"}, 1, 1},
			{"authz_logins_total", []string{"outcome", "failed"}, 1, 1},
			{"authz_client_registrations_total", []string{"path", "dcr", "outcome", "ok"}, 1, 1},
			{"authz_client_registrations_total", []string{"path", "dcr", "outcome", "invalid_redirect_uri"}, 1, 1},
			{"authz_store_operation_duration_seconds_count", []string{"operation", "ConsumeAuthCode"}, 1, 1},
			{"authz_store_operation_duration_seconds_count", []string{"operation", "RotateRefreshToken"}, 3, 3},
			{"authz_audit_events_total", []string{"event", provider.EventGrantCreated}, 1, 1},
			// The reused grant is revoked; the janitor counted two clients.
			{"authz_clients", nil, 2, 2},
			{"authz_live_grants", nil, 0, 0},
			{"authz_signing_key_age_seconds", nil, 3600, 3600 + 60},
			{"go_goroutines", nil, 1, 1e9},
			{"process_resident_memory_bytes", nil, 1, 1e12},
		} {
			got, found := metric(text, tt.name, tt.labels...)
			if !found || got < tt.min || got > tt.max {
				t.Errorf("%s%v = %v (found %v), want %v..%v", tt.name, tt.labels, got, found, tt.min, tt.max)
			}
		}

		// pprof on the admin listener, nothing of it on the public one.
		resp, err := http.Get(admin.URL + "/debug/pprof/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		mustEqual(t, "admin pprof status", resp.StatusCode, http.StatusOK)
		for _, path := range []string{"/metrics", "/debug/pprof/", "/debug/pprof/heap"} {
			if p := b.do("GET", path, nil); p.status != http.StatusNotFound {
				t.Errorf("public listener GET %s = %d, want 404", path, p.status)
			}
		}
	})
}

// TestMetricsLiveGrants: the gauges count what is live.
func TestMetricsLiveGrants(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		admin := httptest.NewServer(e.srv.AdminHandler())
		t.Cleanup(admin.Close)
		username, password := e.user("gauge-user")
		e.confidentialFlow(e.browser(), username, password)
		e.confidentialFlow(e.browser(), username, password)
		e.srv.RunJobs(context.Background())
		text := scrape(t, admin.URL)
		if got, _ := metric(text, "authz_live_grants"); got != 2 {
			t.Errorf("authz_live_grants = %v, want 2", got)
		}
		if got, _ := metric(text, "authz_clients"); got != 2 {
			t.Errorf("authz_clients = %v, want 2", got)
		}
	})
}

var hexID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// TestRequestIDs: every response carries an id; a trusted proxy's id is
// kept, anyone else's replaced; the id ties the response to its access-log
// line and to every other log line and audit event of the request.
func TestRequestIDs(t *testing.T) {
	t.Parallel()
	e, logs := startLogged(t, memoryStore(), func(o *provider.Options) {
		o.LoginFailuresPerAccount = 100
	})
	trusted, tlogs := startLogged(t, memoryStore(), func(o *provider.Options) {
		o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	})
	get := func(target, id string) http.Header {
		req, _ := http.NewRequest("GET", target, nil)
		if id != "" {
			req.Header.Set(provider.HeaderRequestID, id)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.Header
	}

	a, b := get(e.issuer+provider.PathHealthz, "").Get(provider.HeaderRequestID), get(e.issuer+provider.PathHealthz, "").Get(provider.HeaderRequestID)
	if !hexID.MatchString(a) || !hexID.MatchString(b) || a == b {
		t.Errorf("request ids %q and %q: want two different 32-hex ids", a, b)
	}
	for _, tt := range []struct {
		name     string
		srv      *env
		sent     string
		keptWant bool
	}{
		{"untrusted peer", e, "proxy-id-1", false},
		{"trusted proxy", trusted, "proxy-id-2", true},
		{"trusted proxy, id with spaces and markup", trusted, "a b <script>", false},
		{"trusted proxy, id too long", trusted, strings.Repeat("x", 129), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := get(tt.srv.issuer+provider.PathHealthz, tt.sent).Get(provider.HeaderRequestID)
			if (got == tt.sent) != tt.keptWant {
				t.Errorf("sent %q, answered %q; kept = %v, want %v", tt.sent, got, got == tt.sent, tt.keptWant)
			}
			if !tt.keptWant && !hexID.MatchString(got) {
				t.Errorf("replacement id %q is not 32 hex", got)
			}
		})
	}
	if recs := tlogs.records(t, "request"); len(recs) == 0 || recs[0]["request_id"] == nil {
		t.Errorf("trusted server logged no access line with a request_id: %v", recs)
	}

	// A failed sign-in: its access-log line and its audit line carry the
	// id of the response, and nothing else does.
	username, _ := e.user("rid-user")
	br := e.browser()
	p := br.do("GET", provider.PathLogin, nil)
	f := formFields(p.body)
	f.Set("username", username)
	f.Set("password", "wrong-password")
	p = br.do("POST", provider.PathLogin, f)
	id := p.header.Get(provider.HeaderRequestID)
	var access, audit []map[string]any
	for _, r := range logs.records(t, "request") {
		if r["request_id"] == id {
			access = append(access, r)
		}
	}
	for _, r := range logs.records(t, "audit") {
		if r["request_id"] == id {
			audit = append(audit, r)
		}
	}
	if len(access) != 1 || len(audit) != 1 {
		t.Fatalf("lines with request_id %s: %d access, %d audit; want 1 and 1\n%s", id, len(access), len(audit), logs)
	}
	for k, want := range map[string]any{"method": "POST", "route": provider.PathLogin, "status": float64(401), "level": "INFO"} {
		if access[0][k] != want {
			t.Errorf("access log %s = %v, want %v", k, access[0][k], want)
		}
	}
	if _, ok := access[0]["duration_ms"].(float64); !ok {
		t.Errorf("access log has no duration_ms: %v", access[0])
	}
	mustEqual(t, "audit event", audit[0]["event"], any(provider.EventLoginFailed))

	// The token endpoint knows the client: the access log says which.
	c, secret := e.client(store.ClientMetadata{GrantTypes: []string{oauth.GrantClientCredentials}})
	tr := e.postToken(url.Values{"grant_type": {"client_credentials"}}, c.ID, secret)
	mustEqual(t, "client_credentials", tr.Status, http.StatusOK)
	found := false
	for _, r := range logs.records(t, "request") {
		if r["request_id"] == tr.Header.Get(provider.HeaderRequestID) {
			found = r["client_id"] == c.ID && r["route"] == provider.PathToken
		}
	}
	if !found {
		t.Errorf("no access-log line for the token request with client_id %s", c.ID)
	}
	if strings.Contains(logs.String(), secret) || strings.Contains(logs.String(), tr.AccessToken) {
		t.Errorf("a secret or token reached the log")
	}
}

// TestAccessLogOff: DisableAccessLog removes the per-request line only.
func TestAccessLogOff(t *testing.T) {
	t.Parallel()
	e, logs := startLogged(t, memoryStore(), func(o *provider.Options) { o.DisableAccessLog = true })
	if p := e.browser().do("GET", provider.PathHealthz, nil); p.status != http.StatusOK || p.header.Get(provider.HeaderRequestID) == "" {
		t.Fatalf("healthz: %d, id %q", p.status, p.header.Get(provider.HeaderRequestID))
	}
	if recs := logs.records(t, "request"); len(recs) != 0 {
		t.Errorf("access log disabled, still %d lines", len(recs))
	}
}

func memoryStore() store.Store { return storeKinds[0].open(nil) }

var _ = fmt.Sprint

// TestMetadataDocumentRegistrationObserved: a client ID metadata document
// fetched for the first time is a registration (metric path
// metadata_document, audit client.registered with trust
// metadata-document); fetched again after its lifetime, client.updated; a
// refused one counts with its error code and records nothing.
func TestMetadataDocumentRegistrationObserved(t *testing.T) {
	t.Parallel()
	ds := newDocServer(t)
	e := startWithDocs(t, memoryStore(), ds, nil)
	admin := httptest.NewServer(e.srv.AdminHandler())
	t.Cleanup(admin.Close)
	good := ds.url("/good.json")
	ds.publish("/good.json", 200, http.Header{"Cache-Control": {"max-age=10"}}, map[string]any{"client_id": good, "client_name": "Doc app",
		"redirect_uris": []string{"https://doc.example/cb"}, "token_endpoint_auth_method": "none"})
	bad := ds.url("/bad.json")
	ds.publish("/bad.json", 200, nil, map[string]any{"client_id": "https://elsewhere.example/x.json", "client_name": "Liar", "redirect_uris": []string{"https://doc.example/cb"}})
	authorize := func(id string) int {
		return e.browser().do("GET", authRequest{clientID: id, redirectURI: "https://doc.example/cb", state: "s", verifier: testVerifier}.url(e.issuer), nil).status
	}
	mustEqual(t, "good document", authorize(good), http.StatusSeeOther)
	mustEqual(t, "good document, cached", authorize(good), http.StatusSeeOther)
	mustEqual(t, "bad document", authorize(bad), http.StatusBadRequest)
	e.clock.Advance(6 * time.Minute)
	mustEqual(t, "good document, fetched again", authorize(good), http.StatusSeeOther)

	text := scrape(t, admin.URL)
	for _, tt := range []struct {
		outcome string
		want    float64
	}{{"ok", 2}, {"invalid_client_metadata", 1}} {
		if got, _ := metric(text, "authz_client_registrations_total", "path", "metadata_document", "outcome", tt.outcome); got != tt.want {
			t.Errorf("metadata_document registrations %s = %v, want %v", tt.outcome, got, tt.want)
		}
	}
	evs, err := e.store.ListAuditEvents(t.Context(), store.AuditFilter{ClientID: good})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || evs[0].Name != provider.EventClientRegistered || evs[1].Name != provider.EventClientUpdated ||
		evs[0].Details["trust"] != store.TrustMetadataDocument || evs[0].Actor != provider.ActorClient {
		t.Errorf("audit events of the document client: %+v", evs)
	}
	if evs, _ := e.store.ListAuditEvents(t.Context(), store.AuditFilter{Name: provider.EventClientRegistered}); len(evs) != 1 {
		t.Errorf("client.registered events = %d, want 1 (the refused document records none)", len(evs))
	}
}
