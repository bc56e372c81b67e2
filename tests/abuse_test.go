package tests

// Issue 11, points 3 to 6: each attack replayed over real HTTP, on both
// stores, and refused.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/store"
	"github.com/authzd/authz/provider/store/memory"
	"github.com/authzd/authz/provider/store/postgres"
	"github.com/authzd/authz/provider/store/postgres/pgtest"
)

// sharedStores returns two stores on the same data, as two replicas have:
// one memory store twice, or two pools on one PostgreSQL schema.
func sharedStores(t *testing.T, kind string) (store.Store, store.Store) {
	t.Helper()
	if kind == "memory" {
		m := memory.New()
		return m, m
	}
	u := pgtest.URL(t)
	open := func() store.Store {
		st, err := postgres.Open(context.Background(), u)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(st.Close)
		return st
	}
	return open(), open()
}

// replicaKey is the AUTHZ_ENCRYPTION_KEY replicas share.
var replicaKey = bytes.Repeat([]byte{7}, 32)

// eachSharedStore runs f per store kind with two stores on the same data.
func eachSharedStore(t *testing.T, f func(t *testing.T, a, b store.Store)) {
	for _, kind := range []string{"memory", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			a, b := sharedStores(t, kind)
			f(t, a, b)
		})
	}
}

// syncBuffer is a log sink tests can read while the server writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// registerClient registers a client over RFC 7591, as anyone on the
// internet may (trust level "registered").
func (e *env) registerClient(t *testing.T, body map[string]any) string {
	t.Helper()
	status, m := e.register(t, body)
	mustEqual(t, "registration status", status, http.StatusCreated)
	return m["client_id"].(string)
}

// signIn signs b in through the login page.
func (b *browser) signIn(username, password string) {
	b.t.Helper()
	mustEqual(b.t, "sign in", b.loginAttempt(username, password).status, http.StatusSeeOther)
}

// from makes b's requests come from ip through a trusted proxy.
func (b *browser) from(ip string) *browser {
	b.header = http.Header{"X-Forwarded-For": {ip}}
	return b
}

// RFC 9700 §4.11.2: a self-registered client cannot use us to bounce a
// browser that has not signed in to its URI.
func TestNoPreLoginErrorRedirectForUntrustedClients(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		user, pw := e.user("phished")
		evil := "https://attacker.example/landing"
		regID := e.registerClient(t, map[string]any{"client_name": "Totally Legit", "redirect_uris": []string{evil},
			"token_endpoint_auth_method": "none"})
		admin, _ := e.client(store.ClientMetadata{Name: "Admin app", RedirectURIs: []string{"https://admin-app.example/cb"}})

		// The phishing link: a known client, its registered URI, and a
		// parameter that makes the request fail.
		bad := func(clientID, redirect string) string {
			return e.issuer + provider.PathAuthorize + "?" + url.Values{"client_id": {clientID}, "redirect_uri": {redirect},
				"response_type": {"token"}, "state": {"st-1"}}.Encode()
		}
		b := e.browser()
		p := b.do("GET", bad(regID, evil), nil)
		mustEqual(t, "pre-login status", p.status, http.StatusSeeOther)
		if !strings.Contains(p.location, provider.PathLogin) || strings.HasPrefix(p.location, evil) {
			t.Fatalf("a browser that has not signed in was sent to %q", p.location)
		}
		// The login page does not promise to continue to the app: the
		// request it would continue is not a valid one.
		lp := b.do("GET", p.location, nil)
		if strings.Contains(lp.body, "Totally Legit") {
			t.Fatal("the sign-in page names the client of an invalid request")
		}
		// Once signed in, the error is shown with a link back to the client
		// (with state and iss), never followed by itself: the web URI is
		// the client's choice (TestSignedInErrorsForUntrustedClients).
		f := formFields(lp.body)
		f.Set("username", user)
		f.Set("password", pw)
		p = b.do("POST", provider.PathLogin, f)
		mustEqual(t, "login", p.status, http.StatusSeeOther)
		p = b.do("GET", p.location, nil)
		mustEqual(t, "post-login status", p.status, http.StatusBadRequest)
		u, _ := url.Parse(returnLink(t, p))
		if !strings.HasPrefix(u.String(), evil+"?") || u.Query().Get("error") != "unsupported_response_type" ||
			u.Query().Get("state") != "st-1" || u.Query().Get("iss") != e.issuer {
			t.Fatalf("post-login error link %q", u)
		}

		// An administrator's client keeps the immediate redirect.
		p = e.browser().do("GET", bad(admin.ID, "https://admin-app.example/cb"), nil)
		mustEqual(t, "admin client status", p.status, http.StatusFound)
		if !strings.HasPrefix(p.location, "https://admin-app.example/cb?error=") {
			t.Fatalf("admin client error went to %q", p.location)
		}
	})
}

