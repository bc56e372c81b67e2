package tests

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/store"
)

// loginAttempt posts the login form from a fresh page (so the CSRF pair is
// valid) and returns the answer.
func (b *browser) loginAttempt(username, password string) page {
	b.t.Helper()
	p := b.do("GET", provider.PathLogin, nil)
	mustEqual(b.t, "login page", p.status, 200)
	f := formFields(p.body)
	f.Set("username", username)
	f.Set("password", password)
	return b.do("POST", provider.PathLogin, f)
}

func TestLoginLimits(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), func(o *provider.Options) {
			o.LoginFailuresPerAccount, o.LoginFailuresPerIP, o.LoginWindow = 3, 6, 10*time.Minute
		})
		t.Run("per account", func(t *testing.T) {
			user, pw := e.user("locked")
			b := e.browser()
			for i := range 3 {
				p := b.loginAttempt(user, "wrong")
				mustEqual(t, "failed attempt "+string(rune('1'+i)), p.status, http.StatusUnauthorized)
			}
			// Even the right password is refused now, with a clear message.
			p := b.loginAttempt(user, pw)
			mustEqual(t, "after the limit", p.status, http.StatusTooManyRequests)
			if !strings.Contains(p.body, "Too many failed sign-in attempts") || p.header.Get("Retry-After") == "" {
				t.Fatalf("429 page: Retry-After %q body %.300s", p.header.Get("Retry-After"), p.body)
			}
			if p.status == http.StatusSeeOther {
				t.Fatal("signed in while limited")
			}
			// Another account from the same address is not locked yet.
			other, otherPw := e.user("unlocked")
			mustEqual(t, "another account", b.loginAttempt(other, otherPw).status, http.StatusSeeOther)
			// After the window the account works again.
			e.clock.Advance(10*time.Minute + time.Second)
			mustEqual(t, "after the window", b.loginAttempt(user, pw).status, http.StatusSeeOther)
		})
		t.Run("per client IP", func(t *testing.T) {
			e.clock.Advance(11 * time.Minute) // a fresh window
			b := e.browser()
			for i := range 6 {
				// Six different accounts: each stays under its own limit,
				// the address does not.
				p := b.loginAttempt("nobody-"+string(rune('a'+i)), "wrong")
				mustEqual(t, "failed attempt", p.status, http.StatusUnauthorized)
			}
			user, pw := e.user("victim-of-neighbour")
			mustEqual(t, "IP limit", b.loginAttempt(user, pw).status, http.StatusTooManyRequests)
		})
	})
}

func TestSessionCookieAttributes(t *testing.T) {
	t.Parallel()
	// check signs in through b and inspects every cookie the login sets.
	check := func(t *testing.T, e *env, b *browser, wantSecure bool) {
		user, pw := e.user("cookie")
		p := b.loginAttempt(user, pw)
		mustEqual(t, "login", p.status, http.StatusSeeOther)
		var found bool
		for _, c := range (&http.Response{Header: p.header}).Cookies() {
			if c.Value == "" || c.MaxAge < 0 {
				continue
			}
			found = true
			if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Secure != wantSecure {
				t.Errorf("cookie %s: HttpOnly=%v SameSite=%v Secure=%v, want Secure=%v", c.Name, c.HttpOnly, c.SameSite, c.Secure, wantSecure)
			}
		}
		if !found {
			t.Fatal("login set no cookie")
		}
	}
	t.Run("http issuer", func(t *testing.T) {
		e := start(t, storeKinds[0].open(t), nil)
		check(t, e, e.browser(), false)
	})
	t.Run("https issuer", func(t *testing.T) {
		// The server is reached over loopback http here, as behind a
		// TLS-terminating proxy; the issuer says https, so cookies are Secure.
		e := start(t, storeKinds[0].open(t), func(o *provider.Options) {
			o.Issuer = "https://auth.example.com"
			o.Resources = []string{"https://api.example.com"}
		})
		b := e.browser()
		b.e = &env{t: t, issuer: e.http.URL, store: e.store, clock: e.clock}
		check(t, e, b, true)
	})
}

func TestConsentPageShowsWhatIsAsked(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		c, _ := e.client(store.ClientMetadata{Name: "Gadget <Pro>", RedirectURIs: []string{"https://gadget.example.org/cb"}})
		user, pw := e.user("consenter")
		b := e.browser()
		req := authRequest{clientID: c.ID, redirectURI: "https://gadget.example.org/cb", state: "s", verifier: testVerifier,
			scope: "read write", resources: []string{"https://mcp.example.com/mcp"}}
		p := b.consentPage(req.url(e.issuer), user, pw)
		mustEqual(t, "consent page", p.status, 200)
		for _, want := range []string{"Gadget &lt;Pro&gt;", "gadget.example.org", "read", "write", "https://mcp.example.com/mcp", `value="allow"`, `value="deny"`, `name="csrf_token"`} {
			if !strings.Contains(p.body, want) {
				t.Errorf("consent page lacks %q", want)
			}
		}
		if strings.Contains(p.body, "Gadget <Pro>") {
			t.Error("client name not escaped")
		}
		for _, ext := range []string{`src="http`, `href="http://`, `href="https://`, "@import", "url(http"} {
			if strings.Contains(p.body, ext) {
				t.Errorf("page refers to an external asset (%s)", ext)
			}
		}
	})
}

