package middleware

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"go/parser"
	"go/token"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authzd/authz/internal/testclock"
)

const resource = "https://api.example.com/mcp"

func newValidator(t testing.TB, ti *testIssuer, mutate func(*Config)) (*Validator, *testclock.Clock) {
	t.Helper()
	clk := testclock.New(time.Now())
	cfg := Config{
		Issuer: ti.url, Resource: resource, Now: clk.Now, Leeway: 5 * time.Second,
		ScopesSupported: []string{"read", "write"}, ResourceName: "Example API",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	v, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v, clk
}

// serve runs one request through Require(scopes...) and returns the
// recorder and the token the handler saw.
func serve(v *Validator, req *http.Request, scopes ...string) (*httptest.ResponseRecorder, *Token) {
	var seen *Token
	h := v.Require(scopes...)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen, _ = TokenFromContext(r.Context())
		w.WriteHeader(http.StatusOK)
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec, seen
}

func bearer(tok string) *http.Request {
	r := httptest.NewRequest("GET", "https://api.example.com/mcp", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	return r
}

func TestValidToken(t *testing.T) {
	t.Parallel()
	ti := newTestIssuer(t, "")
	v, clk := newValidator(t, ti, nil)
	tok := ti.sign(ti.claims(resource, clk.Now()), nil)
	rec, seen := serve(v, bearer(tok), "read")
	if rec.Code != 200 {
		t.Fatalf("status %d: %s %s", rec.Code, rec.Header().Get("WWW-Authenticate"), rec.Body)
	}
	if seen == nil || seen.Subject != "user-1" || seen.ClientID != "app" || !seen.HasScope("write") || seen.Audience[0] != resource || seen.ID != "jti-1" {
		t.Fatalf("token in context: %+v", seen)
	}
	if seen.ExpiresAt.Unix() != clk.Now().Add(10*time.Minute).Unix() {
		t.Fatalf("ExpiresAt %v", seen.ExpiresAt)
	}
	var raw map[string]any
	if err := json.Unmarshal(seen.Claims, &raw); err != nil || raw["client_id"] != "app" {
		t.Fatalf("raw claims %s", seen.Claims)
	}
}

func TestAudience(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		aud  any
		ok   bool
	}{
		{"exact", []string{resource}, true},
		{"as a string", resource, true},
		{"one of several", []string{"https://other.example.com", resource}, true},
		{"trailing slash", []string{resource + "/"}, true},
		{"upper-case scheme and host", []string{"HTTPS://API.Example.COM/mcp"}, true},
		{"default port", []string{"https://api.example.com:443/mcp"}, true},
		{"origin only", []string{"https://api.example.com"}, false},
		{"origin with slash", []string{"https://api.example.com/"}, false},
		{"longer path", []string{resource + "/admin"}, false},
		{"path prefix", []string{"https://api.example.com/mc"}, false},
		{"path case matters", []string{"https://api.example.com/MCP"}, false},
		{"http instead of https", []string{"http://api.example.com/mcp"}, false},
		{"other port", []string{"https://api.example.com:8443/mcp"}, false},
		{"other host", []string{"https://evil.example.com/mcp"}, false},
		{"empty array", []string{}, false},
		{"empty string", "", false},
		{"missing", nil, false},
	}
	ti := newTestIssuer(t, "")
	v, clk := newValidator(t, ti, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ti.claims(resource, clk.Now())
			if tt.aud == nil {
				delete(c, "aud")
			} else {
				c["aud"] = tt.aud
			}
			_, err := v.Validate(context.Background(), ti.sign(c, nil))
			if tt.ok && err != nil {
				t.Fatalf("rejected: %v", err)
			}
			if !tt.ok && !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("err = %v, want ErrInvalidToken", err)
			}
		})
	}
}

