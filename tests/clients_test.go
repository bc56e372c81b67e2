package tests

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/store"
	"github.com/authzd/authz/provider/tokens"
)

// jsonCall sends a JSON request and decodes a JSON answer.
func jsonCall(t testing.TB, method, target, bearer string, body any) (int, map[string]any, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		switch b := body.(type) {
		case string:
			rd = strings.NewReader(b)
		default:
			raw, _ := json.Marshal(b)
			rd = bytes.NewReader(raw)
		}
	}
	req, _ := http.NewRequest(method, target, rd)
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("%s %s: non-JSON answer %d: %s", method, target, resp.StatusCode, raw)
		}
	}
	return resp.StatusCode, m, resp.Header
}

func (e *env) register(t testing.TB, body any) (int, map[string]any) {
	t.Helper()
	status, m, _ := jsonCall(t, "POST", e.issuer+provider.PathRegister, "", body)
	return status, m
}

// serviceToken is what `authz token initial-access create --allow-grant
// client_credentials --scope read --scope write --resource …` makes: an
// initial access token whose registrations may use client_credentials
// within those allowances (default resources: all configured).
func (e *env) serviceToken(t testing.TB, resources ...string) string {
	t.Helper()
	if len(resources) == 0 {
		resources = e.srv.Options().Resources
	}
	secret, err := tokens.NewSecret(rand.Reader, tokens.PrefixInitialAccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.CreateInitialAccessToken(context.Background(), store.InitialAccessToken{
		Hash: tokens.Hash(secret), CreatedAt: e.clock.Now(),
		AllowGrants: []string{oauth.GrantClientCredentials}, Scopes: []string{"read", "write"}, Resources: resources,
	}); err != nil {
		t.Fatal(err)
	}
	return secret
}

// registerService registers with a serviceToken.
func (e *env) registerService(t testing.TB, body any) (int, map[string]any) {
	t.Helper()
	status, m, _ := jsonCall(t, "POST", e.issuer+provider.PathRegister, e.serviceToken(t), body)
	return status, m
}

func TestRegistration(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)

		t.Run("public native client with jetbrains and loopback redirects", func(t *testing.T) {
			status, m := e.register(t, map[string]any{
				"client_name": "Toolbox", "application_type": "native", "token_endpoint_auth_method": "none",
				"redirect_uris": []string{"jetbrains://gateway/com.jetbrains/oauth", "http://127.0.0.1/callback"},
				"grant_types":   []string{"authorization_code", "refresh_token"}, "scope": "read",
				"unknown_field": "ignored",
			})
			mustEqual(t, "status", status, 201)
			if _, has := m["client_secret"]; has {
				t.Fatal("a public client's response has a client_secret key")
			}
			if _, has := m["unknown_field"]; has {
				t.Fatal("unknown field echoed")
			}
			for _, k := range []string{"client_id", "client_id_issued_at", "registration_access_token", "registration_client_uri", "redirect_uris"} {
				if m[k] == nil {
					t.Fatalf("response lacks %s: %v", k, m)
				}
			}
			mustEqual(t, "token_endpoint_auth_method", m["token_endpoint_auth_method"].(string), "none")
			if !strings.HasPrefix(m["registration_client_uri"].(string), e.issuer+provider.PathRegister+"/") {
				t.Fatalf("registration_client_uri %v", m["registration_client_uri"])
			}
			// The registered client completes a flow end to end.
			user, pw := e.user("reg-user")
			redirect := fmt.Sprintf("http://127.0.0.1:%d/callback", freePort(t))
			code := e.codeFor(e.browser(), authRequest{clientID: m["client_id"].(string), redirectURI: redirect, state: "r", verifier: testVerifier, scope: "read"}, user, pw)
			tr := e.postToken(exchangeForm(code, redirect, testVerifier, url.Values{"client_id": {m["client_id"].(string)}}), "", "")
			mustEqual(t, "exchange", tr.Status, 200)
		})

		t.Run("confidential client with defaults", func(t *testing.T) {
			status, m := e.register(t, map[string]any{"redirect_uris": []string{"https://app.example.com/cb"}, "client_name": "Web app"})
			mustEqual(t, "status", status, 201)
			mustEqual(t, "auth method default", m["token_endpoint_auth_method"].(string), "client_secret_basic")
			if s, _ := m["client_secret"].(string); !strings.HasPrefix(s, tokens.PrefixClientSecret) {
				t.Fatalf("client_secret %v", m["client_secret"])
			}
			if _, ok := m["client_secret_expires_at"]; !ok {
				t.Fatal("client_secret_expires_at missing")
			}
			// The stored client has only the secret's hash.
			c, err := e.store.GetClient(context.Background(), m["client_id"].(string))
			if err != nil {
				t.Fatal(err)
			}
			if !tokens.Equal(c.SecretHash, tokens.Hash(m["client_secret"].(string))) || bytes.Contains(c.SecretHash, []byte(m["client_secret"].(string))) {
				t.Fatal("secret not stored as its hash")
			}
			if !tokens.Equal(c.RegistrationTokenHash, tokens.Hash(m["registration_access_token"].(string))) {
				t.Fatal("registration token not stored as its hash")
			}
		})

		cb := []string{"https://a.example.com/cb"}
		errCases := []struct {
			name  string
			body  any
			code  string
			field string // the description names it (RFC 7591 §3.2.2)
		}{
			{"web client with a custom scheme", map[string]any{"redirect_uris": []string{"jetbrains://x/cb"}, "application_type": "web"}, "invalid_redirect_uri", "redirect_uris"},
			{"web client with plain http", map[string]any{"redirect_uris": []string{"http://app.example.com/cb"}}, "invalid_redirect_uri", "redirect_uris"},
			{"native client with non-loopback http", map[string]any{"application_type": "native", "redirect_uris": []string{"http://app.example.com/cb"}}, "invalid_redirect_uri", "redirect_uris"},
			{"fragment", map[string]any{"redirect_uris": []string{"https://app.example.com/cb#x"}}, "invalid_redirect_uri", "redirect_uris"},
			{"javascript", map[string]any{"application_type": "native", "redirect_uris": []string{"javascript:alert(1)"}}, "invalid_redirect_uri", "redirect_uris"},
			{"data", map[string]any{"application_type": "native", "redirect_uris": []string{"data:text/html,hi"}}, "invalid_redirect_uri", "redirect_uris"},
			{"file", map[string]any{"application_type": "native", "redirect_uris": []string{"file:///etc/passwd"}}, "invalid_redirect_uri", "redirect_uris"},
			{"vbscript", map[string]any{"application_type": "native", "redirect_uris": []string{"vbscript:msgbox"}}, "invalid_redirect_uri", "redirect_uris"},
			{"no redirect for code", map[string]any{"client_name": "x"}, "invalid_redirect_uri", "redirect_uris"},
			{"unknown auth method", map[string]any{"redirect_uris": cb, "token_endpoint_auth_method": "magic"}, "invalid_client_metadata", "token_endpoint_auth_method"},
			{"client_credentials for public client", map[string]any{"redirect_uris": cb, "token_endpoint_auth_method": "none", "grant_types": []string{"client_credentials"}}, "invalid_client_metadata", "grant_types"},
			{"refresh_token without authorization_code", map[string]any{"grant_types": []string{"client_credentials", "refresh_token"}}, "invalid_client_metadata", "grant_types"},
			{"unknown grant type", map[string]any{"redirect_uris": cb, "grant_types": []string{"password"}}, "invalid_client_metadata", "grant_types"},
			{"implicit response type", map[string]any{"redirect_uris": cb, "response_types": []string{"token"}}, "invalid_client_metadata", "response_types"},
			{"code response without the code grant", map[string]any{"grant_types": []string{"client_credentials"}, "response_types": []string{"code"}}, "invalid_client_metadata", "response_types"},
			{"bad application_type", map[string]any{"redirect_uris": cb, "application_type": "desktop"}, "invalid_client_metadata", "application_type"},
			{"logo_uri not http", map[string]any{"redirect_uris": cb, "logo_uri": "javascript:x"}, "invalid_client_metadata", "logo_uri"},
			{"client_uri relative", map[string]any{"redirect_uris": cb, "client_uri": "/home"}, "invalid_client_metadata", "client_uri"},
			{"invalid scope", map[string]any{"redirect_uris": cb, "scope": `read "write"`}, "invalid_client_metadata", "scope"},
			{"jwks and jwks_uri", map[string]any{"redirect_uris": cb, "token_endpoint_auth_method": "private_key_jwt", "jwks_uri": "https://a.example.com/jwks", "jwks": map[string]any{"keys": []any{map[string]any{"kty": "EC"}}}}, "invalid_client_metadata", "jwks"},
			{"not JSON", "{nope", "invalid_client_metadata", "body"},
			{"wrong type", map[string]any{"redirect_uris": "https://a.example.com/cb"}, "invalid_client_metadata", "redirect_uris"},
			{"private_key_jwt without keys", map[string]any{"redirect_uris": cb, "token_endpoint_auth_method": "private_key_jwt"}, "invalid_client_metadata", "jwks"},
		}
		for _, tc := range errCases {
			t.Run("error/"+tc.name, func(t *testing.T) {
				status, m := e.register(t, tc.body)
				mustEqual(t, "status", status, 400)
				mustEqual(t, "error", m["error"].(string), tc.code)
				if d, _ := m["error_description"].(string); !strings.HasPrefix(d, tc.field) {
					t.Fatalf("error_description %q does not name %s", d, tc.field)
				}
			})
		}

		t.Run("RFC 7592 read, update with rotation, immutable type, delete", func(t *testing.T) {
			status, m := e.register(t, map[string]any{"redirect_uris": []string{"https://app.example.com/cb"}, "client_name": "v1"})
			mustEqual(t, "status", status, 201)
			uri, tok1 := m["registration_client_uri"].(string), m["registration_access_token"].(string)
			id, secret := m["client_id"].(string), m["client_secret"].(string)

			status, _, h := jsonCall(t, "GET", uri, "", nil)
			mustEqual(t, "no token", status, 401)
			if !strings.Contains(h.Get("WWW-Authenticate"), "invalid_token") {
				t.Fatalf("WWW-Authenticate %q", h.Get("WWW-Authenticate"))
			}
			status, _, _ = jsonCall(t, "GET", uri, "authz_reg_wrong", nil)
			mustEqual(t, "wrong token", status, 401)
			status, got, _ := jsonCall(t, "GET", uri, tok1, nil)
			mustEqual(t, "read", status, 200)
			mustEqual(t, "name", got["client_name"].(string), "v1")

			upd := map[string]any{"client_id": id, "redirect_uris": []string{"https://app.example.com/cb2"}, "client_name": "v2"}
			status, got, _ = jsonCall(t, "PUT", uri, tok1, upd)
			mustEqual(t, "update", status, 200)
			mustEqual(t, "updated name", got["client_name"].(string), "v2")
			tok2, _ := got["registration_access_token"].(string)
			if tok2 == "" || tok2 == tok1 {
				t.Fatal("registration token not rotated on update")
			}
			status, _, _ = jsonCall(t, "GET", uri, tok1, nil)
			mustEqual(t, "old token after rotation", status, 401)
			// The secret still works after an update.
			cc := e.postToken(exchangeForm("authz_ac_unknown", "https://app.example.com/cb2", testVerifier, nil), id, secret)
			mustEqual(t, "secret after update (authenticated, bad code)", cc.Error, "invalid_grant")

			upd["token_endpoint_auth_method"] = "none"
			status, got, _ = jsonCall(t, "PUT", uri, tok2, upd)
			mustEqual(t, "switch to public", status, 400)
			mustEqual(t, "error", got["error"].(string), "invalid_client_metadata")

			status, _, _ = jsonCall(t, "DELETE", uri, tok2, nil)
			mustEqual(t, "delete", status, 204)
			status, _, _ = jsonCall(t, "GET", uri, tok2, nil)
			mustEqual(t, "after delete", status, 401)
			cc = e.postToken(url.Values{"grant_type": {"client_credentials"}}, id, secret)
			mustEqual(t, "deleted client authenticates", cc.Error, "invalid_client")
		})
	})
}