func TestEdDSASigning(t *testing.T) {
	t.Parallel()
	e := start(t, storeKinds[0].open(t), func(o *provider.Options) { o.SigningAlgorithm = "EdDSA" })
	svc, secret := e.client(store.ClientMetadata{GrantTypes: []string{oauth.GrantClientCredentials}, Scopes: []string{"read"}})
	tok := e.ccToken(t, svc.ID, secret, e.issuer+"/api", "read")
	raw, _ := decodeSegment(strings.Split(tok, ".")[0])
	if !strings.Contains(string(raw), `"alg":"EdDSA"`) || !strings.Contains(string(raw), `"typ":"at+jwt"`) {
		t.Fatalf("header %s", raw)
	}
	jwks := getJSON(t, e.issuer+provider.PathJWKS)
	k := jwks["keys"].([]any)[0].(map[string]any)
	if k["kty"] != "OKP" || k["crv"] != "Ed25519" || k["d"] != nil {
		t.Fatalf("published key %v", k)
	}
	// The server's own introspection verifies it.
	rs, rsSecret := e.resourceServer(store.ClientMetadata{})
	if m := e.introspect(t, rs.ID, rsSecret, tok); m["active"] != true {
		t.Fatalf("introspection %v", m)
	}
}

func TestLifetimesAreConfigurable(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), func(o *provider.Options) {
			o.AccessTokenTTL = 2 * time.Minute
			o.RefreshIdleTTL = time.Hour
			o.GrantTTL = 3 * time.Hour
		})
		user, pw := e.user("lifetimes")
		a, aSecret, redirect := e.loopbackClient(false)
		code := e.codeFor(e.browser(), authRequest{clientID: a.ID, redirectURI: redirect, state: "s", verifier: testVerifier, scope: "read"}, user, pw)
		tr := e.postToken(exchangeForm(code, redirect, testVerifier, nil), a.ID, aSecret)
		mustEqual(t, "exchange", tr.Status, 200)
		mustEqual(t, "expires_in", tr.ExpiresIn, 120)
		cl := claims(t, tr.AccessToken)
		mustEqual(t, "exp - iat", int(cl["exp"].(float64)-cl["iat"].(float64)), 120)

		refresh := func(rt string) tokenResp {
			return e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, a.ID, aSecret)
		}
		// Used every 50 minutes, the chain stays alive past the idle
		// lifetime, up to the grant's absolute lifetime.
		rt := tr.RefreshToken
		for i := range 3 {
			e.clock.Advance(50 * time.Minute)
			r := refresh(rt)
			mustEqual(t, "refresh "+string(rune('1'+i)), r.Status, 200)
			rt = r.RefreshToken
		}
		// 2h30 into the grant: still fine at 2h55, gone after 3h.
		e.clock.Advance(25 * time.Minute)
		r := refresh(rt)
		mustEqual(t, "at 2h55", r.Status, 200)
		e.clock.Advance(10 * time.Minute)
		mustEqual(t, "past the grant's absolute lifetime", refresh(r.RefreshToken).Error, "invalid_grant")

		// Idle: a fresh grant unused for more than an hour is dead.
		code = e.codeFor(e.browser(), authRequest{clientID: a.ID, redirectURI: redirect, state: "s", verifier: testVerifier, scope: "read"}, user, pw)
		tr = e.postToken(exchangeForm(code, redirect, testVerifier, nil), a.ID, aSecret)
		mustEqual(t, "second exchange", tr.Status, 200)
		e.clock.Advance(61 * time.Minute)
		mustEqual(t, "past the idle lifetime", refresh(tr.RefreshToken).Error, "invalid_grant")
	})
}

// TestLoginLimitsHoldUnderConcurrency: guesses sent at once are counted as
// they arrive, before their passwords are checked, so no more of them are
// checked than the limit allows (house rule 11: the check and the count are
// one store step). Checked first and counted after the fact, all 24 parallel
// guesses were checked against a limit of 3.
func TestLoginLimitsHoldUnderConcurrency(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name              string
		perAccount, perIP int
		sameAccount       bool
		want              int
	}{
		{"per account", 3, 100, true, 3},
		{"per client IP", 100, 4, false, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
				e := start(t, open(t), func(o *provider.Options) {
					o.LoginFailuresPerAccount, o.LoginFailuresPerIP, o.LoginWindow = tc.perAccount, tc.perIP, 10*time.Minute
				})
				user, pw := e.user("raced")
				const guesses = 24
				forms := make([]url.Values, guesses)
				browsers := make([]*browser, guesses)
				for i := range guesses {
					browsers[i] = e.browser()
					p := browsers[i].do("GET", provider.PathLogin, nil)
					mustEqual(t, "login page", p.status, http.StatusOK)
					forms[i] = formFields(p.body)
					forms[i].Set("username", user)
					if !tc.sameAccount {
						forms[i].Set("username", fmt.Sprintf("nobody-%d", i))
					}
					forms[i].Set("password", "a-wrong-guess")
				}
				var (
					mu     sync.Mutex
					status = map[int]int{}
					wg     sync.WaitGroup
				)
				release := make(chan struct{})
				for i := range guesses {
					wg.Go(func() {
						<-release
						p := browsers[i].do("POST", provider.PathLogin, forms[i])
						mu.Lock()
						status[p.status]++
						mu.Unlock()
					})
				}
				close(release)
				wg.Wait()
				if status[http.StatusUnauthorized] != tc.want || status[http.StatusTooManyRequests] != guesses-tc.want {
					t.Fatalf("answers %v: want %d guesses checked (401) and the other %d refused (429)", status, tc.want, guesses-tc.want)
				}
				mustEqual(t, "the right password after the limit", e.browser().loginAttempt(user, pw).status, http.StatusTooManyRequests)
			})
		})
	}
}
