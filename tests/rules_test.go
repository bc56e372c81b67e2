package tests

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/store"
)

// TestLoginCSRF: a login POST without the CSRF field is refused and signs
// nobody in.
func TestLoginCSRF(t *testing.T) {
	t.Parallel()
	e := start(t, storeKinds[0].open(t), nil)
	user, pw := e.user("csrf-victim")
	b := e.browser()
	b.do("GET", provider.PathLogin, nil) // the browser has a CSRF cookie, the attacker's form has no field
	p := b.do("POST", provider.PathLogin, url.Values{"username": {user}, "password": {pw}})
	mustEqual(t, "status", p.status, http.StatusBadRequest)
	for _, c := range p.header.Values("Set-Cookie") {
		if strings.HasPrefix(c, "authz_session=authz_") {
			t.Fatal("a session was set without a CSRF token")
		}
	}
	p = b.do("GET", provider.PathApps, nil)
	mustEqual(t, "still signed out", p.status, http.StatusSeeOther)
}

// TestLogout: signing out ends the browser session (the old cookie is dead
// server-side) and leaves every device's grants alone.
func TestLogout(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		user, pw := e.user("leaver")
		c, secret, redirect := e.loopbackClient(false)
		dev1, dev2 := e.browser(), e.browser()
		var pairs []tokenResp
		for _, b := range []*browser{dev1, dev2} {
			code := e.codeFor(b, authRequest{clientID: c.ID, redirectURI: redirect, state: "s", verifier: testVerifier, scope: "read"}, user, pw)
			pairs = append(pairs, e.postToken(exchangeForm(code, redirect, testVerifier, nil), c.ID, secret))
		}
		u, _ := url.Parse(e.issuer)
		var oldSession string
		for _, ck := range dev1.http.Jar.Cookies(u) {
			if ck.Name == "authz_session" {
				oldSession = ck.Value
			}
		}
		if oldSession == "" {
			t.Fatal("no session cookie")
		}
		apps := dev1.do("GET", provider.PathApps, nil)
		p := dev1.do("POST", provider.PathLogout, url.Values{"csrf_token": {formFields(apps.body).Get("csrf_token")}})
		mustEqual(t, "logout", p.status, http.StatusSeeOther)
		mustEqual(t, "device 1 signed out", dev1.do("GET", provider.PathApps, nil).status, http.StatusSeeOther)

		// Replaying the old cookie does not sign anyone in.
		req, _ := http.NewRequest("GET", e.issuer+provider.PathApps, nil)
		req.AddCookie(&http.Cookie{Name: "authz_session", Value: oldSession})
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		mustEqual(t, "old session cookie", resp.StatusCode, http.StatusSeeOther)

		// Both devices' grants live on.
		for i, pr := range pairs {
			r := e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {pr.RefreshToken}}, c.ID, secret)
			mustEqual(t, "refresh of device "+string(rune('1'+i))+" after logout", r.Status, 200)
		}
		mustEqual(t, "device 2 still signed in", dev2.do("GET", provider.PathApps, nil).status, 200)
	})
}

// TestResourceAllowances: a client limited to some resources cannot ask
// for others, and remembered consent covers only what was granted.
func TestResourceAllowances(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		user, pw := e.user("allowance")
		limited, _ := e.client(store.ClientMetadata{RedirectURIs: []string{"http://127.0.0.1/callback"}, Resources: []string{"https://mcp.example.com/mcp"}})
		redirect := "http://127.0.0.1:" + strconv.Itoa(freePort(t)) + "/callback"
		b := e.browser()
		loc := b.authorize(authRequest{clientID: limited.ID, redirectURI: redirect, state: "s", verifier: testVerifier, resources: []string{"https://other.example.com"}}.url(e.issuer), user, pw)
		mustEqual(t, "resource the client may not use", loc.Query().Get("error"), "invalid_target")
		mustEqual(t, "state", loc.Query().Get("state"), "s")

		c, _, _ := e.loopbackClient(false)
		mcp := []string{"https://mcp.example.com/mcp"}
		both := []string{"https://mcp.example.com/mcp", "https://other.example.com"}
		code := e.codeFor(b, authRequest{clientID: c.ID, redirectURI: redirect, state: "1", verifier: testVerifier, scope: "read", resources: mcp}, user, pw)
		if code == "" {
			t.Fatal("no code")
		}
		// The same request again skips consent.
		p := b.do("GET", authRequest{clientID: c.ID, redirectURI: redirect, state: "2", verifier: testVerifier, scope: "read", resources: mcp}.url(e.issuer), nil)
		mustEqual(t, "remembered", p.status, http.StatusFound)
		// A resource not consented to brings the page back.
		p = b.do("GET", authRequest{clientID: c.ID, redirectURI: redirect, state: "3", verifier: testVerifier, scope: "read", resources: both}.url(e.issuer), nil)
		mustEqual(t, "more resources", p.status, http.StatusOK)
		if !strings.Contains(p.body, `value="allow"`) || !strings.Contains(p.body, "https://other.example.com") {
			t.Fatalf("no consent page for the new resource: %.300s", p.body)
		}
		// So does a scope not consented to.
		p = b.do("GET", authRequest{clientID: c.ID, redirectURI: redirect, state: "4", verifier: testVerifier, scope: "read write", resources: mcp}.url(e.issuer), nil)
		mustEqual(t, "more scopes", p.status, http.StatusOK)
	})
}

