package tests

import (
	"context"
	"crypto/rand"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/store"
	"github.com/authzd/authz/provider/tokens"
)

// Issue 11: self-registered clients are untrusted. Each test replays an
// attack from the audit over HTTP, on both stores.

// registerOK registers and returns (client_id, client_secret, the answer).
func (e *env) registerOK(t testing.TB, body map[string]any) (string, string, map[string]any) {
	t.Helper()
	status, m := e.register(t, body)
	if status != 201 {
		t.Fatalf("register %v = %d %v", body, status, m)
	}
	secret, _ := m["client_secret"].(string)
	return m["client_id"].(string), secret, m
}

// wantMetadataError checks an RFC 7591 §3.2.2 error that names field.
func wantMetadataError(t testing.TB, what string, status int, m map[string]any, code, field string) {
	t.Helper()
	desc, _ := m["error_description"].(string)
	if status != 400 || m["error"] != code || !strings.HasPrefix(desc, field+":") {
		t.Fatalf("%s: %d %v, want 400 %s naming %s", what, status, m, code, field)
	}
}

// TestAnonymousClientCredentialsRefused: the audit registered a client with
// grant_types client_credentials and got a token for every scope and every
// resource. Now registration refuses it unless an administrator's initial
// access token allows it, and then only within that token's allowances.
func TestAnonymousClientCredentialsRefused(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		body := map[string]any{"client_name": "robot", "grant_types": []string{"client_credentials"}}

		status, m := e.register(t, body)
		wantMetadataError(t, "anonymous client_credentials", status, m, "invalid_client_metadata", "grant_types")

		// A token without that permission, or a made-up one, does not help.
		plain, err := tokens.NewSecret(rand.Reader, tokens.PrefixInitialAccessToken)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.store.CreateInitialAccessToken(context.Background(), store.InitialAccessToken{Hash: tokens.Hash(plain), CreatedAt: e.clock.Now()}); err != nil {
			t.Fatal(err)
		}
		for _, tok := range []string{plain, "authz_iat_made-up"} {
			status, m, _ = jsonCall(t, "POST", e.issuer+provider.PathRegister, tok, body)
			wantMetadataError(t, "client_credentials with a token that does not allow it", status, m, "invalid_client_metadata", "grant_types")
		}

		// A client that got client_credentials before trust levels existed
		// (no allowances) gets no token.
		legacy, legacySecret := e.client(store.ClientMetadata{GrantTypes: []string{oauth.GrantClientCredentials}})
		legacy.Trust = store.TrustRegistered
		if err := e.store.DeleteClient(context.Background(), legacy.ID); err != nil {
			t.Fatal(err)
		}
		if err := e.store.CreateClient(context.Background(), legacy); err != nil {
			t.Fatal(err)
		}
		tr := e.postToken(url.Values{"grant_type": {"client_credentials"}}, legacy.ID, legacySecret)
		if tr.Status != 400 || tr.Error != "unauthorized_client" || tr.AccessToken != "" {
			t.Fatalf("legacy self-registered client_credentials: %d %s", tr.Status, tr.Error)
		}

		// With a policy token: allowed, within its scopes and resources.
		status, m, _ = jsonCall(t, "POST", e.issuer+provider.PathRegister, e.serviceToken(t, "https://mcp.example.com/mcp"), body)
		mustEqual(t, "register with a policy token", status, 201)
		id, secret := m["client_id"].(string), m["client_secret"].(string)
		mustEqual(t, "registered scope", m["scope"], any("read write"))
		tr = e.postToken(url.Values{"grant_type": {"client_credentials"}}, id, secret)
		mustEqual(t, "policy client_credentials", tr.Status, 200)
		aud := audience(t, tr.AccessToken)
		if len(aud) != 1 || aud[0] != "https://mcp.example.com/mcp" {
			t.Fatalf("aud = %v, want only the policy's resource", aud)
		}
		tr = e.postToken(url.Values{"grant_type": {"client_credentials"}, "scope": {"admin"}}, id, secret)
		mustEqual(t, "scope outside the policy", tr.Error, "invalid_scope")
		tr = e.postToken(url.Values{"grant_type": {"client_credentials"}, "resource": {e.issuer + "/api"}}, id, secret)
		mustEqual(t, "resource outside the policy", tr.Error, "invalid_target")
	})
}

