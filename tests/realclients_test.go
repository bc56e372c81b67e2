package tests

// What /work/shared/CLIENTS.md says real clients depend on, where no other
// test pinned it: each test names the client behaviour it replays.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/authzd/authz/middleware"
	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/store"
)

// descriptionOK reports whether s uses only the characters RFC 6749
// §4.1.2.1 and §5.2 allow in error_description: %x20-21 / %x23-5B /
// %x5D-7E.
func descriptionOK(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7E || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// TestErrorDescriptionsAreShowable: IDE plugins show error_description to
// the user, and strict parsers hold it to RFC 6749's character set. A
// description that quotes what the client sent (a resource, a redirect
// URI with a quote, a backslash or non-ASCII) still stays within it, in
// the authorization redirect, at the token endpoint and at registration,
// and still names what was wrong.
func TestErrorDescriptionsAreShowable(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		user, pw := e.user("shown")
		c, _, redirect := e.loopbackClient(false)
		const odd = `https://x.example/"é\`

		u := e.browser().authorize(authRequest{clientID: c.ID, redirectURI: redirect, state: "s", verifier: testVerifier, resources: []string{odd}}.url(e.issuer), user, pw)
		q := u.Query()
		mustEqual(t, "authorize error", q.Get("error"), "invalid_target")
		if d := q.Get("error_description"); !descriptionOK(d) || !strings.Contains(d, "https://x.example/") {
			t.Fatalf("authorization error_description %q: outside RFC 6749 §4.1.2.1's characters, or not naming the resource", d)
		}
		mustEqual(t, "state", q.Get("state"), "s")
		mustEqual(t, "iss", q.Get("iss"), e.issuer)

		svc, svcSecret := e.client(store.ClientMetadata{GrantTypes: []string{oauth.GrantClientCredentials}, Scopes: []string{"read"}})
		tr := e.postToken(url.Values{"grant_type": {"client_credentials"}, "resource": {odd}}, svc.ID, svcSecret)
		mustEqual(t, "token error", tr.Error, "invalid_target")
		if !descriptionOK(tr.ErrorDescription) || !strings.Contains(tr.ErrorDescription, "https://x.example/") {
			t.Fatalf("token error_description %q", tr.ErrorDescription)
		}

		status, m := e.register(t, map[string]any{"client_name": "x", "redirect_uris": []string{`https://app.example/cb#"é\`}})
		d, _ := m["error_description"].(string)
		if status != 400 || m["error"] != "invalid_redirect_uri" || !descriptionOK(d) || !strings.HasPrefix(d, "redirect_uris") {
			t.Fatalf("registration error %d %v: description outside RFC 7591 §3.2.2's ASCII", status, m)
		}
	})
}

// TestOwnProtectedResourceMetadataAtTheRoot: MCP clients look for the
// RFC 9728 document at /.well-known/oauth-protected-resource (the root,
// or path-inserted for a resource URL with a path). With the default
// resource (the issuer itself) authz answers at the root, or at the
// issuer's path inserted when it has one.
func TestOwnProtectedResourceMetadataAtTheRoot(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		for _, path := range []string{"", "/tenant"} {
			e := start(t, open(t), func(o *provider.Options) {
				o.Issuer += path
				o.Resources = nil // the default: the issuer
			})
			iss := e.srv.Options().Issuer
			prm := getJSON(t, e.http.URL+"/.well-known/oauth-protected-resource"+path)
			mustEqual(t, "resource", prm["resource"], any(iss))
			if as := anyStrings(prm["authorization_servers"]); !slices.Equal(as, []string{iss}) {
				t.Fatalf("authorization_servers %v", as)
			}
			if sc := anyStrings(prm["scopes_supported"]); !slices.Contains(sc, "read") || slices.Contains(sc, "offline_access") {
				t.Fatalf("scopes_supported %v", sc)
			}
		}
	})
}