func TestRejectedTokens(t *testing.T) {
	t.Parallel()
	ti := newTestIssuer(t, "")
	other := newTestIssuer(t, "")
	v, clk := newValidator(t, ti, nil)
	now := clk.Now()
	with := func(k string, val any) string {
		c := ti.claims(resource, now)
		if val == nil {
			delete(c, k)
		} else {
			c[k] = val
		}
		return ti.sign(c, nil)
	}
	good := ti.sign(ti.claims(resource, now), nil)
	parts := strings.Split(good, ".")
	payload := parts[1]

	// alg none: a header and payload and no signature.
	none := b64(`{"alg":"none","typ":"at+jwt","kid":"k0"}`) + "." + payload + "."
	// Algorithm confusion: HS256 keyed with the public key.
	hsInput := b64(`{"alg":"HS256","typ":"at+jwt","kid":"k0"}`) + "." + payload
	mac := hmac.New(sha256.New, ti.publicJWK())
	mac.Write([]byte(hsInput))
	hs256 := hsInput + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
	// A changed payload under the original signature.
	var claims map[string]any
	raw, _ := base64.RawURLEncoding.DecodeString(payload)
	_ = json.Unmarshal(raw, &claims)
	claims["scope"] = "read write admin"
	forged, _ := json.Marshal(claims)
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(forged) + "." + parts[2]
	// A flipped signature bit.
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	sig[5] ^= 1
	badSig := parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig)

	tests := []struct {
		name, token string
	}{
		{"expired beyond leeway", with("exp", now.Add(-6*time.Second).Unix())},
		{"no exp", with("exp", nil)},
		{"not yet valid", with("nbf", now.Add(time.Minute).Unix())},
		{"issued in the future", with("iat", now.Add(time.Minute).Unix())},
		{"wrong issuer", with("iss", "https://evil.example.com")},
		{"signed by another issuer's key", other.sign(ti.claims(resource, now), nil)},
		{"typ JWT", ti.sign(ti.claims(resource, now), map[string]string{"typ": "JWT"})},
		{"no typ", ti.sign(ti.claims(resource, now), map[string]string{"typ": ""})},
		{"alg none", none},
		{"HS256 with the public key as secret", hs256},
		{"tampered payload", tampered},
		{"bad signature", badSig},
		{"garbage with two dots", "a.b.c"},
		{"claims not JSON", parts[0] + "." + b64("not json") + "." + parts[2]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.Validate(context.Background(), tt.token)
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("err = %v, want ErrInvalidToken", err)
			}
			rec, _ := serve(v, bearer(tt.token))
			if rec.Code != 401 {
				t.Fatalf("status %d", rec.Code)
			}
			wa := rec.Header().Get("WWW-Authenticate")
			if !strings.Contains(wa, `error="invalid_token"`) || !strings.Contains(wa, `resource_metadata="`) {
				t.Fatalf("WWW-Authenticate %q", wa)
			}
			if strings.Contains(wa, tt.token) || strings.Contains(rec.Body.String(), tt.token) {
				t.Fatal("the answer echoes the token")
			}
		})
	}

	t.Run("within leeway", func(t *testing.T) {
		if _, err := v.Validate(context.Background(), with("exp", now.Add(-4*time.Second).Unix())); err != nil {
			t.Fatalf("expired 4s ago with 5s leeway: %v", err)
		}
	})
}

func TestCachedTokenExpires(t *testing.T) {
	t.Parallel()
	ti := newTestIssuer(t, "")
	v, clk := newValidator(t, ti, nil)
	tok := ti.sign(ti.claims(resource, clk.Now()), nil)
	if _, err := v.Validate(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	if v.tokens.len() != 1 {
		t.Fatalf("cache holds %d entries", v.tokens.len())
	}
	clk.Advance(10*time.Minute + 6*time.Second)
	if _, err := v.Validate(context.Background(), tok); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("cached token past exp: %v", err)
	}
}