// TestRegistrationScopes: a self-registered client gets only the
// registration scopes (default: offered minus AUTHZ_ADMIN_SCOPES), at
// registration and, when it registered none, at authorization: other
// offered scopes are left out (RFC 7591 §3.2.1, RFC 6749 §3.3), and a
// request of nothing but those is refused.
func TestRegistrationScopes(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), func(o *provider.Options) { o.AdminScopes = []string{"admin"} })
		user, pw := e.user("sally")
		native := func(extra map[string]any) map[string]any {
			m := map[string]any{"client_name": "app", "application_type": "native", "token_endpoint_auth_method": "none",
				"redirect_uris": []string{"http://127.0.0.1/callback"}}
			for k, v := range extra {
				m[k] = v
			}
			return m
		}
		_, _, reg := e.registerOK(t, native(map[string]any{"scope": "read admin"}))
		mustEqual(t, "admin scope left out at registration", reg["scope"], any("read"))
		status, m := e.register(t, native(map[string]any{"scope": "admin"}))
		wantMetadataError(t, "only an admin scope at registration", status, m, "invalid_client_metadata", "scope")

		// offline_access is about the grant, not a permission: never refused.
		e.registerOK(t, native(map[string]any{"scope": "read offline_access"}))
		strict := start(t, open(t), func(o *provider.Options) { o.RegistrationScopes = []string{"read"} })
		strict.registerOK(t, native(map[string]any{"scope": "read offline_access"}))
		_, _, reg = strict.registerOK(t, native(map[string]any{"scope": "read write"}))
		mustEqual(t, "a scope outside AUTHZ_REGISTRATION_SCOPES left out", reg["scope"], any("read"))
		status, m = strict.register(t, native(map[string]any{"scope": "write"}))
		wantMetadataError(t, "only a scope outside AUTHZ_REGISTRATION_SCOPES", status, m, "invalid_client_metadata", "scope")

		id, _, _ := e.registerOK(t, native(nil))
		redirect := "http://127.0.0.1:" + strconv.Itoa(freePort(t)) + "/callback"
		u := e.browser().authorize(authRequest{clientID: id, redirectURI: redirect, state: "s", verifier: testVerifier, scope: "admin"}.url(e.issuer), user, pw)
		if q := u.Query(); q.Get("error") != "invalid_scope" || q.Get("code") != "" {
			t.Fatalf("only an admin scope at authorization: %s", u)
		}
		// The registration scopes work; an admin scope beside them is
		// left out.
		for _, scope := range []string{"read write", "read write admin"} {
			code := e.codeFor(e.browser(), authRequest{clientID: id, redirectURI: redirect, state: "s", verifier: testVerifier, scope: scope}, user, pw)
			tr := e.postToken(exchangeForm(code, redirect, testVerifier, url.Values{"client_id": {id}}), "", "")
			mustEqual(t, "exchange for "+scope, tr.Scope, "read write")
		}

		// An administrator's client may have the admin scope.
		admin, adminSecret, adminRedirect := e.loopbackClient(false)
		code := e.codeFor(e.browser(), authRequest{clientID: admin.ID, redirectURI: adminRedirect, state: "s", verifier: testVerifier, scope: "admin"}, user, pw)
		mustEqual(t, "admin client", e.postToken(exchangeForm(code, adminRedirect, testVerifier, nil), admin.ID, adminSecret).Scope, "admin")
	})
}

