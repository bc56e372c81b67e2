package tests

// An anonymous party against a default server: open registration, client
// ID metadata documents on. What the earlier attack tests (abuse_test.go,
// trust_test.go, edges_test.go) did not pin yet.

import (
	"context"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/dcr"
	"github.com/authzd/authz/provider/store"
)

// A scope parameter is bounded to dcr.MaxScopeValues values wherever one is
// read: anyone may send an authorization request, and de-duplicating a
// 64 KiB scope of distinct values cost half a second of CPU each.
func TestScopeParameterIsBounded(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		user, pw := e.user("bounded")
		const redirect = "https://bounded.example/cb"
		c, secret := e.client(store.ClientMetadata{Name: "Bounded", RedirectURIs: []string{redirect}})
		tooMany := strings.TrimSpace(strings.Repeat("read ", dcr.MaxScopeValues+1))
		var distinct strings.Builder
		for i := 0; distinct.Len() < 60<<10; i++ {
			distinct.WriteString(strconv.FormatInt(int64(i), 36) + " ")
		}

		t.Run("authorization request", func(t *testing.T) {
			for name, scope := range map[string]string{"repeated": tooMany, "distinct": distinct.String()} {
				req := authRequest{clientID: c.ID, redirectURI: redirect, state: "s-" + name, verifier: testVerifier, scope: scope}
				// An administrator's client: the error is redirected at once.
				p := e.browser().do("GET", req.url(e.issuer), nil)
				mustEqual(t, name+": status", p.status, http.StatusFound)
				u, _ := url.Parse(p.location)
				q := u.Query()
				if q.Get("error") != "invalid_scope" || !strings.Contains(q.Get("error_description"), "more than "+strconv.Itoa(dcr.MaxScopeValues)) {
					t.Fatalf("%s: redirect %.300s", name, p.location)
				}
				mustEqual(t, name+": state", q.Get("state"), req.state)
			}
			// At the bound, duplicates are still just duplicates.
			atBound := strings.TrimSpace(strings.Repeat("read ", dcr.MaxScopeValues))
			req := authRequest{clientID: c.ID, redirectURI: redirect, state: "ok", verifier: testVerifier, scope: atBound}
			if u := e.browser().authorize(req.url(e.issuer), user, pw); u.Query().Get("code") == "" {
				t.Fatalf("at the bound: %s", u)
			}
		})

		t.Run("refresh request", func(t *testing.T) {
			req := authRequest{clientID: c.ID, redirectURI: redirect, state: "r", verifier: testVerifier, scope: "read"}
			code := e.codeFor(e.browser(), req, user, pw)
			tr := e.postToken(exchangeForm(code, redirect, testVerifier, nil), c.ID, secret)
			mustEqual(t, "exchange", tr.Status, 200)
			r := e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}, "scope": {tooMany}}, c.ID, secret)
			mustEqual(t, "refresh status", r.Status, 400)
			mustEqual(t, "refresh error", r.Error, "invalid_scope")
			// The refused request spent nothing.
			mustEqual(t, "refresh after", e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}, "scope": {"read"}}, c.ID, secret).Status, 200)
		})

		t.Run("registration", func(t *testing.T) {
			var many []string
			for i := range dcr.MaxScopeValues + 1 {
				many = append(many, "s"+strconv.Itoa(i))
			}
			status, m := e.register(t, map[string]any{"redirect_uris": []string{redirect}, "scope": strings.Join(many, " ")})
			mustEqual(t, "registration status", status, http.StatusBadRequest)
			if m["error"] != "invalid_client_metadata" || !strings.HasPrefix(m["error_description"].(string), "scope:") {
				t.Fatalf("registration answer %v", m)
			}
		})
	})
}