// RFC 8252 §8.6: remembered consent skips the page only where the redirect
// proves who gets the code; revoking an app forgets its consent.
func TestConsentMeansSomething(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		user, pw := e.user("consenting")
		isConsent := func(p page) bool { return p.status == http.StatusOK && strings.Contains(p.body, `name="decision"`) }

		for _, tc := range []struct {
			name       string
			meta       store.ClientMetadata
			redirect   func() string
			remembered bool
		}{
			{"public loopback, new port", store.ClientMetadata{RedirectURIs: []string{"http://127.0.0.1/callback"}, TokenEndpointAuthMethod: oauth.AuthNone},
				func() string { return fmt.Sprintf("http://127.0.0.1:%d/callback", freePort(t)) }, false},
			{"public private-use scheme", store.ClientMetadata{RedirectURIs: []string{"com.example.app:/cb"}, TokenEndpointAuthMethod: oauth.AuthNone, ApplicationType: "native"},
				func() string { return "com.example.app:/cb" }, false},
			{"public https", store.ClientMetadata{RedirectURIs: []string{"https://spa.example.com/cb"}, TokenEndpointAuthMethod: oauth.AuthNone},
				func() string { return "https://spa.example.com/cb" }, true},
			{"confidential loopback", store.ClientMetadata{RedirectURIs: []string{"http://127.0.0.1/callback"}},
				func() string { return fmt.Sprintf("http://127.0.0.1:%d/callback", freePort(t)) }, true},
		} {
			t.Run(tc.name, func(t *testing.T) {
				c, _ := e.client(tc.meta)
				b := e.browser()
				first := authRequest{clientID: c.ID, redirectURI: tc.redirect(), state: "a", verifier: testVerifier, scope: "read"}
				u := b.authorize(first.url(e.issuer), user, pw)
				if u.Query().Get("code") == "" {
					t.Fatalf("first authorization: %s", u)
				}
				// Same scopes, new port (and a new PKCE pair).
				again := authRequest{clientID: c.ID, redirectURI: tc.redirect(), state: "b", verifier: testVerifier + "-2", scope: "read"}
				p := b.do("GET", again.url(e.issuer), nil)
				if tc.remembered {
					mustEqual(t, "remembered consent", p.status, http.StatusFound)
				} else if !isConsent(p) {
					t.Fatalf("second authorization skipped the consent page: %d %q", p.status, p.location)
				}
			})
		}

		t.Run("revoking the app forgets its consent", func(t *testing.T) {
			c, secret := e.client(store.ClientMetadata{Name: "Revocable", RedirectURIs: []string{"https://revocable.example/cb"}})
			b := e.browser()
			req := authRequest{clientID: c.ID, redirectURI: "https://revocable.example/cb", state: "r", verifier: testVerifier, scope: "read"}
			code := e.codeFor(b, req, user, pw)
			mustEqual(t, "exchange", e.postToken(exchangeForm(code, req.redirectURI, testVerifier, nil), c.ID, secret).Status, 200)
			// Remembered for now.
			mustEqual(t, "remembered consent", b.do("GET", req.url(e.issuer), nil).status, http.StatusFound)

			apps := b.do("GET", provider.PathApps, nil)
			var grantID string
			for _, m := range hiddenRe.FindAllStringSubmatch(apps.body, -1) {
				if m[1] == "grant_id" {
					grantID = m[2]
				}
			}
			if grantID == "" {
				t.Fatalf("no grant on the apps page: %.500s", apps.body)
			}
			f := formFields(apps.body)
			f.Del("grant_id")
			f.Set("grant_id", grantID)
			mustEqual(t, "revoke", b.do("POST", provider.PathApps, f).status, http.StatusSeeOther)
			if p := b.do("GET", req.url(e.issuer), nil); !isConsent(p) {
				t.Fatalf("after revoking, the app was authorized without asking: %d %q", p.status, p.location)
			}
		})
	})
}

