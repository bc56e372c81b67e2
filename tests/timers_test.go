package tests

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/store"
)

// The tests in this file pin rules that only show after something happens
// later: a janitor sweep, a key reload, a session's expiry, an
// administrator's change to a client, a secret's expiry. A suite that only
// checks each request at the moment it is made misses all of them (issue
// 10, point 10). Each test names the breakage it exists to catch.

// TestReuseDetectedAfterASweep: a rotated refresh token presented after the
// grace window is reuse and revokes the grant (RFC 9700 §4.14.2), even when
// a janitor tick (Server.RunJobs: store DeleteExpired and the rest) ran in
// between. Catches a sweep that deletes rotated refresh tokens, which
// silently turns reuse detection off: the replay would then be a mere
// "unknown token" and the thief's successor would live on.
func TestReuseDetectedAfterASweep(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil) // default grace window: 30 s
		c, secret, _, first := e.firstTokens(t, "swept", "s")
		refresh := func(rt string) tokenResp {
			return e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, c.ID, secret)
		}
		second := refresh(first.RefreshToken)
		mustEqual(t, "first refresh", second.Status, 200)

		e.clock.Advance(31 * time.Second)   // past the grace window
		e.srv.RunJobs(context.Background()) // a janitor tick

		r := refresh(first.RefreshToken)
		mustEqual(t, "replay of the rotated token after the sweep", r.Error, "invalid_grant")
		r = refresh(second.RefreshToken)
		mustEqual(t, "the successor after the reuse (the grant is revoked)", r.Error, "invalid_grant")
		rs, rsSecret := e.client(store.ClientMetadata{GrantTypes: []string{oauth.GrantClientCredentials}})
		assertInactive(t, "the successor's access token", e.introspect(t, rs.ID, rsSecret, second.AccessToken))
	})
}

// TestCodeReplayDetectedAfterASweep: a redeemed authorization code
// presented again revokes the grant it started (RFC 6749 §4.1.2), even
// when a janitor tick ran in between and the code itself is long
// expired. Catches a sweep that deletes what replay detection needs (the
// grant, or its memory of the code).
func TestCodeReplayDetectedAfterASweep(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		user, pw := e.user("replayed")
		c, secret, redirect := e.loopbackClient(false)
		code := e.codeFor(e.browser(), authRequest{clientID: c.ID, redirectURI: redirect, state: "s", verifier: testVerifier}, user, pw)
		tr := e.postToken(exchangeForm(code, redirect, testVerifier, nil), c.ID, secret)
		mustEqual(t, "exchange", tr.Status, 200)

		e.clock.Advance(10 * time.Minute)   // the code's 60 s are long gone
		e.srv.RunJobs(context.Background()) // a janitor tick
		r := e.postToken(exchangeForm(code, redirect, testVerifier, nil), c.ID, secret)
		mustEqual(t, "replayed code after the sweep", r.Error, "invalid_grant")
		r = e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}}, c.ID, secret)
		mustEqual(t, "the grant's refresh token after the replay", r.Error, "invalid_grant")
	})
}

// keysDown is a real store whose signing keys cannot be read while down is
// set: the database hiccups exactly when a key reload is due.
type keysDown struct {
	store.Store
	down atomic.Bool
}

func (k *keysDown) ListSigningKeys(ctx context.Context) ([]store.SigningKey, error) {
	if k.down.Load() {
		return nil, store.ErrUnavailable
	}
	return k.Store.ListSigningKeys(ctx)
}