// OpenID Connect RP-Initiated Logout names a client and one of its
// registered post_logout_redirect_uris; anyone can register both. A
// visitor who is not signed in (nothing to confirm) was sent straight to
// that URI: a link through this server to any site, the open redirector
// RFC 9700 §4.11.2 warns of; a signed-in user who confirmed the sign-out
// was too. For a client nobody vouches for, without an ID token of the
// signed-in user, the signed-out page links to it instead.
func TestEndSessionIsNoOpenRedirect(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		const phish = "https://attacker.example/phish"
		regID := e.registerClient(t, map[string]any{"client_name": "Your bank", "redirect_uris": []string{"https://attacker.example/cb"},
			"post_logout_redirect_uris": []string{phish}})
		end := func(clientID, target string) string {
			return e.issuer + provider.PathEndSession + "?" + url.Values{"client_id": {clientID}, "post_logout_redirect_uri": {target}, "state": {"s&1"}}.Encode()
		}

		p := e.browser().do("GET", end(regID, phish), nil)
		if p.status != http.StatusOK || p.location != "" {
			t.Fatalf("a visitor was bounced to a self-registered URI: %d %q", p.status, p.location)
		}
		want := `href="` + html.EscapeString(phish+"?state=s%261") + `"`
		if !strings.Contains(p.body, want) || !strings.Contains(p.body, "attacker.example") {
			t.Fatalf("signed-out page does not link to the application: %.1500s", p.body)
		}

		// A signed-in user confirms the sign-out: signed out, and again a
		// link, not a redirect (the confirmation was no decision to go
		// there; a fake "sign in again" page is the phisher's next step).
		user, pw := e.user("signingout")
		b := e.browser()
		b.signIn(user, pw)
		confirm := b.do("GET", end(regID, phish), nil)
		if confirm.status != http.StatusOK || !strings.Contains(confirm.body, `value="logout"`) {
			t.Fatalf("confirmation page: %d %.500s", confirm.status, confirm.body)
		}
		f := formFields(confirm.body)
		f.Set("decision", "logout")
		p = b.do("POST", provider.PathEndSession, f)
		if p.status != http.StatusOK || p.location != "" || !strings.Contains(p.body, want) {
			t.Fatalf("confirmed sign-out: %d %q %.800s", p.status, p.location, p.body)
		}
		if r := b.do("GET", provider.PathApps, nil); r.status != http.StatusSeeOther {
			t.Fatalf("still signed in after confirming: %d", r.status)
		}

		// An administrator's client keeps the direct return.
		admin, _ := e.client(store.ClientMetadata{Name: "Admin app", RedirectURIs: []string{"https://admin-app.example/cb"},
			PostLogoutRedirectURIs: []string{"https://admin-app.example/bye"}})
		p = e.browser().do("GET", end(admin.ID, "https://admin-app.example/bye"), nil)
		mustEqual(t, "admin client status", p.status, http.StatusFound)
		mustEqual(t, "admin client location", p.location, "https://admin-app.example/bye?state=s%261")
	})
}

var returnLinkRe = regexp.MustCompile(`<a class="button" href="([^"]+)"`)

// returnLink is the "Back to HOST" link of an error page.
func returnLink(t testing.TB, p page) string {
	t.Helper()
	if p.location != "" {
		t.Fatalf("redirected to %q instead of a page", p.location)
	}
	m := returnLinkRe.FindStringSubmatch(p.body)
	if m == nil {
		t.Fatalf("no link back on the page: %.1500s", p.body)
	}
	return html.UnescapeString(m[1])
}