// TestUpdateNeverWidensAllowances: the audit's client widened the scopes its
// administrator had restricted with its own RFC 7592 PUT. Now the update is
// intersected with the allowance and the answer says so; client_credentials,
// resources and the introspection right cannot be added either.
func TestUpdateNeverWidensAllowances(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		user, pw := e.user("ursula")
		body := map[string]any{"client_name": "app", "application_type": "native", "redirect_uris": []string{"http://127.0.0.1/callback"}, "scope": "read"}
		id, secret, reg := e.registerOK(t, body)
		uri, tok := reg["registration_client_uri"].(string), reg["registration_access_token"].(string)

		// The administrator narrows the resources to one.
		c, err := e.store.GetClient(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		c.Metadata.Resources = []string{"https://mcp.example.com/mcp"}
		if _, err := e.store.UpdateClient(context.Background(), c.ID, replaceClient(c)); err != nil {
			t.Fatal(err)
		}

		body["client_id"] = id
		body["scope"] = "read write admin"
		body["resources"] = []string{e.issuer + "/api"}
		body["introspect"] = true
		status, got, _ := jsonCall(t, "PUT", uri, tok, body)
		mustEqual(t, "PUT", status, 200)
		mustEqual(t, "scope after a widening PUT", got["scope"], any("read"))
		notice, _ := got["notice"].(string)
		if !strings.Contains(notice, "administrator") || !strings.Contains(notice, "not granted: write admin") {
			t.Fatalf("the answer does not say the allowances were kept: %v", got)
		}
		tok = got["registration_access_token"].(string)
		c, err = e.store.GetClient(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Metadata.Resources) != 1 || c.Metadata.Resources[0] != "https://mcp.example.com/mcp" || c.Metadata.Introspect ||
			len(c.Metadata.Scopes) != 1 || c.Metadata.Scopes[0] != "read" {
			t.Fatalf("allowances after PUT: %+v", c.Metadata)
		}
		redirect := "http://127.0.0.1:" + strconv.Itoa(freePort(t)) + "/callback"
		u := e.browser().authorize(authRequest{clientID: id, redirectURI: redirect, state: "s", verifier: testVerifier, scope: "write"}.url(e.issuer), user, pw)
		mustEqual(t, "authorize a scope the PUT tried to add", u.Query().Get("error"), "invalid_scope")

		// Narrowing works; widening back does not.
		body["scope"] = "read"
		status, got, _ = jsonCall(t, "PUT", uri, tok, body)
		mustEqual(t, "narrowing PUT", status, 200)
		tok = got["registration_access_token"].(string)

		body["grant_types"] = []string{"authorization_code", "client_credentials"}
		status, got, _ = jsonCall(t, "PUT", uri, tok, body)
		wantMetadataError(t, "PUT adding client_credentials", status, got, "invalid_client_metadata", "grant_types")
		tr := e.postToken(url.Values{"grant_type": {"client_credentials"}}, id, secret)
		if tr.Status != 400 || tr.AccessToken != "" {
			t.Fatalf("client_credentials after a refused PUT: %d %s", tr.Status, tr.Error)
		}
	})
}

