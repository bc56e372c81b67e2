package tests

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/store"
)

// Admin-only scopes and MCP clients: an MCP client registers by RFC 7591
// with the scopes a resource's RFC 9728 document lists and then asks for
// them. With AUTHZ_ADMIN_SCOPES set it must still connect, and never
// receive an admin-only scope; whatever it can do, an attacker can.

// TestMCPClientWithAdminScopes: authz's own protected-resource metadata
// lists only what a self-registered client can obtain (RFC 8414 metadata
// still lists every offered scope); a client that registers and asks for
// more (a downstream resource's document may list admin scopes) gets the
// allowed subset (RFC 7591 §3.2.1, RFC 6749 §3.3) with `scope` in each
// answer; refresh cannot widen it (RFC 6749 §6); unknown scopes and
// requests of nothing but admin-only scopes stay refused; an
// administrator's client still gets the admin scope.
func TestMCPClientWithAdminScopes(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), func(o *provider.Options) { o.AdminScopes = []string{"admin"} })
		user, pw := e.user("mcp")

		// A: the PRM lists the registrable scopes, the AS metadata all.
		prm := getJSON(t, e.issuer+"/.well-known/oauth-protected-resource/api")
		prmScopes := anyStrings(prm["scopes_supported"])
		if !slices.Equal(prmScopes, []string{"read", "write"}) {
			t.Fatalf("protected-resource scopes_supported = %v, want [read write]", prmScopes)
		}
		if as := anyStrings(discoveryDocument(t, e)["scopes_supported"]); !slices.Contains(as, "admin") {
			t.Fatalf("RFC 8414 scopes_supported = %v, want every offered scope, admin included", as)
		}

		// C: registering with the PRM's scopes works as is; asking for an
		// admin scope too registers the rest and says so.
		// Confidential (client_secret_post, as some MCP clients register),
		// so a remembered consent may skip the page (RFC 8252 §8.6).
		native := func(scope string) map[string]any {
			return map[string]any{"client_name": "mcp", "application_type": "native", "token_endpoint_auth_method": "client_secret_post", "grant_types": []string{"authorization_code", "refresh_token"},
				"redirect_uris": []string{"http://127.0.0.1/callback"}, "scope": scope}
		}
		_, _, reg := e.registerOK(t, native(strings.Join(prmScopes, " ")))
		mustEqual(t, "registered scope (the PRM's)", reg["scope"], any("read write"))
		id, secret, reg := e.registerOK(t, native("read write admin offline_access"))
		creds := url.Values{"client_id": {id}, "client_secret": {secret}}
		mustEqual(t, "registered scope (admin dropped)", reg["scope"], any("read write offline_access"))
		if n, _ := reg["notice"].(string); !strings.Contains(n, "admin") {
			t.Fatalf("registration notice %q does not name the scope left out", n)
		}
		c, err := e.store.GetClient(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(c.Metadata.Scopes, "admin") {
			t.Fatalf("stored scopes %v hold the admin scope", c.Metadata.Scopes)
		}

		// B: authorize with more than allowed: the consent page shows only
		// what will be granted, the code and the token carry the narrowed
		// scope, and the token response names it.
		redirect := "http://127.0.0.1:" + strconv.Itoa(freePort(t)) + "/callback"
		ask := authRequest{clientID: id, redirectURI: redirect, state: "s", verifier: testVerifier, scope: "read write admin offline_access"}
		p := e.browser().consentPage(ask.url(e.issuer), user, pw)
		if p.status != 200 || !strings.Contains(p.body, "(read)") || !strings.Contains(p.body, "(write)") || strings.Contains(p.body, "(admin)") {
			t.Fatalf("consent page: status %d, want read and write but not admin: %.1500s", p.status, p.body)
		}
		b := e.browser()
		code := e.codeFor(b, ask, user, pw)
		tr := e.postToken(exchangeForm(code, redirect, testVerifier, creds), "", "")
		mustEqual(t, "exchange: "+tr.ErrorDescription, tr.Status, 200)
		mustEqual(t, "token response scope", tr.Scope, "read write offline_access")
		mustEqual(t, "access token scope", claims(t, tr.AccessToken)["scope"], any("read write offline_access"))
		grants, err := e.store.ListUserGrants(t.Context(), mustUserID(t, e, user), e.clock.Now())
		if err != nil || len(grants) != 1 {
			t.Fatalf("grants %v, %v: want the one just redeemed", grants, err)
		}
		for _, g := range grants {
			if slices.Contains(g.Scopes, "admin") {
				t.Fatalf("grant %s holds the admin scope: %v", g.ID, g.Scopes)
			}
		}

		// The remembered consent is for the narrowed set: the same request
		// again goes straight back to the client.
		again := b.do("GET", ask.url(e.issuer), nil)
		if again.status != http.StatusFound || !strings.Contains(again.location, "code=") {
			t.Fatalf("second authorization: status %d location %q, want a code without asking again", again.status, again.location)
		}

		// Refresh keeps the narrowed scope; asking for admin there is wider
		// than the grant.
		next := e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}}, id, secret)
		mustEqual(t, "refresh: "+next.ErrorDescription, next.Status, 200)
		mustEqual(t, "refreshed scope", next.Scope, "read write offline_access")
		wider := e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {next.RefreshToken}, "scope": {"read admin"}}, id, secret)
		mustEqual(t, "refresh wider than the grant", wider.Error, "invalid_scope")

		// The attacker: nothing but admin-only scopes is refused at
		// registration, and at authorization; an unknown scope too.
		status, m := e.register(t, native("admin"))
		wantMetadataError(t, "only admin scopes at registration", status, m, "invalid_client_metadata", "scope")
		for _, scope := range []string{"admin", "read bogus", "admin bogus"} {
			u := e.browser().authorize(authRequest{clientID: id, redirectURI: redirect, state: "s", verifier: testVerifier, scope: scope}.url(e.issuer), user, pw)
			if q := u.Query(); q.Get("error") != "invalid_scope" || q.Get("code") != "" {
				t.Fatalf("scope %q: %s, want invalid_scope", scope, u)
			}
		}

		// An administrator's client still gets the admin scope.
		admin, adminSecret, adminRedirect := e.loopbackClient(false)
		code = e.codeFor(e.browser(), authRequest{clientID: admin.ID, redirectURI: adminRedirect, state: "s", verifier: testVerifier, scope: "read admin"}, user, pw)
		mustEqual(t, "admin client", e.postToken(exchangeForm(code, adminRedirect, testVerifier, nil), admin.ID, adminSecret).Scope, "read admin")
	})
}