// TestDefaultLifetimes pins the documented defaults at their edges: a code
// lives 60 s, a rotated refresh token 30 s more, a grant 90 days.
func TestDefaultLifetimes(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		user, pw := e.user("defaults")
		c, secret, redirect := e.loopbackClient(false)
		code := func() string {
			return e.codeFor(e.browser(), authRequest{clientID: c.ID, redirectURI: redirect, state: "s", verifier: testVerifier}, user, pw)
		}
		exchange := func(code string) tokenResp {
			return e.postToken(exchangeForm(code, redirect, testVerifier, nil), c.ID, secret)
		}
		refresh := func(rt string) tokenResp {
			return e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, c.ID, secret)
		}

		t.Run("code: 59 s yes, 60 s no", func(t *testing.T) {
			c1, c2 := code(), code()
			e.clock.Advance(59 * time.Second)
			mustEqual(t, "at 59 s", exchange(c1).Status, 200)
			e.clock.Advance(time.Second)
			mustEqual(t, "at 60 s", exchange(c2).Error, "invalid_grant")
		})
		t.Run("grace: 29 s yes, 30 s no", func(t *testing.T) {
			tr := exchange(code())
			mustEqual(t, "rotate", refresh(tr.RefreshToken).Status, 200)
			e.clock.Advance(29 * time.Second)
			mustEqual(t, "again at 29 s", refresh(tr.RefreshToken).Status, 200)
			e.clock.Advance(time.Second)
			mustEqual(t, "again at 30 s", refresh(tr.RefreshToken).Error, "invalid_grant")
		})
		t.Run("grant: alive at 89 days, gone at 90", func(t *testing.T) {
			rt := exchange(code()).RefreshToken
			for range 3 { // days 29, 58, 87: within the 30-day idle lifetime each time
				e.clock.Advance(29 * 24 * time.Hour)
				r := refresh(rt)
				mustEqual(t, "refresh", r.Status, 200)
				rt = r.RefreshToken
			}
			// 87 days in: one more refresh at 89 days, then 90.
			e.clock.Advance(2 * 24 * time.Hour)
			r := refresh(rt)
			mustEqual(t, "at 89 days", r.Status, 200)
			e.clock.Advance(24 * time.Hour)
			mustEqual(t, "at 90 days", refresh(r.RefreshToken).Error, "invalid_grant")
		})
	})
}

func TestAuthCodeLifetimeIsCapped(t *testing.T) {
	t.Parallel()
	_, err := provider.New(context.Background(), provider.Options{
		Issuer: "http://127.0.0.1:1", Store: storeKinds[0].open(t), AuthCodeTTL: 11 * time.Minute,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err == nil || !strings.Contains(err.Error(), "10m") {
		t.Fatalf("AuthCodeTTL 11m: err = %v", err)
	}
}

// TestRefreshGraceMeaning (issues 10 and 16): RefreshGrace means one thing
// everywhere: 0 is no grace window (not "the default"), and a window
// shorter than the Retry-After the server sends is refused at start.
func TestRefreshGraceMeaning(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		grace   time.Duration
		wantErr bool
	}{{0, false}, {provider.RetryAfter, false}, {provider.DefaultRefreshGrace, false}, {provider.RetryAfter - time.Millisecond, true}, {-1, true}} {
		srv, err := provider.New(context.Background(), provider.Options{
			Issuer: "http://127.0.0.1:1", Store: storeKinds[0].open(t), RefreshGrace: tc.grace,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if tc.wantErr {
			if err == nil || strings.Contains(err.Error(), "\n") {
				t.Errorf("RefreshGrace %v: err = %v, want a one-line refusal", tc.grace, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("RefreshGrace %v: %v", tc.grace, err)
		}
		if got := srv.Options().RefreshGrace; got != tc.grace {
			t.Errorf("RefreshGrace %v became %v", tc.grace, got)
		}
	}
}

// TestRetiredKeysLeaveTheJWKS: after a rotation the old key stays published
// as long as tokens it signed can live, and no longer.
func TestRetiredKeysLeaveTheJWKS(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		key := make([]byte, 32)
		e := start(t, open(t), func(o *provider.Options) { o.EncryptionKey = key; o.KeyRefreshInterval = time.Second })
		kids := func() map[string]bool {
			out := map[string]bool{}
			for _, k := range getJSON(t, e.issuer+provider.PathJWKS)["keys"].([]any) {
				out[k.(map[string]any)["kid"].(string)] = true
			}
			return out
		}
		before := kids()
		if len(before) != 1 {
			t.Fatalf("keys at start: %v", before)
		}
		if _, err := provider.RotateSigningKeys(context.Background(), e.store, key, "ES256", e.clock.Now(), e.clock.Now(), nil); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(2 * time.Second)
		if got := kids(); len(got) != 2 {
			t.Fatalf("right after rotation: %v", got)
		}
		e.clock.Advance(15*time.Minute + 4*time.Minute) // access-token lifetime + most of the 5 min margin
		if got := kids(); len(got) != 2 {
			t.Fatalf("while old tokens may live: %v", got)
		}
		e.clock.Advance(2 * time.Minute)
		got := kids()
		for k := range before {
			if got[k] {
				t.Fatalf("retired key %s still published after its tokens expired: %v", k, got)
			}
		}
		if len(got) != 1 {
			t.Fatalf("keys at the end: %v", got)
		}
	})
}

// TestTokenEndpointRejectsWrongMethods: a GET to a JSON endpoint is a JSON
// error, not a text page.
func TestTokenEndpointRejectsWrongMethods(t *testing.T) {
	t.Parallel()
	e := start(t, storeKinds[0].open(t), nil)
	for _, p := range []string{provider.PathToken, provider.PathRevoke, provider.PathIntrospect} {
		status, m, _ := jsonCall(t, "GET", e.issuer+p, "", nil)
		mustEqual(t, p+" status", status, http.StatusMethodNotAllowed)
		mustEqual(t, p+" error", m["error"], any("invalid_request"))
	}
}