func TestRegistrationPolicies(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		off := start(t, open(t), func(o *provider.Options) { o.RegistrationPolicy = provider.RegistrationOff })
		status, m := off.register(t, map[string]any{"redirect_uris": []string{"https://a.example.com/cb"}})
		mustEqual(t, "off", status, 403)
		mustEqual(t, "off error", m["error"], any("access_denied"))
		_, meta, _ := jsonCall(t, "GET", off.issuer+"/.well-known/oauth-authorization-server", "", nil)
		if _, ok := meta["registration_endpoint"]; ok {
			t.Fatal("registration_endpoint advertised while off")
		}

		tokEnv := start(t, open(t), func(o *provider.Options) { o.RegistrationPolicy = provider.RegistrationToken })
		_, meta, _ = jsonCall(t, "GET", tokEnv.issuer+"/.well-known/oauth-authorization-server", "", nil)
		if meta["registration_endpoint"] != tokEnv.issuer+provider.PathRegister {
			t.Fatalf("registration_endpoint %v under the token policy", meta["registration_endpoint"])
		}
		body := map[string]any{"redirect_uris": []string{"https://a.example.com/cb"}}
		status, m, h := jsonCall(t, "POST", tokEnv.issuer+provider.PathRegister, "", body)
		mustEqual(t, "no initial token", status, 401)
		mustEqual(t, "no initial token error", m["error"], any("invalid_token"))
		if !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
			t.Fatalf("WWW-Authenticate %q", h.Get("WWW-Authenticate"))
		}
		mk := func(seed string, exp time.Time) string {
			secret, _ := tokens.NewSecret(strings.NewReader(strings.Repeat(seed, 64)), tokens.PrefixInitialAccessToken)
			if err := tokEnv.store.CreateInitialAccessToken(context.Background(), store.InitialAccessToken{Hash: tokens.Hash(secret), CreatedAt: tokEnv.clock.Now(), ExpiresAt: exp}); err != nil {
				t.Fatal(err)
			}
			return secret
		}
		good := mk("k", time.Time{})
		expired := mk("e", tokEnv.clock.Now().Add(time.Minute))
		status, _, _ = jsonCall(t, "POST", tokEnv.issuer+provider.PathRegister, "authz_iat_wrong", body)
		mustEqual(t, "wrong initial token", status, 401)
		status, _, _ = jsonCall(t, "POST", tokEnv.issuer+provider.PathRegister, good, body)
		mustEqual(t, "with initial token", status, 201)
		tokEnv.clock.Advance(2 * time.Minute)
		status, _, _ = jsonCall(t, "POST", tokEnv.issuer+provider.PathRegister, expired, body)
		mustEqual(t, "expired initial token", status, 401)
	})
}