func TestCacheIsBounded(t *testing.T) {
	t.Parallel()
	ti := newTestIssuer(t, "")
	v, clk := newValidator(t, ti, func(c *Config) { c.CacheSize = 16 })
	for i := range 100 {
		c := ti.claims(resource, clk.Now())
		c["jti"] = strconv.Itoa(i)
		if _, err := v.Validate(context.Background(), ti.sign(c, nil)); err != nil {
			t.Fatal(err)
		}
		if n := v.tokens.len(); n > 16 {
			t.Fatalf("cache grew to %d entries", n)
		}
	}
}

func TestKeyRotationAndRateLimit(t *testing.T) {
	t.Parallel()
	ti := newTestIssuer(t, "")
	v, clk := newValidator(t, ti, func(c *Config) { c.MinRefreshInterval = time.Minute })
	if _, err := v.Validate(context.Background(), ti.sign(ti.claims(resource, clk.Now()), nil)); err != nil {
		t.Fatal(err)
	}
	fetches := ti.jwksHits.Load()

	// A flood of made-up key IDs right after a fetch costs no fetch.
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok := ti.sign(ti.claims(resource, clk.Now()), map[string]string{"kid": "bogus-" + strconv.Itoa(i)})
			if _, err := v.Validate(context.Background(), tok); !errors.Is(err, ErrInvalidToken) {
				t.Errorf("unknown kid: %v", err)
			}
		}()
	}
	wg.Wait()
	if got := ti.jwksHits.Load(); got != fetches {
		t.Fatalf("unknown kids caused %d fetches inside the rate limit", got-fetches)
	}

	// After the interval, a new key is picked up: concurrent requests
	// share one fetch.
	ti.rotate()
	clk.Advance(time.Minute)
	tok := ti.sign(ti.claims(resource, clk.Now()), nil)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := v.Validate(context.Background(), tok); err != nil {
				t.Errorf("token signed with the new key: %v", err)
			}
		}()
	}
	wg.Wait()
	if got := ti.jwksHits.Load() - fetches; got != 1 {
		t.Fatalf("%d fetches for one new key, want 1", got)
	}
}

func TestKeepsLastGoodKeysAndRefreshesInBackground(t *testing.T) {
	t.Parallel()
	ti := newTestIssuer(t, "")
	v, clk := newValidator(t, ti, func(c *Config) { c.RefreshInterval = time.Minute; c.MinRefreshInterval = time.Second })
	ctx := context.Background()
	if _, err := v.Validate(ctx, ti.sign(ti.claims(resource, clk.Now()), nil)); err != nil {
		t.Fatal(err)
	}
	ti.setJWKSDown(true)
	clk.Advance(2 * time.Minute)
	before := ti.jwksHits.Load()
	// The key set is stale and the issuer is down: a new token signed
	// with the known key still validates.
	c := ti.claims(resource, clk.Now())
	c["jti"] = "second"
	if _, err := v.Validate(ctx, ti.sign(c, nil)); err != nil {
		t.Fatalf("with the issuer down: %v", err)
	}
	waitFor(t, func() bool { return ti.jwksHits.Load() > before }, "a background refresh")
	waitFor(t, func() bool { return v.keys.inflightDone() }, "the refresh to finish")
	if _, err := v.Validate(ctx, ti.sign(ti.claims(resource, clk.Now()), nil)); err != nil {
		t.Fatalf("after a failed refresh: %v", err)
	}

	// Back up: the background refresh picks up a rotated key.
	ti.setJWKSDown(false)
	ti.rotate()
	clk.Advance(2 * time.Second)
	c["jti"] = "third"
	if _, err := v.Validate(ctx, ti.sign(c, nil)); err != nil {
		t.Fatalf("new key after recovery: %v", err)
	}
}