func TestLoginLimitsStopAttackersNotUsers(t *testing.T) {
	t.Parallel()
	eachSharedStore(t, func(t *testing.T, stA, stB store.Store) {
		logs := &syncBuffer{}
		opts := func(o *provider.Options) {
			o.EncryptionKey = replicaKey
			o.LoginFailuresPerAccount, o.LoginFailuresPerIP, o.LoginWindow = 3, 6, 10*time.Minute
			o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8")}
		}
		a := start(t, stA, func(o *provider.Options) {
			opts(o)
			o.Logger = slog.New(slog.NewTextHandler(logs, nil))
		})
		// A second replica on the same data; the two clocks move together.
		b := start(t, stB, opts)
		advance := func(d time.Duration) { a.clock.Advance(d); b.clock.Advance(d) }
		user, pw := a.user("target")

		t.Run("per account and address, shared by replicas", func(t *testing.T) {
			attacker := a.browser().from("203.0.113.5")
			for i := range 3 {
				mustEqual(t, fmt.Sprintf("failure %d", i+1), attacker.loginAttempt(user, "guess-"+strconv.Itoa(i)).status, http.StatusUnauthorized)
			}
			p := attacker.loginAttempt(user, pw)
			mustEqual(t, "the attacker's address after the limit, even with the password", p.status, http.StatusTooManyRequests)
			ra, _ := strconv.Atoi(p.header.Get("Retry-After"))
			if ra <= 0 || ra > 600 || !strings.Contains(p.body, "Try again in") {
				t.Fatalf("429: Retry-After %q body %.300s", p.header.Get("Retry-After"), p.body)
			}
			// The other replica sees the same count.
			other := b.browser().from("203.0.113.5")
			mustEqual(t, "the same address at another replica", other.loginAttempt(user, pw).status, http.StatusTooManyRequests)
			// The real user, elsewhere, still signs in, on either replica.
			mustEqual(t, "the user from their own address", a.browser().from("198.51.100.20").loginAttempt(user, pw).status, http.StatusSeeOther)
			mustEqual(t, "the user at the other replica", b.browser().from("198.51.100.21").loginAttempt(user, pw).status, http.StatusSeeOther)

			out := logs.String()
			if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "account=target") || !strings.Contains(out, "ip=203.0.113.5") {
				t.Fatalf("lockout not logged at WARN with account and address: %s", out)
			}
			if strings.Contains(out, pw) || strings.Contains(out, "guess-") {
				t.Fatal("a password reached the log")
			}
		})

		t.Run("a forged X-Forwarded-For entry is not believed", func(t *testing.T) {
			advance(11 * time.Minute)
			victim, vpw := a.user("forged")
			attacker := a.browser().from("203.0.113.6")
			for range 3 {
				attacker.loginAttempt(victim, "wrong")
			}
			// The client prepends addresses; the proxy appended the real one.
			attacker.header.Set("X-Forwarded-For", "192.0.2.77, 203.0.113.6")
			mustEqual(t, "with a forged first hop", attacker.loginAttempt(victim, vpw).status, http.StatusTooManyRequests)
			// Through two trusted proxies, the address before them counts.
			attacker.header.Set("X-Forwarded-For", "203.0.113.6, 10.1.2.3")
			mustEqual(t, "through a second trusted proxy", attacker.loginAttempt(victim, vpw).status, http.StatusTooManyRequests)
			// RFC 7239 Forwarded (AUTHZ_PROXY_HEADERS=forwarded) and IPv6
			// clients counted per /64: TestProxyHeaders.
			mustEqual(t, "the user from elsewhere", a.browser().from("198.51.100.30").loginAttempt(victim, vpw).status, http.StatusSeeOther)
		})

		t.Run("per address", func(t *testing.T) {
			advance(11 * time.Minute)
			spray := a.browser().from("203.0.113.7")
			for i := range 6 {
				mustEqual(t, "spray", spray.loginAttempt("nobody-"+strconv.Itoa(i), "wrong").status, http.StatusUnauthorized)
			}
			fresh, fpw := a.user("neighbour")
			mustEqual(t, "any account from the sprayed address", spray.loginAttempt(fresh, fpw).status, http.StatusTooManyRequests)
			mustEqual(t, "the same account from elsewhere", a.browser().from("198.51.100.40").loginAttempt(fresh, fpw).status, http.StatusSeeOther)
		})

		t.Run("unlock", func(t *testing.T) {
			advance(11 * time.Minute)
			locked, lpw := a.user("unlockme")
			br := a.browser().from("203.0.113.8")
			for range 3 {
				br.loginAttempt(locked, "wrong")
			}
			mustEqual(t, "locked", br.loginAttempt(locked, lpw).status, http.StatusTooManyRequests)
			if _, err := provider.UnlockUser(context.Background(), stA, locked); err != nil {
				t.Fatal(err)
			}
			mustEqual(t, "after unlock, at the other replica", b.browser().from("203.0.113.8").loginAttempt(locked, lpw).status, http.StatusSeeOther)
		})
	})
}