// introspect calls the introspection endpoint as the resource server rs.
func (e *env) introspect(t testing.TB, rsID, rsSecret, token string) map[string]any {
	t.Helper()
	req, _ := http.NewRequest("POST", e.issuer+provider.PathIntrospect, strings.NewReader(url.Values{"token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(rsID, rsSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		raw, _ := io.ReadAll(resp.Body)
		t.Fatalf("introspection status %d: %s", resp.StatusCode, raw)
	}
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func assertInactive(t testing.TB, what string, m map[string]any) {
	t.Helper()
	if len(m) != 1 || m["active"] != false {
		t.Fatalf("%s: introspection = %v, want exactly {\"active\": false}", what, m)
	}
}

func TestRevocationAndIntrospection(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		user, pw := e.user("rita")
		a, aSecret, redirect := e.loopbackClient(false)
		pub, _, pubRedirect := e.loopbackClient(true)
		rs, rsSecret := e.resourceServer(store.ClientMetadata{})
		pair := func() tokenResp {
			code := e.codeFor(e.browser(), authRequest{clientID: a.ID, redirectURI: redirect, state: "s", verifier: testVerifier, scope: "read"}, user, pw)
			tr := e.postToken(exchangeForm(code, redirect, testVerifier, nil), a.ID, aSecret)
			mustEqual(t, "status", tr.Status, 200)
			return tr
		}
		revoke := func(id, secret, token, hint string) int {
			f := url.Values{"token": {token}}
			if hint != "" {
				f.Set("token_type_hint", hint)
			}
			if secret == "" {
				f.Set("client_id", id)
				id = ""
			}
			return postForm(t, e.issuer+provider.PathRevoke, f, id, secret).Status
		}

		t.Run("active tokens", func(t *testing.T) {
			p := pair()
			m := e.introspect(t, rs.ID, rsSecret, p.AccessToken)
			if m["active"] != true || m["client_id"] != a.ID || m["scope"] != "read" || m["iss"] != e.issuer || m["token_type"] != "Bearer" {
				t.Fatalf("access token introspection %v", m)
			}
			for _, k := range []string{"sub", "aud", "exp", "iat", "jti"} {
				if m[k] == nil {
					t.Fatalf("missing %s in %v", k, m)
				}
			}
			// A refresh token is shown only to the client holding it.
			assertInactive(t, "refresh token to a resource server", e.introspect(t, rs.ID, rsSecret, p.RefreshToken))
			m = e.introspect(t, a.ID, aSecret, p.RefreshToken)
			if m["active"] != true || m["token_type"] != "refresh_token" {
				t.Fatalf("refresh token introspection %v", m)
			}
		})
		t.Run("malformed and unknown are inactive", func(t *testing.T) {
			assertInactive(t, "garbage", e.introspect(t, rs.ID, rsSecret, "garbage"))
			assertInactive(t, "unknown refresh", e.introspect(t, rs.ID, rsSecret, tokens.PrefixRefreshToken+"nope"))
			p := pair()
			tampered := p.AccessToken[:len(p.AccessToken)-4] + "AAAA"
			assertInactive(t, "tampered", e.introspect(t, rs.ID, rsSecret, tampered))
		})
		t.Run("expired access token", func(t *testing.T) {
			p := pair()
			e.clock.Advance(16 * time.Minute)
			assertInactive(t, "expired", e.introspect(t, rs.ID, rsSecret, p.AccessToken))
		})
		t.Run("revoking a refresh token revokes the grant", func(t *testing.T) {
			p := pair()
			mustEqual(t, "revoke", revoke(a.ID, aSecret, p.RefreshToken, "access_token"), 200)
			assertInactive(t, "refresh", e.introspect(t, a.ID, aSecret, p.RefreshToken))
			assertInactive(t, "access token of the revoked grant", e.introspect(t, rs.ID, rsSecret, p.AccessToken))
		})
		t.Run("revoking an access token", func(t *testing.T) {
			p := pair()
			mustEqual(t, "revoke", revoke(a.ID, aSecret, p.AccessToken, ""), 200)
			assertInactive(t, "revoked access token", e.introspect(t, rs.ID, rsSecret, p.AccessToken))
			if m := e.introspect(t, a.ID, aSecret, p.RefreshToken); m["active"] != true {
				t.Fatal("revoking an access token killed the refresh token")
			}
		})
		t.Run("unknown token and another client's token: 200, no effect", func(t *testing.T) {
			mustEqual(t, "unknown", revoke(a.ID, aSecret, "authz_rt_unknown", ""), 200)
			p := pair()
			mustEqual(t, "other client's", revoke(rs.ID, rsSecret, p.RefreshToken, ""), 200)
			if m := e.introspect(t, a.ID, aSecret, p.RefreshToken); m["active"] != true {
				t.Fatal("another client revoked the token")
			}
		})
		t.Run("public client revokes with client_id", func(t *testing.T) {
			code := e.codeFor(e.browser(), authRequest{clientID: pub.ID, redirectURI: pubRedirect, state: "p", verifier: testVerifier}, user, pw)
			tr := e.postToken(exchangeForm(code, pubRedirect, testVerifier, url.Values{"client_id": {pub.ID}}), "", "")
			mustEqual(t, "public exchange", tr.Status, 200)
			mustEqual(t, "revoke", revoke(pub.ID, "", tr.RefreshToken, "refresh_token"), 200)
			r := e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}, "client_id": {pub.ID}}, "", "")
			mustEqual(t, "refresh after public revoke", r.Error, "invalid_grant")
		})
		t.Run("confidential client must authenticate to revoke", func(t *testing.T) {
			p := pair()
			r := postForm(t, e.issuer+provider.PathRevoke, url.Values{"token": {p.RefreshToken}, "client_id": {a.ID}}, "", "")
			mustEqual(t, "status", r.Status, 401)
			mustEqual(t, "error", r.Error, "invalid_client")
		})
		t.Run("public clients cannot introspect; bad credentials are 401", func(t *testing.T) {
			r := postForm(t, e.issuer+provider.PathIntrospect, url.Values{"token": {"x"}, "client_id": {pub.ID}}, "", "")
			mustEqual(t, "public", r.Status, 401)
			r = postForm(t, e.issuer+provider.PathIntrospect, url.Values{"token": {"x"}}, rs.ID, "wrong")
			mustEqual(t, "wrong secret", r.Status, 401)
		})
		t.Run("deleting a client makes its tokens inactive", func(t *testing.T) {
			c2, s2, r2 := e.loopbackClient(false)
			code := e.codeFor(e.browser(), authRequest{clientID: c2.ID, redirectURI: r2, state: "d", verifier: testVerifier}, user, pw)
			tr := e.postToken(exchangeForm(code, r2, testVerifier, nil), c2.ID, s2)
			if err := e.store.DeleteClient(context.Background(), c2.ID); err != nil {
				t.Fatal(err)
			}
			assertInactive(t, "access", e.introspect(t, rs.ID, rsSecret, tr.AccessToken))
			e.clock.Advance(provider.ClientCacheTTL) // deleted behind the server's back
			r := e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}}, c2.ID, s2)
			mustEqual(t, "refresh of a deleted client", r.Error, "invalid_client")
		})
	})
}