func (ks *keyStore) inflightDone() bool {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	return ks.inflight == nil
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestIssuerUnreachableIsUnavailable(t *testing.T) {
	t.Parallel()
	ti := newTestIssuer(t, "")
	tok := ti.sign(ti.claims(resource, time.Now()), nil)
	ti.setJWKSDown(true)
	v, _ := newValidator(t, ti, nil)
	_, err := v.Validate(context.Background(), tok)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	rec, _ := serve(v, bearer(tok))
	if rec.Code != 503 || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("status %d, Retry-After %q", rec.Code, rec.Header().Get("Retry-After"))
	}
	if strings.Contains(rec.Header().Get("WWW-Authenticate"), "invalid_token") {
		t.Fatal("an outage blamed on the token")
	}
}

func TestDiscovery(t *testing.T) {
	t.Parallel()
	t.Run("path-inserted metadata for an issuer with a path", func(t *testing.T) {
		ti := newTestIssuer(t, "/tenants/a")
		v, clk := newValidator(t, ti, nil)
		if _, err := v.Validate(context.Background(), ti.sign(ti.claims(resource, clk.Now()), nil)); err != nil {
			t.Fatal(err)
		}
		if ti.metaHits.Load() != 1 {
			t.Fatalf("metadata fetched %d times", ti.metaHits.Load())
		}
	})
	t.Run("metadata naming another issuer is refused", func(t *testing.T) {
		ti := newTestIssuer(t, "")
		tok := ti.sign(ti.claims(resource, time.Now()), nil)
		v, _ := newValidator(t, ti, func(c *Config) { c.Issuer = ti.url + "/" })
		if _, err := v.Validate(context.Background(), tok); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("explicit JWKS URL skips discovery", func(t *testing.T) {
		ti := newTestIssuer(t, "")
		v, clk := newValidator(t, ti, func(c *Config) { c.JWKSURL = ti.srv.URL + "/jwks" })
		if _, err := v.Validate(context.Background(), ti.sign(ti.claims(resource, clk.Now()), nil)); err != nil {
			t.Fatal(err)
		}
		if ti.metaHits.Load() != 0 {
			t.Fatal("metadata fetched")
		}
	})
}

func TestChallenges(t *testing.T) {
	t.Parallel()
	ti := newTestIssuer(t, "")
	v, clk := newValidator(t, ti, nil)
	tok := ti.sign(ti.claims(resource, clk.Now()), nil)
	prm := `resource_metadata="https://api.example.com/.well-known/oauth-protected-resource/mcp"`
	req := func(mod func(r *http.Request)) *http.Request {
		r := httptest.NewRequest("GET", "https://api.example.com/mcp", nil)
		mod(r)
		return r
	}
	tests := []struct {
		name    string
		r       *http.Request
		scopes  []string
		status  int
		want    []string // in WWW-Authenticate
		notWant []string
	}{
		{"no token", req(func(*http.Request) {}), []string{"read"}, 401, []string{"Bearer ", prm, `scope="read"`}, []string{"error="}},
		{"no token, no scope needed", req(func(*http.Request) {}), nil, 401, []string{prm}, []string{"error=", "scope="}},
		{"basic auth is not a bearer token", req(func(r *http.Request) { r.SetBasicAuth("a", "b") }), nil, 401, []string{prm}, []string{"error="}},
		{"token in the query string is ignored", req(func(r *http.Request) { r.URL.RawQuery = "access_token=" + tok }), nil, 401, []string{prm}, []string{"error="}},
		{"header and query", req(func(r *http.Request) {
			r.URL.RawQuery = "access_token=" + tok
			r.Header.Set("Authorization", "Bearer "+tok)
		}), nil, 400, []string{`error="invalid_request"`}, nil},
		{"two Authorization headers", req(func(r *http.Request) {
			r.Header.Add("Authorization", "Bearer "+tok)
			r.Header.Add("Authorization", "Bearer "+tok)
		}), nil, 400, []string{`error="invalid_request"`}, nil},
		{"empty bearer", req(func(r *http.Request) { r.Header.Set("Authorization", "Bearer ") }), nil, 400, []string{`error="invalid_request"`}, nil},
		{"not token68", req(func(r *http.Request) { r.Header.Set("Authorization", "Bearer a b") }), nil, 401, []string{`error="invalid_token"`}, nil},
		{"lower-case scheme", req(func(r *http.Request) { r.Header.Set("Authorization", "bearer "+tok) }), nil, 200, nil, nil},
		{"missing scope", req(func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }), []string{"read", "admin"}, 403,
			[]string{`error="insufficient_scope"`, `scope="read admin"`, prm}, nil},
		{"scopes held", req(func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }), []string{"read", "write"}, 200, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, _ := serve(v, tt.r, tt.scopes...)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d (%s)", rec.Code, tt.status, rec.Header().Get("WWW-Authenticate"))
			}
			wa := rec.Header().Get("WWW-Authenticate")
			for _, w := range tt.want {
				if !strings.Contains(wa, w) {
					t.Errorf("WWW-Authenticate %q lacks %q", wa, w)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(wa, w) {
					t.Errorf("WWW-Authenticate %q has %q", wa, w)
				}
			}
			if strings.Contains(wa+rec.Body.String(), tok) {
				t.Error("the answer echoes the token")
			}
		})
	}
}