// TestAudienceIsTheWholeURL: MCP clients send resource = the MCP server's
// URL with its path. Two services on one origin (/mcp and /other) are two
// audiences: a token for one is refused by the other, at the middleware and
// at introspection by the other's resource server, and an origin, a longer
// path or a differently cased path is not a configured resource.
func TestAudienceIsTheWholeURL(t *testing.T) {
	t.Parallel()
	const mcp, other = "https://host.example.com/mcp", "https://host.example.com/other"
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), func(o *provider.Options) { o.Resources = []string{mcp, other} })
		user, pw := e.user("aud")
		c, _, redirect := e.loopbackClient(true)
		code := e.codeFor(e.browser(), authRequest{clientID: c.ID, redirectURI: redirect, state: "s", scope: "read", verifier: testVerifier, resources: []string{mcp}}, user, pw)
		tr := e.postToken(exchangeForm(code, redirect, testVerifier, url.Values{"client_id": {c.ID}}), "", "")
		mustEqual(t, "exchange: "+tr.ErrorDescription, tr.Status, 200)

		for res, want := range map[string]bool{mcp: true, other: false} {
			v, err := middleware.New(middleware.Config{Issuer: e.issuer, Resource: res})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := v.Validate(t.Context(), tr.AccessToken); (err == nil) != want {
				t.Fatalf("the service at %s accepted the token for %s: %v, want %v", res, mcp, err == nil, want)
			}
			rs, rsSecret := e.resourceServer(store.ClientMetadata{Name: res}, res)
			if got := e.introspect(t, rs.ID, rsSecret, tr.AccessToken)["active"] == true; got != want {
				t.Fatalf("introspection by the resource server of %s: active = %v, want %v", res, got, want)
			}
		}
		for _, res := range []string{"https://host.example.com", "https://host.example.com/", mcp + "/sub", "https://host.example.com/MCP", "https://host.example.com/mc"} {
			u := e.browser().authorize(authRequest{clientID: c.ID, redirectURI: redirect, state: "s", verifier: testVerifier, resources: []string{res}}.url(e.issuer), user, pw)
			mustEqual(t, res+" at authorize", u.Query().Get("error"), "invalid_target")
		}
	})
}

// TestConcurrentRefreshAcrossReplicas: the claude.ai connector refreshes
// one token from two egress addresses at once, which behind a load
// balancer means two replicas. Every request gets 200 and the one
// successor, as on a single server (TestConcurrentRefresh).
func TestConcurrentRefreshAcrossReplicas(t *testing.T) {
	t.Parallel()
	eachSharedStore(t, func(t *testing.T, stA, stB store.Store) {
		clk := newClock()
		a := startReplica(t, nil, stA, clk, replicaKey, time.Minute)
		b := startReplica(t, a, stB, clk, replicaKey, time.Minute)
		c, secret, _, first := a.firstTokens(t, "egress", "s")

		const n = 16
		results := make([]tokenResp, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				replica := []*env{a, b}[i%2]
				results[i] = postForm(t, replica.http.URL+provider.PathToken,
					url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first.RefreshToken}}, c.ID, secret)
			}()
		}
		wg.Wait()
		for i, r := range results {
			if r.Status != 200 {
				t.Fatalf("refresh %d on replica %d: %d %s %s", i, i%2, r.Status, r.Error, r.ErrorDescription)
			}
			if r.RefreshToken != results[0].RefreshToken {
				t.Fatalf("refresh %d on replica %d got another successor: the chain forked", i, i%2)
			}
		}
		for _, replica := range []*env{b, a} {
			next := postForm(t, replica.http.URL+provider.PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {results[0].RefreshToken}}, c.ID, secret)
			mustEqual(t, "the successor: "+next.ErrorDescription, next.Status, 200)
		}
	})
}