func TestClientCredentials(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		svc, secret := e.client(store.ClientMetadata{GrantTypes: []string{oauth.GrantClientCredentials}, Scopes: []string{"read", "write"}})
		web, webSecret, _ := e.loopbackClient(false)
		pub, _, _ := e.loopbackClient(true)
		cases := []struct {
			name     string
			form     url.Values
			id, sec  string
			post     bool
			wantAud  []string
			wantErr  string
			wantScop string
		}{
			{"no resource: first configured", url.Values{}, svc.ID, secret, false, []string{e.issuer + "/api"}, "", "read write"},
			{"resource and scope", url.Values{"resource": {"https://mcp.example.com/mcp"}, "scope": {"read"}}, svc.ID, secret, false, []string{"https://mcp.example.com/mcp"}, "", "read"},
			{"client_secret_post", url.Values{"scope": {"write"}}, svc.ID, secret, true, []string{e.issuer + "/api"}, "", "write"},
			{"unknown resource", url.Values{"resource": {"https://nope.example.com"}}, svc.ID, secret, false, nil, "invalid_target", ""},
			{"scope not allowed", url.Values{"scope": {"admin"}}, svc.ID, secret, false, nil, "invalid_scope", ""},
			// RFC 6749 §3.3: an offered scope the client may not have is
			// left out when others remain, and the response says so.
			{"scope not allowed beside allowed ones", url.Values{"scope": {"read admin"}}, svc.ID, secret, false, []string{e.issuer + "/api"}, "", "read"},
			{"unknown scope", url.Values{"scope": {"read bogus"}}, svc.ID, secret, false, nil, "invalid_scope", ""},
			{"client not registered for the grant", url.Values{}, web.ID, webSecret, false, nil, "unauthorized_client", ""},
			{"public client", url.Values{"client_id": {pub.ID}}, "", "", true, nil, "unauthorized_client", ""},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				f := url.Values{"grant_type": {"client_credentials"}}
				for k, v := range tc.form {
					f[k] = v
				}
				id, sec := tc.id, tc.sec
				if tc.post && id != "" {
					f.Set("client_id", id)
					f.Set("client_secret", sec)
					id, sec = "", ""
				}
				tr := e.postToken(f, id, sec)
				if tc.wantErr != "" {
					mustEqual(t, "error", tr.Error, tc.wantErr)
					return
				}
				mustEqual(t, "status", tr.Status, 200)
				if tr.RefreshToken != "" {
					t.Fatal("client_credentials issued a refresh token")
				}
				if got := audience(t, tr.AccessToken); !slices.Equal(got, tc.wantAud) {
					t.Fatalf("aud %v, want %v", got, tc.wantAud)
				}
				mustEqual(t, "scope", tr.Scope, tc.wantScop)
				mustEqual(t, "sub", claims(t, tr.AccessToken)["sub"].(string), svc.ID)
			})
		}
	})
}