func TestFormBodyToken(t *testing.T) {
	t.Parallel()
	ti := newTestIssuer(t, "")
	v, clk := newValidator(t, ti, nil)
	tok := ti.sign(ti.claims(resource, clk.Now()), nil)
	post := func(body, auth string) *http.Request {
		r := httptest.NewRequest("POST", resource, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		return r
	}
	t.Run("form token alone is ignored", func(t *testing.T) {
		rec, _ := serve(v, post("access_token="+tok, ""))
		mustStatus(t, rec, 401)
		if strings.Contains(rec.Header().Get("WWW-Authenticate"), "error=") {
			t.Fatalf("WWW-Authenticate %q", rec.Header().Get("WWW-Authenticate"))
		}
	})
	t.Run("header and form body", func(t *testing.T) {
		rec, _ := serve(v, post("a=1&access_token="+tok, "Bearer "+tok))
		mustStatus(t, rec, 400)
		if !strings.Contains(rec.Header().Get("WWW-Authenticate"), `error="invalid_request"`) {
			t.Fatalf("WWW-Authenticate %q", rec.Header().Get("WWW-Authenticate"))
		}
	})
	t.Run("the handler still reads the whole body", func(t *testing.T) {
		body := "note=" + strings.Repeat("x", 100<<10) + "&access=ok"
		var got string
		h := v.Require()(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			raw, _ := io.ReadAll(r.Body)
			got = string(raw)
		}))
		for _, b := range []string{"a=1&b=2", body} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, post(b, "Bearer "+tok))
			mustStatus(t, rec, 200)
			if got != b {
				t.Fatalf("handler read %d bytes, want %d", len(got), len(b))
			}
		}
	})
}

func mustStatus(t *testing.T, rec *httptest.ResponseRecorder, want int) {
	t.Helper()
	if rec.Code != want {
		t.Fatalf("status %d, want %d (%s)", rec.Code, want, rec.Header().Get("WWW-Authenticate"))
	}
}