// RFC 9700 §4.11.2, attacks 1 and 3: a client anyone registered with a web
// redirect URI sends a signed-in user a link that fails on purpose (a bad
// parameter; prompt=none without consent). Being redirected there at once
// would make this server a link to that site; the error is shown with the
// way back instead. Errors to the user's own computer (loopback), to an
// administrator's client, and after the user's own Deny are still
// redirected.
func TestSignedInErrorsForUntrustedClients(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		user, pw := e.user("signedin")
		const evil = "https://attacker.example/landing"
		regID := e.registerClient(t, map[string]any{"client_name": "Totally Legit", "redirect_uris": []string{evil},
			"token_endpoint_auth_method": "none"})
		b := e.browser()
		b.signIn(user, pw)
		bad := authRequest{clientID: regID, redirectURI: evil, state: "st-1", verifier: testVerifier, scope: "read",
			extra: url.Values{"response_type": {"token"}}}

		check := func(what string, p page, wantError string) {
			t.Helper()
			mustEqual(t, what+": status", p.status, http.StatusBadRequest)
			u, _ := url.Parse(returnLink(t, p))
			q := u.Query()
			if !strings.HasPrefix(u.String(), evil+"?") || q.Get("error") != wantError || q.Get("state") != "st-1" || q.Get("iss") != e.issuer {
				t.Fatalf("%s: link %q", what, u)
			}
			if !strings.Contains(p.body, "https://attacker.example") || !strings.Contains(p.body, wantError) {
				t.Fatalf("%s: the page does not say where the link goes and why: %.1500s", what, p.body)
			}
		}
		check("bad parameter", b.do("GET", bad.url(e.issuer), nil), "unsupported_response_type")
		silent := authRequest{clientID: regID, redirectURI: evil, state: "st-1", verifier: testVerifier, scope: "openid read",
			extra: url.Values{"prompt": {"none"}}}
		check("prompt=none without consent", b.do("GET", silent.url(e.issuer), nil), "consent_required")

		t.Run("still redirected", func(t *testing.T) {
			redirected := func(what string, p page, prefix, wantError string) {
				t.Helper()
				mustEqual(t, what+": status", p.status, http.StatusFound)
				u, _ := url.Parse(p.location)
				if !strings.HasPrefix(p.location, prefix) || u.Query().Get("error") != wantError || u.Query().Get("state") != "st-1" {
					t.Fatalf("%s: %q", what, p.location)
				}
			}
			// The user's own computer: a native client expects the error.
			loopID := e.registerClient(t, map[string]any{"redirect_uris": []string{"http://127.0.0.1/callback"}, "token_endpoint_auth_method": "none"})
			loop := fmt.Sprintf("http://127.0.0.1:%d/callback", freePort(t))
			redirected("loopback", b.do("GET", authRequest{clientID: loopID, redirectURI: loop, state: "st-1", verifier: testVerifier,
				extra: url.Values{"response_type": {"token"}}}.url(e.issuer), nil), loop+"?", "unsupported_response_type")
			// An administrator's client.
			admin, _ := e.client(store.ClientMetadata{Name: "Admin app", RedirectURIs: []string{"https://admin-app.example/cb"}})
			redirected("admin client", b.do("GET", authRequest{clientID: admin.ID, redirectURI: "https://admin-app.example/cb", state: "st-1",
				verifier: testVerifier, extra: url.Values{"response_type": {"token"}}}.url(e.issuer), nil), "https://admin-app.example/cb?", "unsupported_response_type")
			// The user's own Deny, on the consent page that named the host.
			consent := b.do("GET", authRequest{clientID: regID, redirectURI: evil, state: "st-1", verifier: testVerifier, scope: "read"}.url(e.issuer), nil)
			f := formFields(consent.body)
			f.Set("decision", "deny")
			redirected("deny", b.do("POST", provider.PathAuthorize, f), evil+"?", "access_denied")
		})
	})
}

// A remembered consent belongs to one client ID: an attacker who registers
// a look-alike (same name, same redirect URI) gets the consent page, and
// asking it to stay silent gets no code.
func TestConsentIsNotInheritedByLookAlikes(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		user, pw := e.user("lookalike")
		const cb = "https://acme.example/cb"
		meta := map[string]any{"client_name": "Acme Backup", "redirect_uris": []string{cb}}
		realID := e.registerClient(t, meta)
		b := e.browser()
		first := authRequest{clientID: realID, redirectURI: cb, state: "a", verifier: testVerifier, scope: "read"}
		if u := b.authorize(first.url(e.issuer), user, pw); u.Query().Get("code") == "" {
			t.Fatalf("first authorization: %s", u)
		}
		// Remembered for the real one (confidential, https).
		mustEqual(t, "remembered", b.do("GET", first.url(e.issuer), nil).status, http.StatusFound)

		fakeID := e.registerClient(t, meta)
		fake := authRequest{clientID: fakeID, redirectURI: cb, state: "a", verifier: testVerifier, scope: "read"}
		if p := b.do("GET", fake.url(e.issuer), nil); p.status != http.StatusOK || !strings.Contains(p.body, `name="decision"`) {
			t.Fatalf("look-alike skipped the consent page: %d %q", p.status, p.location)
		}
		fake.extra = url.Values{"prompt": {"none"}}
		fake.scope = "openid read"
		if p := b.do("GET", fake.url(e.issuer), nil); p.location != "" || strings.Contains(p.body, "code=") {
			t.Fatalf("look-alike got a silent answer: %d %q", p.status, p.location)
		}
	})
}