func TestConnectedApps(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		user, pw := e.user("uma")
		c, secret, redirect := e.loopbackClient(false)
		rs, rsSecret := e.resourceServer(store.ClientMetadata{})
		b := e.browser()
		var pairs []tokenResp
		for _, dev := range []string{"one", "two"} {
			code := e.codeFor(b, authRequest{clientID: c.ID, redirectURI: redirect, state: dev, verifier: testVerifier, scope: "read"}, user, pw)
			pairs = append(pairs, e.postToken(exchangeForm(code, redirect, testVerifier, nil), c.ID, secret))
		}
		p := b.do("GET", provider.PathApps, nil)
		mustEqual(t, "status", p.status, 200)
		if strings.Count(p.body, `name="grant_id"`) != 2 || !strings.Contains(p.body, "Test app") || !strings.Contains(p.body, "read") {
			t.Fatalf("apps page does not list both grants: %.2000s", p.body)
		}
		// Revoke the first grant shown.
		forms := regexpForms(p.body)
		f := forms[0]
		p = b.do("POST", provider.PathApps, f)
		mustEqual(t, "revoke status", p.status, http.StatusSeeOther)
		active := 0
		for _, pr := range pairs {
			if e.introspect(t, rs.ID, rsSecret, pr.AccessToken)["active"] == true {
				active++
			}
		}
		mustEqual(t, "grants still active", active, 1)
		p = b.do("GET", provider.PathApps, nil)
		mustEqual(t, "rows after revoke", strings.Count(p.body, `name="grant_id"`), 1)

		t.Run("anonymous visitors are sent to sign in", func(t *testing.T) {
			p := e.browser().do("GET", provider.PathApps, nil)
			mustEqual(t, "status", p.status, http.StatusSeeOther)
			if !strings.Contains(p.location, provider.PathLogin) {
				t.Fatalf("location %q", p.location)
			}
		})
		t.Run("revoke without CSRF token is refused", func(t *testing.T) {
			p := b.do("POST", provider.PathApps, url.Values{"grant_id": {forms[0].Get("grant_id")}})
			mustEqual(t, "status", p.status, 400)
		})
	})
}

// regexpForms returns the hidden fields of each revoke form on the apps page.
func regexpForms(body string) []url.Values {
	var out []url.Values
	for _, chunk := range strings.Split(body, "<form")[1:] {
		f := formFields(chunk[:strings.Index(chunk, "</form>")])
		if f.Get("grant_id") != "" {
			out = append(out, f)
		}
	}
	return out
}

func TestDiscovery(t *testing.T) {
	t.Parallel()
	e := start(t, storeKinds[0].open(t), nil)
	status, m, h := jsonCall(t, "GET", e.issuer+"/.well-known/oauth-authorization-server", "", nil)
	mustEqual(t, "status", status, 200)
	mustEqual(t, "CORS", h.Get("Access-Control-Allow-Origin"), "*")
	mustEqual(t, "issuer", m["issuer"].(string), e.issuer)
	for k, want := range map[string]string{
		"authorization_endpoint": provider.PathAuthorize, "token_endpoint": provider.PathToken, "jwks_uri": provider.PathJWKS,
		"registration_endpoint": provider.PathRegister, "revocation_endpoint": provider.PathRevoke, "introspection_endpoint": provider.PathIntrospect,
	} {
		mustEqual(t, k, m[k].(string), e.issuer+want)
	}
	strs := func(k string) []string {
		var out []string
		for _, v := range m[k].([]any) {
			out = append(out, v.(string))
		}
		return out
	}
	if !slices.Equal(strs("code_challenge_methods_supported"), []string{"S256"}) {
		t.Fatalf("code_challenge_methods_supported %v", m["code_challenge_methods_supported"])
	}
	for _, want := range []string{"none", "client_secret_basic", "client_secret_post"} {
		if !slices.Contains(strs("token_endpoint_auth_methods_supported"), want) {
			t.Fatalf("auth methods %v lack %s", m["token_endpoint_auth_methods_supported"], want)
		}
	}
	if !slices.Equal(strs("response_types_supported"), []string{"code"}) || !slices.Equal(strs("scopes_supported"), []string{"read", "write", "admin", "offline_access", "openid", "profile", "email"}) {
		t.Fatalf("metadata %v", m)
	}
	mustEqual(t, "iss parameter", m["authorization_response_iss_parameter_supported"].(bool), true)

	// Every advertised endpoint is served.
	for _, k := range []string{"token_endpoint", "revocation_endpoint", "introspection_endpoint", "registration_endpoint"} {
		resp, err := http.Post(m[k].(string), "application/x-www-form-urlencoded", strings.NewReader(""))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == 404 || resp.StatusCode == 405 {
			t.Fatalf("%s answers %d", k, resp.StatusCode)
		}
	}
	status, jwks, h := jsonCall(t, "GET", m["jwks_uri"].(string), "", nil)
	mustEqual(t, "jwks", status, 200)
	mustEqual(t, "jwks CORS", h.Get("Access-Control-Allow-Origin"), "*")
	keys := jwks["keys"].([]any)
	if len(keys) == 0 || keys[0].(map[string]any)["alg"] != "ES256" || keys[0].(map[string]any)["d"] != nil {
		t.Fatalf("jwks %v", jwks)
	}
	// The token endpoint allows browser-based clients (CORS preflight).
	req, _ := http.NewRequest("OPTIONS", e.issuer+provider.PathToken, nil)
	req.Header.Set("Origin", "https://app.example.com")
	req.Header.Set("Access-Control-Request-Method", "POST")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	mustEqual(t, "preflight", resp.Header.Get("Access-Control-Allow-Origin"), "*")
}