func TestIntrospection(t *testing.T) {
	t.Parallel()
	ti := newTestIssuer(t, "")
	v, clk := newValidator(t, ti, func(c *Config) {
		c.ClientID, c.ClientSecret = "rs", "rs-secret"
		c.IntrospectionCacheTTL = 10 * time.Second
	})
	ctx := context.Background()
	now := clk.Now()
	active := func(aud any, typ string, exp time.Time) map[string]any {
		return map[string]any{"active": true, "sub": "user-2", "client_id": "app", "scope": "read", "aud": aud,
			"iss": ti.url, "exp": exp.Unix(), "iat": now.Unix(), "token_type": typ}
	}
	ti.setActive("opaque-good", active([]string{resource}, "Bearer", now.Add(time.Hour)))
	ti.setActive("opaque-other-aud", active("https://other.example.com", "Bearer", now.Add(time.Hour)))
	ti.setActive("opaque-refresh", active([]string{resource}, "refresh_token", now.Add(time.Hour)))
	ti.setActive("opaque-short", active(resource, "Bearer", now.Add(3*time.Second)))

	tok, err := v.Validate(ctx, "opaque-good")
	if err != nil || tok.Subject != "user-2" || !tok.HasScope("read") {
		t.Fatalf("opaque token: %+v, %v", tok, err)
	}
	for _, bad := range []string{"opaque-unknown", "opaque-other-aud", "opaque-refresh"} {
		if _, err := v.Validate(ctx, bad); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("%s: err = %v", bad, err)
		}
	}

	// Answers are cached: revocation shows after the TTL, not before.
	hits := ti.introHits.Load()
	ti.setActive("opaque-good", map[string]any{"active": false})
	if _, err := v.Validate(ctx, "opaque-good"); err != nil {
		t.Fatalf("within the cache TTL: %v", err)
	}
	if ti.introHits.Load() != hits {
		t.Fatal("a cached answer was asked again")
	}
	clk.Advance(11 * time.Second)
	if _, err := v.Validate(ctx, "opaque-good"); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("revoked token after the cache TTL: %v", err)
	}

	// The cache never outlives the token's exp.
	clk2 := testclock.New(now)
	v2, _ := newValidator(t, ti, func(c *Config) {
		c.ClientID, c.ClientSecret, c.Now, c.Leeway = "rs", "rs-secret", clk2.Now, time.Nanosecond
		c.IntrospectionCacheTTL = time.Hour
	})
	if _, err := v2.Validate(ctx, "opaque-short"); err != nil {
		t.Fatal(err)
	}
	clk2.Advance(4 * time.Second)
	if _, err := v2.Validate(ctx, "opaque-short"); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("past exp: %v", err)
	}

	// An outage of the introspection endpoint is 503, not invalid_token.
	ti.setIntrospectionDown(true)
	if _, err := v.Validate(ctx, "opaque-never-seen"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("introspection down: %v", err)
	}
	rec, _ := serve(v, bearer("opaque-never-seen"))
	if rec.Code != 503 || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("status %d", rec.Code)
	}

	// Wrong credentials are this service's problem, not the token's.
	v3, _ := newValidator(t, ti, func(c *Config) { c.ClientID, c.ClientSecret = "rs", "wrong" })
	ti.setIntrospectionDown(false)
	if _, err := v3.Validate(ctx, "opaque-good"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("bad credentials: %v", err)
	}

	// Without credentials an opaque token is simply invalid.
	v4, _ := newValidator(t, ti, nil)
	if _, err := v4.Validate(ctx, "opaque-good"); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("no introspection: %v", err)
	}
}

func TestCheckRevocation(t *testing.T) {
	t.Parallel()
	ti := newTestIssuer(t, "")
	v, clk := newValidator(t, ti, func(c *Config) {
		c.ClientID, c.ClientSecret, c.CheckRevocation = "rs", "rs-secret", true
		c.IntrospectionCacheTTL = 5 * time.Second
	})
	tok := ti.sign(ti.claims(resource, clk.Now()), nil)
	ti.setActive(tok, map[string]any{"active": true, "aud": resource, "iss": ti.url, "exp": clk.Now().Add(time.Hour).Unix(), "token_type": "Bearer"})
	ctx := context.Background()
	if _, err := v.Validate(ctx, tok); err != nil {
		t.Fatal(err)
	}
	ti.setActive(tok, map[string]any{"active": false})
	if _, err := v.Validate(ctx, tok); err != nil {
		t.Fatalf("within the bound: %v", err)
	}
	clk.Advance(6 * time.Second)
	if _, err := v.Validate(ctx, tok); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("revoked JWT after the bound: %v", err)
	}
}