// TestRevokingLogsTheAppOut: JetBrains-style plugins log out by revoking
// the refresh token (RFC 7009) and expect every token of the app to stop
// working: the access tokens of every generation of the grant, the current
// refresh token, and a rotated one still inside its grace window. A
// plugin that revokes a stale generation it kept logs out the same way.
func TestRevokingLogsTheAppOut(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		user, pw := e.user("plugin")
		c, secret, redirect := e.loopbackClient(false)
		rs, rsSecret := e.resourceServer(store.ClientMetadata{Name: "api"})
		refresh := func(rt string) tokenResp {
			return e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, c.ID, secret)
		}
		generations := func() []tokenResp {
			code := e.codeFor(e.browser(), authRequest{clientID: c.ID, redirectURI: redirect, state: "s", scope: "read", verifier: testVerifier}, user, pw)
			gens := []tokenResp{e.postToken(exchangeForm(code, redirect, testVerifier, nil), c.ID, secret)}
			for range 2 {
				e.clock.Advance(5 * time.Second) // the previous token stays inside its grace window
				gens = append(gens, refresh(gens[len(gens)-1].RefreshToken))
			}
			for i, g := range gens {
				mustEqual(t, fmt.Sprintf("generation %d: %s", i, g.ErrorDescription), g.Status, 200)
			}
			return gens
		}
		for _, tc := range []struct {
			name   string
			revoke func(gens []tokenResp) string
		}{
			{"the current refresh token", func(gens []tokenResp) string { return gens[2].RefreshToken }},
			{"a stale refresh token", func(gens []tokenResp) string { return gens[0].RefreshToken }},
		} {
			t.Run(tc.name, func(t *testing.T) {
				gens := generations()
				r := postForm(t, e.issuer+provider.PathRevoke, url.Values{"token": {tc.revoke(gens)}, "token_type_hint": {"refresh_token"}}, c.ID, secret)
				mustEqual(t, "revoke", r.Status, 200)
				for i, g := range gens {
					assertInactive(t, fmt.Sprintf("access token of generation %d", i), e.introspect(t, rs.ID, rsSecret, g.AccessToken))
					mustEqual(t, fmt.Sprintf("refresh token of generation %d", i), refresh(g.RefreshToken).Error, "invalid_grant")
				}
			})
		}
	})
}

// TestStateComesBackExactly: state is opaque to the server and comes back
// byte for byte, on success and on every error redirect, and a registered
// redirect URI's own query is kept (RFC 6749 §3.1.2, §4.1.2).
func TestStateComesBackExactly(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		user, pw := e.user("state")
		const cb = "https://app.example.com/cb?tenant=a%2Bb&x="
		c, _ := e.client(store.ClientMetadata{RedirectURIs: []string{cb}})
		states := []string{"x+y %2B/?#&=;é", `{"nonce":"a\"b","n":[1,2]}`, strings.Repeat("s", 500)}
		for i, state := range states {
			for _, tc := range []struct {
				name, scope, decision, wantErr string
			}{
				{"success", "read", "", ""},
				{"error redirect", "read bogus", "", "invalid_scope"},
				{"denied", "write", "deny", "access_denied"},
			} {
				t.Run(fmt.Sprintf("%d/%s", i, tc.name), func(t *testing.T) {
					b := e.browser()
					authURL := authRequest{clientID: c.ID, redirectURI: cb, state: state, scope: tc.scope, verifier: testVerifier}.url(e.issuer)
					var loc string
					if tc.decision == "" {
						loc = b.authorize(authURL, user, pw).String()
					} else {
						p := b.consentPage(authURL, user, pw)
						f := formFields(p.body)
						f.Set("decision", tc.decision)
						p = b.do("POST", provider.PathAuthorize, f)
						mustEqual(t, "status", p.status, http.StatusFound)
						loc = p.location
					}
					if !strings.HasPrefix(loc, cb+"&") {
						t.Fatalf("redirected to %q: the registered URI's query was not kept", loc)
					}
					u, err := url.Parse(loc)
					if err != nil {
						t.Fatal(err)
					}
					q := u.Query()
					mustEqual(t, "state", q.Get("state"), state)
					mustEqual(t, "iss", q.Get("iss"), e.issuer)
					mustEqual(t, "tenant", q.Get("tenant"), "a+b")
					mustEqual(t, "error", q.Get("error"), tc.wantErr)
					if (q.Get("code") != "") != (tc.wantErr == "") {
						t.Fatalf("code in %q", loc)
					}
				})
			}
		}
	})
}