// RFC 7592 §2: a registration access token manages its own client only.
// Another client's, and an administrator's client (which has none), answer
// 401 to every method and are left as they were.
func TestRegistrationTokenManagesOnlyItsClient(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		_, mine := e.register(t, map[string]any{"client_name": "Mine", "redirect_uris": []string{"https://mine.example/cb"}})
		_, theirs := e.register(t, map[string]any{"client_name": "Theirs", "redirect_uris": []string{"https://theirs.example/cb"}})
		myToken := mine["registration_access_token"].(string)
		admin, _ := e.client(store.ClientMetadata{Name: "Admin app", RedirectURIs: []string{"https://admin-app.example/cb"}})
		for _, target := range []struct{ id, uri string }{
			{theirs["client_id"].(string), theirs["registration_client_uri"].(string)},
			{admin.ID, e.issuer + provider.PathRegister + "/" + admin.ID},
		} {
			upd := map[string]any{"client_id": target.id, "client_name": "Hijacked", "redirect_uris": []string{"https://attacker.example/cb"}}
			for _, m := range []string{"GET", "PUT", "DELETE"} {
				var body any
				if m == "PUT" {
					body = upd
				}
				status, got, _ := jsonCall(t, m, target.uri, myToken, body)
				if status != http.StatusUnauthorized || got["error"] != "invalid_token" {
					t.Fatalf("%s %s with another client's token: %d %v", m, target.uri, status, got)
				}
			}
			c, err := e.store.GetClient(context.Background(), target.id)
			if err != nil || c.Metadata.Name == "Hijacked" || slices.Contains(c.Metadata.RedirectURIs, "https://attacker.example/cb") {
				t.Fatalf("client %s after the attempts: %+v, %v", target.id, c.Metadata, err)
			}
		}
	})
}

// A self-registered name may be 2048 bytes; the consent page shows at most
// 64 characters of it, so the name cannot fill the page and push the
// unverified marker and the redirect host out of sight. A name that shows
// as nothing gives way to the client ID.
func TestLongClientNamesAreCut(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		user, pw := e.user("longname")
		const cb = "https://long.example/cb"
		name := "Google Drive " + strings.Repeat("(official) ", 180)
		id := e.registerClient(t, map[string]any{"client_name": name, "redirect_uris": []string{cb}})
		p := e.browser().consentPage(authRequest{clientID: id, redirectURI: cb, state: "s", verifier: testVerifier, scope: "read"}.url(e.issuer), user, pw)
		mustEqual(t, "consent status", p.status, http.StatusOK)
		shown := []rune(strings.TrimSpace(name))[:64]
		if strings.Contains(p.body, strings.Repeat("(official) ", 7)) || !strings.Contains(p.body, strings.TrimSpace(string(shown))+"…") {
			t.Fatalf("name not cut to 64 characters: %.800s", p.body)
		}
		for _, want := range []string{"Registered itself", "https://long.example"} {
			if !strings.Contains(p.body, want) {
				t.Fatalf("consent page lacks %q", want)
			}
		}

		// A name that shows as nothing (blank-rendering letters and
		// spaces): the client ID is shown instead.
		blank := e.registerClient(t, map[string]any{"client_name": " ㅤㅤ ⠀", "redirect_uris": []string{cb}})
		p = e.browser().consentPage(authRequest{clientID: blank, redirectURI: cb, state: "s", verifier: testVerifier, scope: "read"}.url(e.issuer), user, pw)
		if !strings.Contains(p.body, "Allow "+blank+"?") {
			t.Fatalf("blank name: %.800s", p.body)
		}
	})
}