// TestIntrospectionOnlyWhatTheCallerMayKnow: any self-registered
// confidential client could introspect anyone's tokens. Now a client sees
// its own tokens; a resource server an administrator marked --introspect
// also sees access tokens for its own resources; everything else is
// {"active": false}. Introspection never spends a refresh token.
func TestIntrospectionOnlyWhatTheCallerMayKnow(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		user, pw := e.user("ivy")
		victim, victimSecret, redirect := e.loopbackClient(false)
		code := e.codeFor(e.browser(), authRequest{clientID: victim.ID, redirectURI: redirect, state: "s", verifier: testVerifier, scope: "read",
			resources: []string{"https://mcp.example.com/mcp"}}, user, pw)
		tr := e.postToken(exchangeForm(code, redirect, testVerifier, nil), victim.ID, victimSecret)
		mustEqual(t, "exchange", tr.Status, 200)

		// The attacker registers a confidential client anonymously.
		attacker, attackerSecret, _ := e.registerOK(t, map[string]any{"client_name": "snoop", "application_type": "native",
			"redirect_uris": []string{"http://127.0.0.1/callback"}})
		assertInactive(t, "someone else's access token", e.introspect(t, attacker, attackerSecret, tr.AccessToken))
		assertInactive(t, "someone else's refresh token", e.introspect(t, attacker, attackerSecret, tr.RefreshToken))

		// A resource server for another resource learns nothing either,
		// nor does one with the right resource but no --introspect.
		other, otherSecret := e.resourceServer(store.ClientMetadata{}, "https://other.example.com")
		assertInactive(t, "access token for another resource", e.introspect(t, other.ID, otherSecret, tr.AccessToken))
		plain, plainSecret := e.client(store.ClientMetadata{GrantTypes: []string{oauth.GrantClientCredentials}, Resources: []string{"https://mcp.example.com/mcp"}})
		assertInactive(t, "not marked --introspect", e.introspect(t, plain.ID, plainSecret, tr.AccessToken))

		// The token's own resource server sees the access token, never the
		// refresh token.
		rs, rsSecret := e.resourceServer(store.ClientMetadata{}, "https://mcp.example.com/mcp")
		if m := e.introspect(t, rs.ID, rsSecret, tr.AccessToken); m["active"] != true || m["client_id"] != victim.ID {
			t.Fatalf("the audience's resource server: %v", m)
		}
		assertInactive(t, "refresh token to its resource server", e.introspect(t, rs.ID, rsSecret, tr.RefreshToken))

		// The client itself sees both, as often as it likes, and the
		// refresh token still rotates normally afterwards.
		for i := 0; i < 3; i++ {
			if m := e.introspect(t, victim.ID, victimSecret, tr.RefreshToken); m["active"] != true {
				t.Fatalf("own refresh token: %v", m)
			}
			if m := e.introspect(t, victim.ID, victimSecret, tr.AccessToken); m["active"] != true {
				t.Fatalf("own access token: %v", m)
			}
		}
		r := e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}}, victim.ID, victimSecret)
		mustEqual(t, "refresh after introspection", r.Status, 200)
		e.clock.Advance(time.Minute) // past the grace window
		if m := e.introspect(t, victim.ID, victimSecret, r.RefreshToken); m["active"] != true {
			t.Fatalf("the successor after introspection: %v", m)
		}
		r2 := e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r.RefreshToken}}, victim.ID, victimSecret)
		mustEqual(t, "second refresh (introspection did not count as a use)", r2.Status, 200)
	})
}