func TestDiscoveryWithIssuerPath(t *testing.T) {
	t.Parallel()
	st := storeKinds[0].open(t)
	e := start(t, st, func(o *provider.Options) {
		o.Issuer += "/tenant"
		o.Resources = []string{o.Issuer + "/mcp"}
	})
	base := e.issuer
	iss := base + "/tenant"
	for _, path := range []string{"/.well-known/oauth-authorization-server/tenant", "/tenant/.well-known/oauth-authorization-server"} {
		status, m, _ := jsonCall(t, "GET", base+path, "", nil)
		mustEqual(t, path, status, 200)
		mustEqual(t, "issuer", m["issuer"].(string), iss)
		mustEqual(t, "token endpoint", m["token_endpoint"].(string), iss+provider.PathToken)
	}
	// RFC 9728 document for the resource the server hosts, path-inserted.
	status, m, _ := jsonCall(t, "GET", base+"/.well-known/oauth-protected-resource/tenant/mcp", "", nil)
	mustEqual(t, "prm", status, 200)
	mustEqual(t, "resource", m["resource"].(string), iss+"/mcp")
	mustEqual(t, "authorization server", m["authorization_servers"].([]any)[0].(string), iss)
}

// clientReads counts GetClient calls.
type clientReads struct {
	store.Store
	n atomic.Int64
}

func (c *clientReads) GetClient(ctx context.Context, id string) (store.Client, error) {
	c.n.Add(1)
	return c.Store.GetClient(ctx, id)
}

// replicasCountingReads starts two replicas on st; the second counts its
// client reads.
func replicasCountingReads(t *testing.T, st store.Store) (one, two *env, reads *clientReads) {
	key := make([]byte, 32) // replicas share AUTHZ_ENCRYPTION_KEY
	withKey := func(o *provider.Options) { o.EncryptionKey = key }
	reads = &clientReads{Store: st}
	return start(t, st, withKey), start(t, reads, withKey), reads
}

// TestClientCacheOnTheTokenEndpoint (issue 13 point 2): the token endpoint
// reads a client from a per-process cache, so a busy client costs no
// database read per request; the replica that deletes a client sees it at
// once, and another replica within the documented 2 s bound.
func TestClientCacheOnTheTokenEndpoint(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		one, two, reads := replicasCountingReads(t, open(t))

		status, m := one.registerService(t, map[string]any{"grant_types": []string{"client_credentials"}, "token_endpoint_auth_method": "client_secret_basic"})
		mustEqual(t, "register", status, 201)
		id, secret := m["client_id"].(string), m["client_secret"].(string)
		uri, regToken := m["registration_client_uri"].(string), m["registration_access_token"].(string)
		cc := url.Values{"grant_type": {"client_credentials"}}

		for i := range 3 {
			mustEqual(t, fmt.Sprintf("client_credentials %d on replica two", i), two.postToken(cc, id, secret).Status, 200)
		}
		mustEqual(t, "client reads for three token requests", reads.n.Load(), int64(1))
		// A wrong secret is checked against the store before it is refused.
		mustEqual(t, "wrong secret", two.postToken(cc, id, "authz_cs_wrong").Error, "invalid_client")
		mustEqual(t, "client reads after a refusal", reads.n.Load(), int64(2))

		mustEqual(t, "client_credentials on replica one", one.postToken(cc, id, secret).Status, 200)
		status, _, _ = jsonCall(t, "DELETE", uri, regToken, nil)
		mustEqual(t, "delete on replica one", status, 204)
		mustEqual(t, "replica one, at once", one.postToken(cc, id, secret).Error, "invalid_client")

		two.clock.Advance(provider.ClientCacheTTL)
		mustEqual(t, "replica two, ClientCacheTTL later", two.postToken(cc, id, secret).Error, "invalid_client")
	})
}