// Without trusted proxies, forwarding headers are the client's own words.
func TestForwardedHeadersIgnoredFromUntrustedPeers(t *testing.T) {
	t.Parallel()
	e := start(t, storeKinds[0].open(t), func(o *provider.Options) { o.LoginFailuresPerAccount = 2 })
	user, pw := e.user("spoofer-target")
	br := e.browser().from("203.0.113.50")
	for range 2 {
		br.loginAttempt(user, "wrong")
	}
	mustEqual(t, "a made-up X-Forwarded-For", e.browser().from("198.51.100.50").loginAttempt(user, pw).status, http.StatusTooManyRequests)
}

// The 11th registration from one address within the hour is refused, with
// the count shared by two server instances on one database.
func TestRegistrationLimitAcrossInstances(t *testing.T) {
	t.Parallel()
	eachSharedStore(t, func(t *testing.T, stA, stB store.Store) {
		defaults := func(o *provider.Options) {
			o.EncryptionKey = replicaKey
			o.RegistrationsPerIP = 0 // the default, 10 per hour
		}
		a, b := start(t, stA, defaults), start(t, stB, defaults)
		body := func(i int) map[string]any {
			return map[string]any{"client_name": fmt.Sprint("reg ", i), "redirect_uris": []string{"https://r.example/cb"}, "token_endpoint_auth_method": "none"}
		}
		for i := range 10 {
			srv := a
			if i%2 == 1 {
				srv = b
			}
			status, m := srv.register(t, body(i))
			mustEqual(t, fmt.Sprintf("registration %d (%v)", i+1, m["error"]), status, http.StatusCreated)
		}
		for _, srv := range []*env{a, b} {
			status, m, h := jsonCall(t, "POST", srv.issuer+provider.PathRegister, "", body(11))
			mustEqual(t, "11th registration", status, http.StatusTooManyRequests)
			ra, _ := strconv.Atoi(h.Get("Retry-After"))
			if ra <= 0 || ra > 3600 || m["error"] == nil {
				t.Fatalf("429: Retry-After %q body %v", h.Get("Retry-After"), m)
			}
		}
		a.clock.Advance(time.Hour)
		status, _ := a.register(t, body(12))
		mustEqual(t, "after the hour", status, http.StatusCreated)
	})
}