// TestFailedKeyReloadKeepsTheKeys: the server re-reads its signing keys on
// a timer. When a reload fails it keeps the keys it has: it goes on
// signing tokens, publishing the JWKS and verifying its own tokens, and
// picks the store up again once it answers. Catches a failed reload that
// leaves the server with no keys (a nil key state: every token request and
// JWKS fetch a panic until the next successful reload).
func TestFailedKeyReloadKeepsTheKeys(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		st := &keysDown{Store: open(t)}
		e := start(t, st, func(o *provider.Options) { o.KeyRefreshInterval = 30 * time.Second })
		svc, secret := e.client(store.ClientMetadata{GrantTypes: []string{oauth.GrantClientCredentials}, Scopes: []string{"read"}})
		kid := func(jwt string) string {
			raw, err := decodeSegment(strings.Split(jwt, ".")[0])
			if err != nil {
				t.Fatal(err)
			}
			var h struct {
				Kid string `json:"kid"`
			}
			if err := json.Unmarshal(raw, &h); err != nil || h.Kid == "" {
				t.Fatalf("token header %s: %v", raw, err)
			}
			return h.Kid
		}
		before := kid(e.ccToken(t, svc.ID, secret, e.issuer+"/api", "read"))

		st.down.Store(true)
		e.clock.Advance(31 * time.Second) // a reload is due, and fails
		tok := e.ccToken(t, svc.ID, secret, e.issuer+"/api", "read")
		mustEqual(t, "signing key after a failed reload", kid(tok), before)

		e.clock.Advance(31 * time.Second) // due again, fails again
		published := map[string]bool{}
		for _, k := range getJSON(t, e.issuer+provider.PathJWKS)["keys"].([]any) {
			published[k.(map[string]any)["kid"].(string)] = true
		}
		if !published[before] {
			t.Fatalf("JWKS after a failed reload lacks the signing key %s: %v", before, published)
		}
		e.clock.Advance(31 * time.Second)
		if m := e.introspect(t, svc.ID, secret, tok); m["active"] != true {
			t.Fatalf("introspection after a failed reload: %v", m)
		}

		st.down.Store(false)
		e.clock.Advance(31 * time.Second)
		mustEqual(t, "signing key once the store is back", kid(e.ccToken(t, svc.ID, secret, e.issuer+"/api", "read")), before)
	})
}

// TestSessionExpires: a login session ends SessionTTL after sign-in; the
// browser is then signed out and an authorization asks for the password
// again. Catches sessions that never expire.
func TestSessionExpires(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		const ttl = 2 * time.Hour
		e := start(t, open(t), func(o *provider.Options) { o.SessionTTL = ttl })
		user, pw := e.user("sleepy")
		c, _, redirect := e.loopbackClient(false)
		b := e.browser()
		mustEqual(t, "login", b.loginAttempt(user, pw).status, http.StatusSeeOther)
		auth := authRequest{clientID: c.ID, redirectURI: redirect, state: "s", verifier: testVerifier, scope: "read"}.url(e.issuer)
		b.authorize(auth, user, pw) // consent given, remembered

		e.clock.Advance(ttl - time.Second)
		mustEqual(t, "apps page a second before the session ends", b.do("GET", provider.PathApps, nil).status, http.StatusOK)
		mustEqual(t, "authorization a second before the session ends", b.do("GET", auth, nil).status, http.StatusFound)

		e.clock.Advance(time.Second)
		p := b.do("GET", provider.PathApps, nil)
		mustEqual(t, "apps page when the session ends", p.status, http.StatusSeeOther)
		if !strings.Contains(p.location, provider.PathLogin) {
			t.Fatalf("expired session sent to %q, want the login page", p.location)
		}
		p = b.do("GET", auth, nil)
		if p.status != http.StatusSeeOther || !strings.Contains(p.location, provider.PathLogin) {
			t.Fatalf("authorization with an expired session: status %d location %q, want a redirect to sign in", p.status, p.location)
		}
	})
}

// TestRefreshNeedsTheGrantType: a client whose registration no longer
// includes refresh_token (an administrator or its own RFC 7592 update
// removed it after it was issued a refresh token) cannot refresh: 400
// unauthorized_client (RFC 6749 §5.2), and the token is not spent. Catches
// a refresh that checks only the token, not the client's grant types.
func TestRefreshNeedsTheGrantType(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		c, secret, _, tr := e.firstTokens(t, "narrowed", "s")
		if tr.RefreshToken == "" {
			t.Fatal("no refresh token for a client registered for refresh_token")
		}
		setGrantTypes := func(gts ...string) {
			t.Helper()
			cur, err := e.store.GetClient(context.Background(), c.ID)
			if err != nil {
				t.Fatal(err)
			}
			m := cur.Metadata
			m.GrantTypes = gts
			if _, err := provider.UpdateClient(&cur, m, false, e.clock.Now(), rand.Reader); err != nil {
				t.Fatalf("UpdateClient: %v", err)
			}
			if _, err := e.store.UpdateClient(context.Background(), cur.ID, replaceClient(cur)); err != nil {
				t.Fatal(err)
			}
			// Changed behind the server's back, as `authz client update`
			// does: the token endpoint's client cache sees it within
			// ClientCacheTTL.
			e.clock.Advance(provider.ClientCacheTTL)
		}
		setGrantTypes(oauth.GrantAuthorizationCode)
		refresh := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}}
		r := e.postToken(refresh, c.ID, secret)
		mustEqual(t, "status without the refresh_token grant", r.Status, http.StatusBadRequest)
		mustEqual(t, "error without the refresh_token grant", r.Error, "unauthorized_client")

		// Refused, not spent: given the grant type back, the same token
		// wins (no reuse, no revoked grant).
		setGrantTypes(oauth.GrantAuthorizationCode, oauth.GrantRefreshToken)
		mustEqual(t, "refresh once allowed again", e.postToken(refresh, c.ID, secret).Status, 200)
	})
}