// TestClientCacheOnTheAuthorizationEndpoint (issue 13 point 2): GET
// /authorize reads its client through the token endpoint's per-process
// cache, so starting an authorization costs no client read per request;
// the replica that updates or deletes a client (RFC 7592) is bound by the
// change at once, another replica within ClientCacheTTL.
func TestClientCacheOnTheAuthorizationEndpoint(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		one, two, reads := replicasCountingReads(t, open(t))

		status, m := one.register(t, map[string]any{"redirect_uris": []string{"https://app.example.com/cb"}, "client_name": "v1"})
		mustEqual(t, "register", status, 201)
		id, uri, regToken := m["client_id"].(string), m["registration_client_uri"].(string), m["registration_access_token"].(string)
		authURL := func(e *env, redirect string) string {
			return authRequest{clientID: id, redirectURI: redirect, state: "s", verifier: testVerifier}.url(e.issuer)
		}
		// Not signed in: a known client and registered redirect send the
		// browser to the sign-in page; anything else is an error page.
		toLogin := func(what string, e *env, redirect string) {
			t.Helper()
			p := e.browser().do("GET", authURL(e, redirect), nil)
			if p.status != http.StatusSeeOther || !strings.Contains(p.location, provider.PathLogin) {
				t.Fatalf("%s: status %d location %q body %.300s", what, p.status, p.location, p.body)
			}
		}
		refused := func(what string, e *env, redirect, page string) {
			t.Helper()
			p := e.browser().do("GET", authURL(e, redirect), nil)
			if p.status != http.StatusBadRequest || !strings.Contains(p.body, page) {
				t.Fatalf("%s: status %d, want 400 %q; body %.300s", what, p.status, page, p.body)
			}
		}

		for i := range 3 {
			toLogin(fmt.Sprintf("authorization %d on replica two", i), two, "https://app.example.com/cb")
		}
		mustEqual(t, "client reads for three authorization requests", reads.n.Load(), int64(1))

		// Replica one has the client cached too; its own RFC 7592 update
		// binds it at once: the old redirect URI is refused, the new one
		// accepted.
		toLogin("replica one, before the update", one, "https://app.example.com/cb")
		upd := map[string]any{"client_id": id, "redirect_uris": []string{"https://app.example.com/cb2"}, "client_name": "v2"}
		status, got, _ := jsonCall(t, "PUT", uri, regToken, upd)
		mustEqual(t, "update on replica one", status, 200)
		regToken = got["registration_access_token"].(string)
		refused("replica one, old redirect after the update", one, "https://app.example.com/cb", "Invalid redirect")
		toLogin("replica one, new redirect after the update", one, "https://app.example.com/cb2")

		status, _, _ = jsonCall(t, "DELETE", uri, regToken, nil)
		mustEqual(t, "delete on replica one", status, 204)
		refused("replica one, at once after the delete", one, "https://app.example.com/cb2", "Unknown application")

		two.clock.Advance(provider.ClientCacheTTL)
		refused("replica two, ClientCacheTTL later", two, "https://app.example.com/cb", "Unknown application")
	})
}

// clientUses counts MarkClientUsed calls.
type clientUses struct {
	store.Store
	n atomic.Int64
}

func (c *clientUses) MarkClientUsed(ctx context.Context, id string, at time.Time) error {
	c.n.Add(1)
	return c.Store.MarkClientUsed(ctx, id, at)
}

// TestClientUseWrittenOncePerResolution: a self-registered client's use
// (which keeps the janitor from sweeping it) is written once a day, not by
// every request that meets the client's cached copy within ClientCacheTTL.
func TestClientUseWrittenOncePerResolution(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		uses := &clientUses{Store: open(t)}
		e := start(t, uses, nil)
		status, m := e.registerService(t, map[string]any{"grant_types": []string{"client_credentials"}, "token_endpoint_auth_method": "client_secret_basic"})
		mustEqual(t, "register", status, 201)
		id, secret := m["client_id"].(string), m["client_secret"].(string)
		burst := func() {
			for range 5 {
				r := e.postToken(url.Values{"grant_type": {"client_credentials"}}, id, secret)
				mustEqual(t, "client_credentials: "+r.ErrorDescription, r.Status, 200)
			}
		}
		burst()
		mustEqual(t, "uses written by a burst of a new client's requests", uses.n.Load(), int64(1))
		e.clock.Advance(25 * time.Hour)
		burst()
		mustEqual(t, "uses written by a burst a day later", uses.n.Load(), int64(2))
	})
}

// RFC 7592 §2.2 rotates the registration access token on every update, so
// one token authorises one update: of concurrent updates presenting the same
// token exactly one succeeds, and the token it returns is the client's. A
// read, a check and a separate write (house rules 3 and 11) let several win
// and leave all but the last writer holding a dead token.
func TestRegistrationUpdateIsSingleUse(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		status, m := e.register(t, map[string]any{"redirect_uris": []string{"https://app.example.com/cb"}})
		mustEqual(t, "register", status, http.StatusCreated)
		id, uri, tok := m["client_id"].(string), m["registration_client_uri"].(string), m["registration_access_token"].(string)

		const racers = 16
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			winners []string
			other   []int
		)
		release := make(chan struct{})
		for i := range racers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-release
				upd := map[string]any{"client_id": id, "redirect_uris": []string{"https://app.example.com/cb"}, "client_name": "racer " + string(rune('a'+i))}
				status, got, _ := jsonCall(t, "PUT", uri, tok, upd)
				mu.Lock()
				defer mu.Unlock()
				switch status {
				case http.StatusOK:
					winners = append(winners, got["registration_access_token"].(string))
				case http.StatusUnauthorized:
				default:
					other = append(other, status)
				}
			}()
		}
		close(release)
		wg.Wait()
		if len(winners) != 1 || len(other) != 0 {
			t.Fatalf("%d updates with one registration token succeeded (other answers %v), want exactly 1", len(winners), other)
		}
		status, _, _ = jsonCall(t, "GET", uri, winners[0], nil)
		mustEqual(t, "the winner's token reads the client", status, http.StatusOK)
		status, _, _ = jsonCall(t, "GET", uri, tok, nil)
		mustEqual(t, "the spent token", status, http.StatusUnauthorized)
	})
}