// TestAdvertisedAuthMethodsAreTheAcceptedOnes: clients pick their
// authentication method from token_endpoint_auth_methods_supported, and
// the ones that know only none (metadata-document clients) look for it
// there. Every advertised method can be registered and every method that
// can be registered is advertised; a client registered for
// client_secret_basic or client_secret_post authenticates either way.
func TestAdvertisedAuthMethodsAreTheAcceptedOnes(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		advertised := anyStrings(discoveryDocument(t, e)["token_endpoint_auth_methods_supported"])
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		jwks := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "k", Algorithm: "ES256", Use: "sig"}}}
		candidates := []string{"none", "client_secret_basic", "client_secret_post", "private_key_jwt",
			"client_secret_jwt", "tls_client_auth", "self_signed_tls_client_auth"}
		for _, m := range advertised {
			if !slices.Contains(candidates, m) {
				candidates = append(candidates, m)
			}
		}
		for _, method := range candidates {
			t.Run(method, func(t *testing.T) {
				redirect := "http://127.0.0.1/callback"
				body := map[string]any{"client_name": "m", "token_endpoint_auth_method": method, "redirect_uris": []string{redirect}}
				if method == "private_key_jwt" || method == "client_secret_jwt" {
					body["jwks"] = jwks
				}
				status, reg := e.register(t, body)
				if accepted := status == 201; accepted != slices.Contains(advertised, method) {
					t.Fatalf("registration with %s: %d %v; advertised %v", method, status, reg, advertised)
				}
				if status != 201 {
					return
				}
				mustEqual(t, "registered method", reg["token_endpoint_auth_method"], any(method))
				// Authenticated, with a code that does not exist: invalid_grant,
				// not invalid_client.
				id, secret := reg["client_id"].(string), fmt.Sprint(reg["client_secret"])
				form := exchangeForm("authz_ac_unknown", redirect, testVerifier, nil)
				switch method {
				case "none":
					form.Set("client_id", id)
					mustEqual(t, "public client", e.postToken(form, "", "").Error, "invalid_grant")
				case "client_secret_basic", "client_secret_post":
					mustEqual(t, "basic", e.postToken(form, id, secret).Error, "invalid_grant")
					form.Set("client_id", id)
					form.Set("client_secret", secret)
					mustEqual(t, "post", e.postToken(form, "", "").Error, "invalid_grant")
				}
			})
		}
	})
}