// TestUpdateNarrowsAdminScopes: an RFC 7592 update of a client without a
// scope list asking for an admin-only scope registers the rest, as a
// registration does, and the notice says so; nothing but admin-only
// scopes is still refused.
func TestUpdateNarrowsAdminScopes(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), func(o *provider.Options) { o.AdminScopes = []string{"admin"} })
		body := map[string]any{"client_name": "app", "application_type": "native", "token_endpoint_auth_method": "none",
			"redirect_uris": []string{"http://127.0.0.1/callback"}}
		id, _, reg := e.registerOK(t, body)
		uri, tok := reg["registration_client_uri"].(string), reg["registration_access_token"].(string)

		body["client_id"], body["scope"] = id, "admin"
		status, m, _ := jsonCall(t, "PUT", uri, tok, body)
		wantMetadataError(t, "update to only admin scopes", status, m, "invalid_client_metadata", "scope")

		body["scope"] = "write admin"
		status, m, _ = jsonCall(t, "PUT", uri, tok, body)
		if status != 200 {
			t.Fatalf("update asking for write admin: %d %v", status, m)
		}
		mustEqual(t, "updated scope", m["scope"], any("write"))
		if n, _ := m["notice"].(string); !strings.Contains(n, "admin") {
			t.Fatalf("update notice %q does not name the scope left out", n)
		}
	})
}