func TestProtectedResourceMetadata(t *testing.T) {
	t.Parallel()
	ti := newTestIssuer(t, "")
	v, _ := newValidator(t, ti, nil)
	if got := v.MetadataPaths(); len(got) != 2 || got[0] != WellKnownPath+"/mcp" || got[1] != WellKnownPath {
		t.Fatalf("paths %v", got)
	}
	if v.MetadataURL() != "https://api.example.com/.well-known/oauth-protected-resource/mcp" {
		t.Fatalf("url %s", v.MetadataURL())
	}
	rec := httptest.NewRecorder()
	v.ProtectedResourceMetadata().ServeHTTP(rec, httptest.NewRequest("GET", v.MetadataURL(), nil))
	var doc map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil || rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	if doc["resource"] != resource || doc["authorization_servers"].([]any)[0] != ti.url || doc["resource_name"] != "Example API" ||
		doc["bearer_methods_supported"].([]any)[0] != "header" || len(doc["scopes_supported"].([]any)) != 2 {
		t.Fatalf("document %v", doc)
	}
	if rec.Header().Get("Access-Control-Allow-Origin") != "*" {
		t.Fatal("no CORS")
	}

	root, err := New(Config{Issuer: ti.url, Resource: "https://api.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if p := root.MetadataPaths(); len(p) != 1 || p[0] != WellKnownPath {
		t.Fatalf("root resource paths %v", p)
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	ok := Config{Issuer: "https://auth.example.com", Resource: resource}
	tests := []struct {
		name string
		mod  func(*Config)
	}{
		{"no issuer", func(c *Config) { c.Issuer = "" }},
		{"relative issuer", func(c *Config) { c.Issuer = "/auth" }},
		{"no resource", func(c *Config) { c.Resource = "" }},
		{"resource with fragment", func(c *Config) { c.Resource = resource + "#x" }},
		{"HMAC allowed", func(c *Config) { c.Algorithms = []string{"ES256", "HS256"} }},
		{"none allowed", func(c *Config) { c.Algorithms = []string{"none"} }},
		{"secret without id", func(c *Config) { c.ClientSecret = "s" }},
		{"revocation without credentials", func(c *Config) { c.CheckRevocation = true }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mod(&c)
			if _, err := New(c); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if _, err := New(ok); err != nil {
		t.Fatal(err)
	}
}

// TestImportsOnlyStdlibAndJose pins the package's promise to the teams
// that import it: no pgx, no gorilla, nothing of the server. The module's
// internal packages it shares with the server are held to the same rule.
func TestImportsOnlyStdlibAndJose(t *testing.T) {
	t.Parallel()
	const internal = "github.com/authzd/authz/internal/"
	seen := map[string]bool{}
	var check func(dir string)
	check = func(dir string) {
		if seen[dir] {
			return
		}
		seen[dir] = true
		files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
		if len(files) == 0 {
			t.Fatalf("no Go files in %s", dir)
		}
		fset := token.NewFileSet()
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			af, err := parser.ParseFile(fset, f, nil, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range af.Imports {
				p, _ := strconv.Unquote(imp.Path.Value)
				first := strings.SplitN(p, "/", 2)[0]
				switch {
				case strings.HasPrefix(p, internal):
					check(filepath.Join("..", "internal", strings.TrimPrefix(p, internal)))
				case strings.Contains(first, ".") && !strings.HasPrefix(p, "github.com/go-jose/go-jose/v4"):
					t.Errorf("%s imports %s", f, p)
				}
			}
		}
	}
	check(".")
}

// TestScopeChallengeForMCP: one 403 names every scope the operation needs
// (so a client re-authorizes once), scope implication declared by the
// service is honoured, and offline_access appears neither in a challenge
// nor in the protected resource metadata.
func TestScopeChallengeForMCP(t *testing.T) {
	t.Parallel()
	ti := newTestIssuer(t, "")
	v, clk := newValidator(t, ti, func(c *Config) {
		c.ScopeImplies = map[string][]string{"admin": {"write"}, "write": {"read"}}
		c.ScopesSupported = []string{"read", "write", "admin", "offline_access"}
	})
	onlyRead := ti.claims(resource, clk.Now())
	onlyRead["scope"] = "read"
	adminOnly := ti.claims(resource, clk.Now())
	adminOnly["scope"], adminOnly["jti"] = "admin", "jti-admin"
	req := func(tok string) *http.Request {
		r := httptest.NewRequest("GET", "https://api.example.com/mcp", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		return r
	}
	rec, _ := serve(v, req(ti.sign(onlyRead, nil)), "read", "write", "admin", "offline_access")
	wa := rec.Header().Get("WWW-Authenticate")
	if rec.Code != http.StatusForbidden || !strings.Contains(wa, `error="insufficient_scope"`) || !strings.Contains(wa, `scope="read write admin"`) {
		t.Fatalf("status %d, WWW-Authenticate %q: want one 403 naming read write admin", rec.Code, wa)
	}
	if strings.Contains(wa, "offline_access") || !strings.Contains(wa, "resource_metadata=") {
		t.Fatalf("challenge %q", wa)
	}
	// admin implies write implies read: a token with admin alone passes.
	if rec, _ := serve(v, req(ti.sign(adminOnly, nil)), "read", "write"); rec.Code != http.StatusOK {
		t.Fatalf("implied scopes refused: %d %s", rec.Code, rec.Header().Get("WWW-Authenticate"))
	}
	// Implication goes one way only.
	if rec, _ := serve(v, req(ti.sign(onlyRead, nil)), "write"); rec.Code != http.StatusForbidden {
		t.Fatalf("read was taken to imply write: %d", rec.Code)
	}
	mrec := httptest.NewRecorder()
	v.ProtectedResourceMetadata().ServeHTTP(mrec, httptest.NewRequest("GET", "https://api.example.com"+WellKnownPath+"/mcp", nil))
	if body := mrec.Body.String(); strings.Contains(body, "offline_access") || !strings.Contains(body, `"admin"`) {
		t.Fatalf("metadata %s", body)
	}
}

// TestIntrospectionCallerGone: a request whose client hung up (its context
// cancelled, as when an MCP client closes its event stream) while the
// middleware introspects is not the authorization server's failure: no
// WARN line, which operators alert on. The same failure for a caller
// still waiting is a WARN.
func TestIntrospectionCallerGone(t *testing.T) {
	t.Parallel()
	ti := newTestIssuer(t, "")
	var logs strings.Builder
	var mu sync.Mutex
	v, _ := newValidator(t, ti, func(c *Config) {
		c.ClientID, c.ClientSecret = "rs", "rs-secret"
		c.Logger = slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	warned := func() bool { mu.Lock(); defer mu.Unlock(); return strings.Contains(logs.String(), "level=WARN") }
	// Discovery first, so that the cancelled call fails at the
	// introspection request itself.
	if _, err := v.Validate(context.Background(), "opaque-unknown"); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("unknown opaque token: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := v.Validate(ctx, "opaque-caller-gone"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("cancelled caller: %v, want ErrUnavailable", err)
	}
	if warned() {
		t.Fatalf("a cancelled caller's introspection was logged at WARN:\n%s", logs.String())
	}
	mu.Lock()
	debugged := strings.Contains(logs.String(), "level=DEBUG") && strings.Contains(logs.String(), "introspection failed")
	mu.Unlock()
	if !debugged {
		t.Fatalf("no DEBUG line for the cancelled caller's introspection:\n%s", logs.String())
	}

	ti.setIntrospectionDown(true)
	if _, err := v.Validate(context.Background(), "opaque-endpoint-down"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("introspection down: %v", err)
	}
	if !warned() {
		t.Fatalf("an introspection endpoint that is down was not logged at WARN:\n%s", logs.String())
	}
}

// lockedWriter serialises writes to a shared builder.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