// IPv6 clients are counted per /64, and anyone can have a /48 (tunnel
// brokers hand them out free): 65,536 /64s each with the whole limit. A /48
// as a whole may reach 16 times a limit, for registrations and for failed
// sign-ins alike; another /48 is not affected.
func TestIPv6RotationHitsTheLimits(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), func(o *provider.Options) {
			o.RegistrationsPerIP = 2
			o.LoginFailuresPerAccount, o.LoginFailuresPerIP = 1, 1000
			o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		})
		user, pw := e.user("rotated")
		addr := func(net48 string, n int) string { return fmt.Sprintf("2001:db8:%s:%x::1", net48, n) }

		t.Run("registrations", func(t *testing.T) {
			reg := func(from string) int {
				t.Helper()
				b := e.browser().from(from)
				body := `{"redirect_uris":["https://r.example/cb"],"token_endpoint_auth_method":"none"}`
				req, _ := http.NewRequest("POST", e.issuer+provider.PathRegister, strings.NewReader(body))
				req.Header = b.header.Clone()
				req.Header.Set("Content-Type", "application/json")
				resp, err := testClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				return resp.StatusCode
			}
			// Each /64 its two, until the /48 has had 32.
			for n := range 16 {
				for i := range 2 {
					mustEqual(t, fmt.Sprintf("/64 #%d registration %d", n, i+1), reg(addr("a", n)), http.StatusCreated)
				}
			}
			mustEqual(t, "a fresh /64 of a /48 that had 32", reg(addr("a", 999)), http.StatusTooManyRequests)
			mustEqual(t, "another /48", reg(addr("b", 0)), http.StatusCreated)
		})

		t.Run("failed sign-ins", func(t *testing.T) {
			for n := range 16 {
				mustEqual(t, fmt.Sprintf("guess from /64 #%d", n), e.browser().from(addr("c", n)).loginAttempt(user, "guess").status, http.StatusUnauthorized)
			}
			mustEqual(t, "the password from a fresh /64 of that /48", e.browser().from(addr("c", 999)).loginAttempt(user, pw).status, http.StatusTooManyRequests)
			mustEqual(t, "the password from another /48", e.browser().from(addr("d", 0)).loginAttempt(user, pw).status, http.StatusSeeOther)
		})
	})
}

// RFC 7591 §5: a client's name, logo and links are self-asserted, and a
// rogue client uses those of the one it impersonates. For a client that is
// not an administrator's, the consent page shows a logo, home page, privacy
// policy or terms only from the host the answer goes to (this request's
// redirect URI; a metadata-document client's publishing host too), never
// from a host that merely appears among its redirect_uris.
func TestConsentShowsOnlyTheClientsOwnLinks(t *testing.T) {
	t.Parallel()
	logo := pngLogo(t)
	assets := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(logo) }))
	t.Cleanup(assets.Close)
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), func(o *provider.Options) { o.HTTPClient = assets.Client() })
		user, pw := e.user("links")
		own := assets.URL // https://127.0.0.1:PORT, the logo's host
		const evil = "https://attacker.example/cb"
		id := e.registerClient(t, map[string]any{"client_name": "Google", "redirect_uris": []string{evil, own + "/cb"},
			"logo_uri": own + "/logo.png", "client_uri": "https://www.google.com/", "policy_uri": "https://policies.google.com/privacy",
			"tos_uri": own + "/terms"})
		consent := func(redirect string) page {
			return e.browser().consentPage(authRequest{clientID: id, redirectURI: redirect, state: "s", verifier: testVerifier, scope: "read"}.url(e.issuer), user, pw)
		}

		p := consent(evil)
		mustEqual(t, "consent status", p.status, http.StatusOK)
		for _, unwanted := range []string{"google.com", "data:image/png", own + "/terms"} {
			if strings.Contains(p.body, unwanted) {
				t.Errorf("answer to attacker.example: the page shows %q", unwanted)
			}
		}
		// The same client answering to the logo's host: logo and terms shown,
		// still not google.com.
		p = consent(own + "/cb")
		mustEqual(t, "consent status", p.status, http.StatusOK)
		if !strings.Contains(p.body, "data:image/png") || !strings.Contains(p.body, `href="`+own+`/terms"`) || strings.Contains(p.body, "google.com") {
			t.Errorf("answer to the logo's host: %.2000s", p.body)
		}
	})
}