// TestJetBrainsStylePlugin replays an IDE plugin over RFC 7591: it finds
// registration_endpoint in the metadata and uses it as an absolute URL,
// registers a jetbrains:// callback without application_type, picks
// client_secret_basic because it is advertised, gets working links to its
// scheme from the consent page's Allow and Deny, updates its registration
// with the registration_access_token and registration_client_uri it kept
// (RFC 7592) instead of registering again, and logs out by revoking.
func TestJetBrainsStylePlugin(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		user, pw := e.user("ide")
		rs, rsSecret := e.resourceServer(store.ClientMetadata{Name: "api"})
		meta := discoveryDocument(t, e)
		endpoint, _ := meta["registration_endpoint"].(string)
		if u, err := url.Parse(endpoint); err != nil || !u.IsAbs() || u.Host != strings.TrimPrefix(e.issuer, "http://") {
			t.Fatalf("registration_endpoint %q is not an absolute URL on the issuer's host", endpoint)
		}
		if !slices.Contains(anyStrings(meta["token_endpoint_auth_methods_supported"]), "client_secret_basic") {
			t.Fatal("client_secret_basic is not advertised")
		}
		const cb = "jetbrains://gateway/com.jetbrains.toolbox/oauth/callback"
		body := map[string]any{"client_name": "JetBrains Toolbox", "redirect_uris": []string{cb},
			"token_endpoint_auth_method": "client_secret_basic", "grant_types": []string{"authorization_code", "refresh_token"}, "scope": "read"}
		status, reg, _ := jsonCall(t, "POST", endpoint, "", body)
		mustEqual(t, "register", status, http.StatusCreated)
		mustEqual(t, "application_type inferred", reg["application_type"], any("native"))
		id, secret := reg["client_id"].(string), reg["client_secret"].(string)

		answer := func(decision, state string) *url.URL {
			b := e.browser()
			p := b.consentPage(authRequest{clientID: id, redirectURI: cb, state: state, scope: "read", verifier: testVerifier}.url(e.issuer), user, pw)
			if p.status != 200 || strings.Contains(p.body, "ZgotmplZ") || !strings.Contains(p.body, `value="`+decision+`"`) {
				t.Fatalf("consent page %d: %.600s", p.status, p.body)
			}
			f := formFields(p.body)
			mustEqual(t, "hidden redirect_uri", f.Get("redirect_uri"), cb)
			f.Set("decision", decision)
			p = b.do("POST", provider.PathAuthorize, f)
			if p.status != http.StatusFound || !strings.HasPrefix(p.location, cb+"?") {
				t.Fatalf("%s: %d to %q, want a link to %s", decision, p.status, p.location, cb)
			}
			u, err := url.Parse(p.location)
			if err != nil {
				t.Fatal(err)
			}
			mustEqual(t, decision+": state", u.Query().Get("state"), state)
			mustEqual(t, decision+": iss", u.Query().Get("iss"), e.issuer)
			return u
		}
		mustEqual(t, "deny", answer("deny", "d").Query().Get("error"), "access_denied")
		code := answer("allow", "a").Query().Get("code")
		tr := e.postToken(exchangeForm(code, cb, testVerifier, nil), id, secret)
		mustEqual(t, "exchange: "+tr.ErrorDescription, tr.Status, 200)

		// Later: the plugin updates its registration instead of making a
		// new one, and its secret and tokens go on working.
		body["client_id"], body["client_name"] = id, "JetBrains Toolbox 2.0"
		status, upd, _ := jsonCall(t, "PUT", reg["registration_client_uri"].(string), reg["registration_access_token"].(string), body)
		mustEqual(t, "update", status, 200)
		mustEqual(t, "updated name", upd["client_name"], any("JetBrains Toolbox 2.0"))
		mustEqual(t, "same client", upd["client_id"], any(id))
		next := e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}}, id, secret)
		mustEqual(t, "refresh after the update: "+next.ErrorDescription, next.Status, 200)

		// Log out.
		mustEqual(t, "revoke", postForm(t, e.issuer+provider.PathRevoke, url.Values{"token": {next.RefreshToken}}, id, secret).Status, 200)
		for i, at := range []string{tr.AccessToken, next.AccessToken} {
			assertInactive(t, fmt.Sprintf("access token %d after logout", i), e.introspect(t, rs.ID, rsSecret, at))
		}
		mustEqual(t, "refresh after logout", e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {next.RefreshToken}}, id, secret).Error, "invalid_grant")
	})
}

// TestStaleRefreshGenerationsLater: Codex and opencode keep a refresh
// token generation in one process while another rotates the chain, and
// present it hours or days later, after janitor ticks. The answer is a
// clean 400 invalid_grant (the client signs in again), never a 5xx, and,
// a rotated token being presented again, the grant is revoked (RFC 9700
// §4.14.2) so its current tokens die with it.
func TestStaleRefreshGenerationsLater(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		rs, rsSecret := e.resourceServer(store.ClientMetadata{Name: "api"})
		for i, later := range []time.Duration{5 * time.Hour, 3 * 24 * time.Hour} {
			c, secret, _, first := e.firstTokens(t, fmt.Sprintf("stale%d", i), "s")
			refresh := func(rt string) tokenResp {
				return e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, c.ID, secret)
			}
			current := first
			for range 3 { // the other process rotates, a minute apart
				e.clock.Advance(time.Minute)
				current = refresh(current.RefreshToken)
				mustEqual(t, "rotation: "+current.ErrorDescription, current.Status, 200)
			}
			for elapsed := time.Duration(0); elapsed < later; elapsed += later / 4 {
				e.clock.Advance(later / 4)
				e.srv.RunJobs(t.Context())
			}
			stale := refresh(first.RefreshToken)
			mustEqual(t, fmt.Sprintf("stale generation %v later: status", later), stale.Status, 400)
			mustEqual(t, "error", stale.Error, "invalid_grant")
			mustEqual(t, "Cache-Control", stale.Header.Get("Cache-Control"), "no-store")
			mustEqual(t, "the current generation after the reuse", refresh(current.RefreshToken).Error, "invalid_grant")
			assertInactive(t, "the current access token after the reuse", e.introspect(t, rs.ID, rsSecret, current.AccessToken))
		}
	})
}