// TestRedirectSchemes: a self-registered client may use https, loopback
// http, a reverse-DNS private-use scheme or one of AUTHZ_REDIRECT_SCHEMES;
// anything else is refused naming redirect_uris. OS protocol handlers are
// refused for everyone, administrators included, and never redirected to.
func TestRedirectSchemes(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		custom := start(t, open(t), func(o *provider.Options) { o.RedirectSchemes = []string{"myide"} })
		register := func(e *env, uri string) (int, map[string]any) {
			return e.register(t, map[string]any{"client_name": "app", "application_type": "native", "token_endpoint_auth_method": "none",
				"redirect_uris": []string{uri}})
		}
		refused := []string{
			"ms-officecmd:open?url=https://evil.example", "ms-msdt:/id%20PCWDiagnostic", "search-ms:query=x", "shell:startup",
			"intent://evil#Intent;scheme=https;end", "chrome://settings", "jar:https://evil.example/x.jar!/", "x-safari-https://evil.example",
			"file:///etc/passwd", "javascript:alert(1)", "data:text/html,x", "vbscript:msgbox", "MS-Word:ofe|u|https://evil.example",
			"myapp:/callback", "com:/cb", "foo+bar.example:/cb", ".example.app:/cb", "http://evil.example/cb",
		}
		for _, uri := range refused {
			status, m := register(e, uri)
			wantMetadataError(t, uri, status, m, "invalid_redirect_uri", "redirect_uris")
		}
		allowed := []string{
			"com.example.app:/oauth2redirect", "jetbrains://gateway/com.jetbrains/oauth", "vscode://vscode.github-authentication/did-authenticate",
			"vscode-insiders://cb", "cursor://anysphere.cursor-retrieval/oauth", "windsurf://cb", "zed://cb",
			"https://app.example.com/cb", "http://127.0.0.1/callback", "http://localhost/callback", "http://[::1]/callback",
		}
		for _, uri := range allowed {
			if status, m := register(e, uri); status != 201 {
				t.Errorf("%s refused: %d %v", uri, status, m)
			}
		}

		// AUTHZ_REDIRECT_SCHEMES replaces the single-word list.
		if status, m := register(custom, "myide://cb"); status != 201 {
			t.Errorf("operator's scheme refused: %d %v", status, m)
		}
		status, m := register(custom, "jetbrains://cb")
		wantMetadataError(t, "a default scheme the operator left out", status, m, "invalid_redirect_uri", "redirect_uris")

		// An administrator may vouch for a custom scheme, never for an OS
		// handler.
		if _, _, err := provider.NewClient(store.ClientMetadata{Name: "x", RedirectURIs: []string{"myapp:/cb"}, ApplicationType: "native",
			TokenEndpointAuthMethod: "none"}, e.clock.Now(), rand.Reader); err != nil {
			t.Errorf("admin custom scheme: %v", err)
		}
		for _, uri := range []string{"ms-officecmd:x", "search-ms:x", "intent://x", "shell:x"} {
			if _, _, err := provider.NewClient(store.ClientMetadata{Name: "x", RedirectURIs: []string{uri}, ApplicationType: "native",
				TokenEndpointAuthMethod: "none"}, e.clock.Now(), rand.Reader); err == nil || !strings.Contains(err.Error(), "redirect_uris") {
				t.Errorf("admin client with %s: %v", uri, err)
			}
		}

		// A client stored before the denylist: never redirected to.
		legacy := store.Client{ID: "legacy-" + strconv.FormatInt(time.Now().UnixNano(), 36), Trust: store.TrustRegistered,
			Metadata: store.ClientMetadata{Name: "old", RedirectURIs: []string{"ms-officecmd:open"}, TokenEndpointAuthMethod: "none",
				GrantTypes: []string{"authorization_code"}, ResponseTypes: []string{"code"}, ApplicationType: "native"},
			CreatedAt: e.clock.Now(), UpdatedAt: e.clock.Now()}
		if err := e.store.CreateClient(context.Background(), legacy); err != nil {
			t.Fatal(err)
		}
		p := e.browser().do("GET", authRequest{clientID: legacy.ID, redirectURI: "ms-officecmd:open", state: "s", verifier: testVerifier,
			extra: url.Values{"response_type": {"token"}}}.url(e.issuer), nil)
		if p.status == http.StatusFound || strings.HasPrefix(p.location, "ms-officecmd:") || p.status != http.StatusBadRequest {
			t.Fatalf("authorization for a denied scheme: %d %q", p.status, p.location)
		}
	})
}

// TestRegistrationBodyLimit: 56 KB registrations went through; now a body
// over 16 KiB is refused before it is parsed.
func TestRegistrationBodyLimit(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		body := map[string]any{"client_name": "big", "redirect_uris": []string{"https://app.example.com/cb"},
			"software_statement_padding": strings.Repeat("x", 16<<10)}
		status, m := e.register(t, body)
		if status != http.StatusRequestEntityTooLarge || m["error"] != "invalid_client_metadata" {
			t.Fatalf("17 KiB registration: %d %v", status, m)
		}
		list, err := e.store.ListClients(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		mustEqual(t, "clients stored", len(list), 0)
		// Just under the limit is fine.
		body["software_statement_padding"] = strings.Repeat("x", 15<<10)
		if status, m := e.register(t, body); status != 201 {
			t.Fatalf("15 KiB registration: %d %v", status, m)
		}
	})
}