// Pages that resist forgery (issue 11 point 6).
func TestFormsResistForgery(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		user, pw := e.user("forgery")

		t.Run("a forged CSRF cookie/field pair is refused", func(t *testing.T) {
			b := e.browser()
			target, _ := url.Parse(e.issuer + "/")
			forged := "authz_csrf_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
			b.http.Jar.SetCookies(target, []*http.Cookie{{Name: "authz_csrf", Value: forged, Path: "/"}})
			p := b.do("POST", provider.PathLogin, url.Values{"csrf_token": {forged}, "username": {user}, "password": {pw}})
			mustEqual(t, "forged pair", p.status, http.StatusBadRequest)
			if p.header.Get("Set-Cookie") != "" && strings.Contains(p.header.Get("Set-Cookie"), "authz_session=authz") {
				t.Fatal("a session was created")
			}
		})

		t.Run("a token from another session is refused", func(t *testing.T) {
			alice, bob := e.browser(), e.browser()
			alice.signIn(user, pw)
			other, opw := e.user("forgery-bob")
			bob.signIn(other, opw)
			aliceToken := formFields(alice.do("GET", provider.PathApps, nil).body).Get("csrf_token")
			p := bob.do("POST", provider.PathLogout, url.Values{"csrf_token": {aliceToken}})
			mustEqual(t, "another session's token", p.status, http.StatusBadRequest)
		})

		t.Run("a cross-origin POST is refused", func(t *testing.T) {
			b := e.browser()
			lp := b.do("GET", provider.PathLogin, nil)
			f := formFields(lp.body)
			f.Set("username", user)
			f.Set("password", pw)
			b.header = http.Header{"Sec-Fetch-Site": {"cross-site"}}
			mustEqual(t, "cross-site sign-in", b.do("POST", provider.PathLogin, f).status, http.StatusBadRequest)
			b.header = http.Header{"Origin": {"https://evil.example"}}
			mustEqual(t, "foreign Origin", b.do("POST", provider.PathLogin, f).status, http.StatusBadRequest)
			b.header = http.Header{"Sec-Fetch-Site": {"same-origin"}}
			mustEqual(t, "same-origin", b.do("POST", provider.PathLogin, f).status, http.StatusSeeOther)
		})

		t.Run("a sign-in replaces the browser's earlier session", func(t *testing.T) {
			b := e.browser()
			b.signIn(user, pw)
			target, _ := url.Parse(e.issuer + "/")
			var old string
			for _, c := range b.http.Jar.Cookies(target) {
				if c.Name == "authz_session" {
					old = c.Value
				}
			}
			if old == "" {
				t.Fatal("no session cookie")
			}
			other, opw := e.user("forgery-second")
			b.signIn(other, opw)
			replay := e.browser()
			replay.http.Jar.SetCookies(target, []*http.Cookie{{Name: "authz_session", Value: old, Path: "/"}})
			p := replay.do("GET", provider.PathApps, nil)
			if p.status != http.StatusSeeOther || !strings.Contains(p.location, provider.PathLogin) {
				t.Fatalf("the earlier session still works: %d %q", p.status, p.location)
			}
		})

		t.Run("continue to the app only for a valid authorization request", func(t *testing.T) {
			c, _ := e.client(store.ClientMetadata{Name: "Named App", RedirectURIs: []string{"https://named.example/cb"}})
			loginFor := func(returnTo string) string {
				return e.browser().do("GET", provider.PathLogin+"?"+url.Values{"return_to": {returnTo}}.Encode(), nil).body
			}
			valid := authRequest{clientID: c.ID, redirectURI: "https://named.example/cb", state: "s", verifier: testVerifier, scope: "read"}.url("")
			if !strings.Contains(loginFor(valid), "continue to <strong>Named App</strong>") {
				t.Fatal("a valid request's app is not named")
			}
			for _, rt := range []string{
				provider.PathAuthorize + "?client_id=" + c.ID,
				provider.PathAuthorize + "?client_id=" + c.ID + "&redirect_uri=https://elsewhere.example/cb&response_type=code",
			} {
				if strings.Contains(loginFor(rt), "Named App") {
					t.Fatalf("return_to %q put the app's name on the sign-in page", rt)
				}
			}
		})
	})
}

// With an https issuer, every cookie is __Host- prefixed: Secure, Path=/.
func TestHostPrefixedCookies(t *testing.T) {
	t.Parallel()
	e := start(t, storeKinds[0].open(t), func(o *provider.Options) {
		o.Issuer = "https://auth.example.com/tenant"
		o.Resources = []string{"https://api.example.com"}
	})
	user, pw := e.user("hostcookie")
	b := e.browser()
	// Reached over loopback http, as behind a TLS-terminating proxy; the
	// path is the issuer's.
	b.e = &env{t: t, issuer: e.http.URL + "/tenant", store: e.store, clock: e.clock}
	lp := b.do("GET", provider.PathLogin, nil)
	mustEqual(t, "login page", lp.status, 200)
	f := formFields(lp.body)
	f.Set("username", user)
	f.Set("password", pw)
	// The jar does not send Secure cookies over http; send them by hand.
	var cookies []string
	for _, c := range (&http.Response{Header: lp.header}).Cookies() {
		cookies = append(cookies, c.Name+"="+c.Value)
	}
	req, _ := http.NewRequest("POST", b.e.issuer+provider.PathLogin, strings.NewReader(f.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Cookie", strings.Join(cookies, "; "))
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	mustEqual(t, "sign-in", resp.StatusCode, http.StatusSeeOther)
	all := append((&http.Response{Header: lp.header}).Cookies(), resp.Cookies()...)
	var names []string
	for _, c := range all {
		names = append(names, c.Name)
		if !strings.HasPrefix(c.Name, "__Host-") || !c.Secure || c.Path != "/" || c.Domain != "" {
			t.Errorf("cookie %s: Secure=%v Path=%q Domain=%q, want __Host- prefix, Secure, Path=/", c.Name, c.Secure, c.Path, c.Domain)
		}
	}
	if len(names) < 2 {
		t.Fatalf("cookies set: %v, want the CSRF and the session cookie", names)
	}
}