// RFC 7592 §2.3 authorises a delete by the registration token, which an
// update racing it rotates (§2.2): of a DELETE and PUTs presenting one
// token exactly one succeeds, and the others get 401 invalid_token as for
// any bad token. A delete that checked the token, then deleted in a
// separate step, could succeed alongside the update, whose client then
// holds a token for a client that no longer exists (or the other way).
func TestRegistrationDeleteRacingUpdate(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		const rounds, racers = 4, 12
		for round := range rounds {
			status, m := e.register(t, map[string]any{"redirect_uris": []string{"https://app.example.com/cb"}})
			mustEqual(t, "register", status, http.StatusCreated)
			id, uri, tok := m["client_id"].(string), m["registration_client_uri"].(string), m["registration_access_token"].(string)

			var (
				wg                sync.WaitGroup
				mu                sync.Mutex
				deleted, updated  int
				newToken          string
				refused, unknowns []string
			)
			release := make(chan struct{})
			for i := range racers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-release
					method, body := "DELETE", map[string]any(nil)
					if i%2 == 1 {
						method, body = "PUT", map[string]any{"client_id": id, "redirect_uris": []string{"https://app.example.com/cb"}, "client_name": fmt.Sprint("racer ", i)}
					}
					status, got, _ := jsonCall(t, method, uri, tok, body)
					mu.Lock()
					defer mu.Unlock()
					switch {
					case status == http.StatusNoContent && method == "DELETE":
						deleted++
					case status == http.StatusOK && method == "PUT":
						updated++
						newToken, _ = got["registration_access_token"].(string)
					case status == http.StatusUnauthorized:
						refused = append(refused, fmt.Sprint(got["error"]))
					default:
						unknowns = append(unknowns, fmt.Sprint(method, " ", status, " ", got))
					}
				}()
			}
			close(release)
			wg.Wait()
			if deleted+updated != 1 || len(unknowns) != 0 {
				t.Fatalf("round %d: %d deletes and %d updates with one registration token succeeded (other answers %v), want exactly one", round, deleted, updated, unknowns)
			}
			for _, code := range refused {
				mustEqual(t, "the losers' error", code, "invalid_token")
			}
			status, _, _ = jsonCall(t, "GET", uri, tok, nil)
			mustEqual(t, "the spent token", status, http.StatusUnauthorized)
			_, err := e.store.GetClient(context.Background(), id)
			if deleted == 1 {
				if !errors.Is(err, store.ErrNotFound) {
					t.Fatalf("round %d: the delete won, yet the client is there (GetClient: %v)", round, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("round %d: the update won, yet GetClient: %v", round, err)
			}
			status, _, _ = jsonCall(t, "GET", uri, newToken, nil)
			mustEqual(t, "the winning update's token reads the client", status, http.StatusOK)
		}
	})
}

// narrowsOnRead is a real store that, once armed, runs an administrator's
// change right after its next read of that client: it puts the change
// between an RFC 7592 update's authentication (a read) and its write, the
// window a concurrent `authz client update` can hit.
type narrowsOnRead struct {
	store.Store
	id   string
	edit atomic.Pointer[store.EditClientFunc]
	err  error
}

func (n *narrowsOnRead) GetClient(ctx context.Context, id string) (store.Client, error) {
	c, err := n.Store.GetClient(ctx, id)
	if id == n.id {
		if edit := n.edit.Swap(nil); edit != nil {
			_, n.err = n.Store.UpdateClient(ctx, id, *edit)
		}
	}
	return c, err
}

// An administrator who narrows a self-registered client's allowances
// (`authz client update --scope/--resource/--introspect`) while the
// client's RFC 7592 update is in flight has the last word: the update is
// decided on the client as stored when it is written, so it never writes
// back the wider allowances it read before the narrowing committed
// (RFC 7592 §2.2: the server MAY replace values; the allowances are the
// administrator's, house rule 13).
func TestRegistrationUpdateKeepsAdminNarrowing(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		st := &narrowsOnRead{Store: open(t)}
		e := start(t, st, nil)
		ctx := context.Background()
		status, m := e.register(t, map[string]any{"redirect_uris": []string{"https://app.example.com/cb"}})
		mustEqual(t, "register", status, http.StatusCreated)
		id, uri, tok := m["client_id"].(string), m["registration_client_uri"].(string), m["registration_access_token"].(string)
		st.id = id
		api, mcp := e.issuer+"/api", "https://mcp.example.com/mcp"
		allow := func(scopes, resources []string, introspect bool) store.EditClientFunc {
			return func(c *store.Client) error {
				m := c.Metadata
				m.Scopes, m.Resources, m.Introspect = scopes, resources, introspect
				_, err := provider.UpdateClient(c, m, false, e.clock.Now(), rand.Reader)
				return err
			}
		}
		// The administrator first trusts the client widely…
		if _, err := e.store.UpdateClient(ctx, id, allow([]string{"read", "write", "admin"}, []string{api, mcp}, true)); err != nil {
			t.Fatal(err)
		}
		// …then narrows it just after the client's update has read it.
		narrow := allow([]string{"read"}, []string{api}, false)
		st.edit.Store(&narrow)
		status, got, _ := jsonCall(t, "PUT", uri, tok, map[string]any{
			"client_id": id, "redirect_uris": []string{"https://app.example.com/cb"},
			"client_name": "Renamed", "scope": "read write admin",
		})
		if st.edit.Load() != nil || st.err != nil {
			t.Fatalf("the narrowing did not run inside the update's window (error %v)", st.err)
		}
		mustEqual(t, fmt.Sprint("update: ", got), status, http.StatusOK)
		mustEqual(t, "scope in the update's answer", got["scope"], "read")

		c, err := e.store.GetClient(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(c.Metadata.Scopes, []string{"read"}) || !slices.Equal(c.Metadata.Resources, []string{api}) || c.Metadata.Introspect {
			t.Fatalf("after the update: scopes %v, resources %v, introspect %v; want the administrator's [read], [%s], false",
				c.Metadata.Scopes, c.Metadata.Resources, c.Metadata.Introspect, api)
		}
		mustEqual(t, "the update's own change", c.Metadata.Name, "Renamed")
		status, _, _ = jsonCall(t, "GET", uri, got["registration_access_token"].(string), nil)
		mustEqual(t, "the rotated token reads the client", status, http.StatusOK)
		status, _, _ = jsonCall(t, "GET", uri, tok, nil)
		mustEqual(t, "the spent token", status, http.StatusUnauthorized)
	})
}