// TestJanitorRemovesUnusedRegistrations: registrations never expired. Now a
// janitor tick deletes self-registered clients that never completed an
// authorization after AUTHZ_REGISTRATION_UNUSED_TTL, and idle ones (no live
// grant) after AUTHZ_REGISTRATION_IDLE_TTL; administrators' clients stay.
func TestJanitorRemovesUnusedRegistrations(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		ctx := context.Background()
		user, pw := e.user("jan")
		reg := func(name string) (id, secret, uri, tok string) {
			id, secret, m := e.registerOK(t, map[string]any{"client_name": name, "application_type": "native",
				"redirect_uris": []string{"http://127.0.0.1/callback"}, "grant_types": []string{"authorization_code", "refresh_token"}})
			return id, secret, m["registration_client_uri"].(string), m["registration_access_token"].(string)
		}
		alive := func(uri, tok string) bool {
			status, _, _ := jsonCall(t, "GET", uri, tok, nil)
			return status == 200
		}
		unusedID, _, unusedURI, unusedTok := reg("never used")
		usedID, usedSecret, usedURI, usedTok := reg("used")
		admin, _ := e.client(store.ClientMetadata{RedirectURIs: []string{"http://127.0.0.1/callback"}})
		redirect := "http://127.0.0.1:" + strconv.Itoa(freePort(t)) + "/callback"
		code := e.codeFor(e.browser(), authRequest{clientID: usedID, redirectURI: redirect, state: "s", verifier: testVerifier, scope: "read"}, user, pw)
		tr := e.postToken(exchangeForm(code, redirect, testVerifier, nil), usedID, usedSecret)
		mustEqual(t, "exchange", tr.Status, 200)

		stored := func(id string) bool {
			_, err := e.store.GetClient(ctx, id)
			return err == nil
		}
		e.clock.Advance(24*time.Hour - time.Second)
		e.srv.RunJobs(ctx) // one janitor tick
		if !alive(unusedURI, unusedTok) {
			t.Fatal("a tick before the unused TTL removed the registration")
		}
		e.clock.Advance(time.Second)
		e.srv.RunJobs(ctx)
		if alive(unusedURI, unusedTok) || stored(unusedID) {
			t.Fatal("the never-used registration survived the tick at its TTL")
		}
		if !alive(usedURI, usedTok) {
			t.Fatal("a registration that completed an authorization was removed")
		}

		// The user revokes it; 90 days without a live grant later it goes.
		if r := postForm(t, e.issuer+provider.PathRevoke, url.Values{"token": {tr.RefreshToken}}, usedID, usedSecret); r.Status != 200 {
			t.Fatalf("revoke: %d %s %s", r.Status, r.Error, r.ErrorDescription)
		}
		e.clock.Advance(90*24*time.Hour - 24*time.Hour - time.Second)
		e.srv.RunJobs(ctx)
		if !alive(usedURI, usedTok) {
			t.Fatal("a tick before the idle TTL removed the registration")
		}
		e.clock.Advance(time.Second)
		e.srv.RunJobs(ctx)
		if alive(usedURI, usedTok) || stored(usedID) {
			t.Fatal("the idle registration survived the tick at its TTL")
		}
		if _, err := e.store.GetClient(ctx, admin.ID); err != nil {
			t.Fatalf("an administrator's client was removed: %v", err)
		}
		// Each janitor deletion is in the audit trail, once, as the system's.
		evs, err := e.store.ListAuditEvents(ctx, store.AuditFilter{Name: provider.EventClientDeleted})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]int{}
		for _, ev := range evs {
			if ev.Actor != provider.ActorSystem || ev.Details["reason"] != "stale_registration" || ev.Details["trust"] != store.TrustRegistered {
				t.Errorf("stale deletion event %+v: want actor system, reason stale_registration, trust registered", ev)
			}
			got[ev.ClientID]++
		}
		if len(got) != 2 || got[unusedID] != 1 || got[usedID] != 1 {
			t.Errorf("client.deleted events by client: %v, want one each for %s and %s", got, unusedID, usedID)
		}
	})
}

// TestInvisibleCharactersInNamesRefused: a name with bidi controls or other
// invisible format characters reads differently on the consent page from
// what it is.
func TestInvisibleCharactersInNamesRefused(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		for _, name := range []string{
			"Goo\u202egle", "Google\u2066 Drive", "Pay\u200bPal", "Git\u00adHub", "Line\u2028Break", "Para\u2029Graph", "Zero\ufeffWidth", "C1\u0085",
		} {
			status, m := e.register(t, map[string]any{"client_name": name, "redirect_uris": []string{"https://app.example.com/cb"}})
			wantMetadataError(t, strconv.Quote(name), status, m, "invalid_client_metadata", "client_name")
		}
		// Ordinary non-ASCII names are fine.
		e.registerOK(t, map[string]any{"client_name": "Café – Über 東京 🙂", "redirect_uris": []string{"https://app.example.com/cb"}})
	})
}