// TestLoginClearsAccountFailures: a correct password clears the account's
// count of failed sign-ins, so a user who mistypes now and then is never
// locked out by failures spread over a window. Catches a successful login
// that leaves the count where it was.
func TestLoginClearsAccountFailures(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), func(o *provider.Options) {
			o.LoginFailuresPerAccount, o.LoginFailuresPerIP, o.LoginWindow = 3, 100, 10*time.Minute
		})
		user, pw := e.user("typo")
		b := e.browser()
		for round := range 3 {
			for i := range 2 {
				p := b.loginAttempt(user, "wrong")
				if p.status != http.StatusUnauthorized {
					t.Fatalf("round %d, wrong password %d: status %d, want 401 (under the limit of 3 since the last success)", round+1, i+1, p.status)
				}
			}
			mustEqual(t, "correct password after two failures", b.loginAttempt(user, pw).status, http.StatusSeeOther)
		}
	})
}

// TestLogoutNeedsCSRF: POST /logout without the browser's CSRF token (or
// with another one) is refused and signs nobody out; a cross-site page
// cannot end the user's session. Catches a logout that skips the check.
func TestLogoutNeedsCSRF(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		user, pw := e.user("stays")
		b := e.browser()
		mustEqual(t, "login", b.loginAttempt(user, pw).status, http.StatusSeeOther)
		apps := b.do("GET", provider.PathApps, nil)
		mustEqual(t, "apps page", apps.status, http.StatusOK)
		csrf := formFields(apps.body).Get("csrf_token")
		if csrf == "" {
			t.Fatal("the apps page has no CSRF token")
		}
		for name, form := range map[string]url.Values{
			"no csrf_token":    {},
			"empty csrf_token": {"csrf_token": {""}},
			"wrong csrf_token": {"csrf_token": {csrf + "x"}},
		} {
			p := b.do("POST", provider.PathLogout, form)
			mustEqual(t, "logout with "+name, p.status, http.StatusBadRequest)
			mustEqual(t, "still signed in after a logout with "+name, b.do("GET", provider.PathApps, nil).status, http.StatusOK)
		}
		// The same browser with its token signs out: the refusals above
		// were about the token, not the request.
		mustEqual(t, "logout with the token", b.do("POST", provider.PathLogout, url.Values{"csrf_token": {csrf}}).status, http.StatusSeeOther)
		mustEqual(t, "signed out", b.do("GET", provider.PathApps, nil).status, http.StatusSeeOther)
	})
}

// TestExpiredClientSecret: a client secret stops working at its
// SecretExpiresAt (RFC 7591 §3.2.1 client_secret_expires_at) at every
// endpoint that authenticates clients: 401 invalid_client. Catches a
// secret comparison that ignores the expiry.
func TestExpiredClientSecret(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		c, secret, err := provider.NewClient(store.ClientMetadata{
			Name: "Short-lived", TokenEndpointAuthMethod: oauth.AuthClientSecretBasic,
			GrantTypes: []string{oauth.GrantClientCredentials}, Scopes: []string{"read"},
		}, e.clock.Now(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		c.SecretExpiresAt = e.clock.Now().Add(time.Hour)
		if err := e.store.CreateClient(context.Background(), c); err != nil {
			t.Fatal(err)
		}
		cc := url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}}

		e.clock.Advance(time.Hour - time.Second)
		tok := e.postToken(cc, c.ID, secret)
		mustEqual(t, "a second before the secret expires", tok.Status, 200)

		e.clock.Advance(time.Second)
		for _, ep := range []struct {
			name, path string
			form       url.Values
		}{
			{"token", provider.PathToken, cc},
			{"introspection", provider.PathIntrospect, url.Values{"token": {tok.AccessToken}}},
			{"revocation", provider.PathRevoke, url.Values{"token": {tok.AccessToken}}},
		} {
			r := postForm(t, e.issuer+ep.path, ep.form, c.ID, secret)
			mustEqual(t, ep.name+" status with an expired secret", r.Status, http.StatusUnauthorized)
			mustEqual(t, ep.name+" error with an expired secret", r.Error, "invalid_client")
		}
	})
}
