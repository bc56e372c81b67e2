package tests

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/store"
	"github.com/authzd/authz/provider/tokens"
)

// TestHostileIdentifiers: identifiers a database cannot hold (NUL, invalid
// UTF-8) are unknown identifiers, answered as such on every endpoint,
// never a 500.
func TestHostileIdentifiers(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		for _, bad := range []string{"a\x00b", "a\xffb", "\xc3\x28"} {
			q := url.QueryEscape(bad)
			cases := []struct {
				name       string
				do         func() (int, string)
				wantStatus int
				wantError  string
			}{
				{"token, client_secret_post", func() (int, string) {
					r := postForm(t, e.issuer+provider.PathToken, url.Values{"grant_type": {"client_credentials"}, "client_id": {bad}, "client_secret": {"x"}}, "", "")
					return r.Status, r.Error
				}, 401, "invalid_client"},
				{"token, client_secret_basic", func() (int, string) {
					r := postForm(t, e.issuer+provider.PathToken, url.Values{"grant_type": {"client_credentials"}}, bad, "x")
					return r.Status, r.Error
				}, 401, "invalid_client"},
				{"revoke", func() (int, string) {
					r := postForm(t, e.issuer+provider.PathRevoke, url.Values{"token": {"x"}, "client_id": {bad}}, "", "")
					return r.Status, r.Error
				}, 401, "invalid_client"},
				{"introspect", func() (int, string) {
					r := postForm(t, e.issuer+provider.PathIntrospect, url.Values{"token": {"x"}}, bad, "x")
					return r.Status, r.Error
				}, 401, "invalid_client"},
				{"registration read", func() (int, string) {
					status, m, _ := jsonCall(t, "GET", e.issuer+provider.PathRegister+"/"+q, "authz_reg_x", nil)
					code, _ := m["error"].(string)
					return status, code
				}, 401, "invalid_token"},
				{"authorize", func() (int, string) {
					p := e.browser().do("GET", e.issuer+provider.PathAuthorize+"?response_type=code&client_id="+q, nil)
					return p.status, ""
				}, 400, ""},
				{"login", func() (int, string) {
					return e.browser().loginAttempt(bad, "pw").status, ""
				}, 401, ""},
			}
			for _, tc := range cases {
				status, code := tc.do()
				if status != tc.wantStatus || code != tc.wantError {
					t.Errorf("%s with %q: %d %q, want %d %q", tc.name, bad, status, code, tc.wantStatus, tc.wantError)
				}
			}
		}
	})
}

// TestRegistrationUpdates covers RFC 7592 §2.2 beyond the basic cycle.
func TestRegistrationUpdates(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
		cc := func(id, secret string) tokenResp {
			return e.postToken(url.Values{"grant_type": {"client_credentials"}}, id, secret)
		}

		t.Run("moving between key and secret authentication", func(t *testing.T) {
			body := map[string]any{"client_name": "svc", "token_endpoint_auth_method": "private_key_jwt", "jwks": json.RawMessage(jwks), "grant_types": []string{"client_credentials"}}
			status, m := e.registerService(t, body)
			mustEqual(t, "register", status, 201)
			id, uri, tok := m["client_id"].(string), m["registration_client_uri"].(string), m["registration_access_token"].(string)

			body["client_id"] = id
			body["token_endpoint_auth_method"] = "client_secret_basic"
			delete(body, "jwks")
			status, got, _ := jsonCall(t, "PUT", uri, tok, body)
			mustEqual(t, "to client_secret_basic", status, 200)
			secret, _ := got["client_secret"].(string)
			if !strings.HasPrefix(secret, tokens.PrefixClientSecret) {
				t.Fatalf("no new secret when moving to a secret method: %v", got)
			}
			mustEqual(t, "new secret works", cc(id, secret).Status, 200)

			body["token_endpoint_auth_method"] = "private_key_jwt"
			body["jwks"] = json.RawMessage(jwks)
			status, got, _ = jsonCall(t, "PUT", uri, got["registration_access_token"].(string), body)
			mustEqual(t, "back to private_key_jwt", status, 200)
			if _, has := got["client_secret"]; has {
				t.Fatal("private_key_jwt client answered with a secret")
			}
			mustEqual(t, "old secret after moving to keys", cc(id, secret).Error, "invalid_client")
		})

		t.Run("client_id must match, public stays public, resources stay the administrator's", func(t *testing.T) {
			status, m := e.register(t, map[string]any{"redirect_uris": []string{"http://127.0.0.1/cb"}, "application_type": "native", "token_endpoint_auth_method": "none"})
			mustEqual(t, "register", status, 201)
			id, uri, tok := m["client_id"].(string), m["registration_client_uri"].(string), m["registration_access_token"].(string)
			// An administrator limits the client to one resource.
			if _, err := e.store.UpdateClient(context.Background(), id, func(c *store.Client) error {
				c.Metadata.Resources = []string{"https://mcp.example.com/mcp"}
				return nil
			}); err != nil {
				t.Fatal(err)
			}

			upd := map[string]any{"client_id": "someone-else", "redirect_uris": []string{"http://127.0.0.1/cb"}, "application_type": "native", "token_endpoint_auth_method": "none"}
			status, got, _ := jsonCall(t, "PUT", uri, tok, upd)
			mustEqual(t, "wrong client_id", status, 400)
			mustEqual(t, "error", got["error"], any("invalid_request"))

			upd["client_id"] = id
			upd["token_endpoint_auth_method"] = "client_secret_basic"
			status, got, _ = jsonCall(t, "PUT", uri, tok, upd)
			mustEqual(t, "public to confidential", status, 400)
			mustEqual(t, "error", got["error"], any("invalid_client_metadata"))

			upd["token_endpoint_auth_method"] = "none"
			upd["client_name"] = "renamed"
			status, _, _ = jsonCall(t, "PUT", uri, tok, upd)
			mustEqual(t, "update", status, 200)
			c, _ := e.store.GetClient(context.Background(), id)
			mustEqual(t, "name", c.Metadata.Name, "renamed")
			if len(c.Metadata.Resources) != 1 || c.Metadata.Resources[0] != "https://mcp.example.com/mcp" {
				t.Fatalf("resources after a client's update: %v", c.Metadata.Resources)
			}
		})

		t.Run("DELETE over HTTP ends the client's tokens", func(t *testing.T) {
			status, m := e.register(t, map[string]any{"redirect_uris": []string{"http://127.0.0.1/callback"}, "application_type": "native", "client_name": "doomed",
				"grant_types": []string{"authorization_code", "refresh_token"}})
			mustEqual(t, "register", status, 201)
			id, secret := m["client_id"].(string), m["client_secret"].(string)
			user, pw := e.user("del-user")
			redirect := "http://127.0.0.1:" + strconv.Itoa(freePort(t)) + "/callback"
			code := e.codeFor(e.browser(), authRequest{clientID: id, redirectURI: redirect, state: "s", verifier: testVerifier}, user, pw)
			tr := e.postToken(exchangeForm(code, redirect, testVerifier, nil), id, secret)
			mustEqual(t, "exchange", tr.Status, 200)
			rs, rsSecret := e.resourceServer(store.ClientMetadata{})

			status, _, _ = jsonCall(t, "DELETE", m["registration_client_uri"].(string), m["registration_access_token"].(string), nil)
			mustEqual(t, "delete", status, 204)
			assertInactive(t, "access token", e.introspect(t, rs.ID, rsSecret, tr.AccessToken))
			r := e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}}, id, secret)
			mustEqual(t, "refresh after delete", r.Error, "invalid_client")
		})

		t.Run("metadata is stored and answered as sent", func(t *testing.T) {
			sent := map[string]any{
				"redirect_uris": []string{"https://app.example.com/cb"}, "client_name": "Full", "client_uri": "https://app.example.com",
				"logo_uri": "https://app.example.com/logo.png", "tos_uri": "https://app.example.com/tos", "policy_uri": "https://app.example.com/privacy",
				"contacts": []string{"ops@example.com"}, "software_id": "4NRB1-0XZABZI9E6-5SM3R", "software_version": "2.1",
				"scope": "read write", "token_endpoint_auth_method": "client_secret_post", "grant_types": []string{"authorization_code", "refresh_token"},
			}
			status, m := e.register(t, sent)
			mustEqual(t, "register", status, 201)
			_, read, _ := jsonCall(t, "GET", m["registration_client_uri"].(string), m["registration_access_token"].(string), nil)
			for k, v := range sent {
				want, _ := json.Marshal(v)
				for what, doc := range map[string]map[string]any{"registration response": m, "read": read} {
					got, _ := json.Marshal(doc[k])
					if string(got) != string(want) {
						t.Errorf("%s: %s = %s, want %s", what, k, got, want)
					}
				}
			}
			mustEqual(t, "application_type default", read["application_type"], any("web"))
			mustEqual(t, "response_types default", strings.Join(toStrings(read["response_types"]), " "), "code")
		})
	})
}

func toStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

// TestRevocationEdges: the RFC 7009 / 7662 cases beyond the common ones.
func TestRevocationEdges(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		user, pw := e.user("edgar")
		a, aSecret, redirect := e.loopbackClient(false)
		rs, rsSecret := e.resourceServer(store.ClientMetadata{Scopes: []string{"read"}})
		pair := func() tokenResp {
			code := e.codeFor(e.browser(), authRequest{clientID: a.ID, redirectURI: redirect, state: "s", verifier: testVerifier, scope: "read"}, user, pw)
			tr := e.postToken(exchangeForm(code, redirect, testVerifier, nil), a.ID, aSecret)
			mustEqual(t, "status", tr.Status, 200)
			return tr
		}
		refresh := func(rt string) tokenResp {
			return e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, a.ID, aSecret)
		}

		t.Run("another client's access token: 200 and no effect", func(t *testing.T) {
			p := pair()
			r := postForm(t, e.issuer+provider.PathRevoke, url.Values{"token": {p.AccessToken}, "token_type_hint": {"access_token"}}, rs.ID, rsSecret)
			mustEqual(t, "status", r.Status, 200)
			if m := e.introspect(t, rs.ID, rsSecret, p.AccessToken); m["active"] != true {
				t.Fatal("another client revoked the access token")
			}
		})
		t.Run("a rotated refresh token: active within the grace window, inactive after", func(t *testing.T) {
			p := pair()
			mustEqual(t, "rotate", refresh(p.RefreshToken).Status, 200)
			if m := e.introspect(t, a.ID, aSecret, p.RefreshToken); m["active"] != true {
				t.Fatalf("inside the grace window the old token can still be exchanged, so it is active: %v", m)
			}
			e.clock.Advance(31 * time.Second)
			assertInactive(t, "rotated, after the grace window", e.introspect(t, a.ID, aSecret, p.RefreshToken))
		})
		t.Run("an idle-expired refresh token is inactive", func(t *testing.T) {
			p := pair()
			e.clock.Advance(30*24*time.Hour + time.Second)
			assertInactive(t, "idle-expired", e.introspect(t, a.ID, aSecret, p.RefreshToken))
		})
		t.Run("client_credentials token: introspected, revoked", func(t *testing.T) {
			tr := e.postToken(url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}}, rs.ID, rsSecret)
			mustEqual(t, "issue", tr.Status, 200)
			m := e.introspect(t, rs.ID, rsSecret, tr.AccessToken)
			if m["active"] != true || m["client_id"] != rs.ID || m["sub"] != rs.ID || m["scope"] != "read" {
				t.Fatalf("introspection %v", m)
			}
			r := postForm(t, e.issuer+provider.PathRevoke, url.Values{"token": {tr.AccessToken}}, rs.ID, rsSecret)
			mustEqual(t, "revoke", r.Status, 200)
			assertInactive(t, "revoked client_credentials token", e.introspect(t, rs.ID, rsSecret, tr.AccessToken))
		})
	})
}

// TestConnectedAppsEdges: a user can only revoke their own grants, and
// revoking ends the grant's refresh token too.
func TestConnectedAppsEdges(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		alice, alicePw := e.user("alice-apps")
		mallory, malloryPw := e.user("mallory-apps")
		c, secret, redirect := e.loopbackClient(false)
		rs, rsSecret := e.resourceServer(store.ClientMetadata{})

		ab := e.browser()
		code := e.codeFor(ab, authRequest{clientID: c.ID, redirectURI: redirect, state: "a", verifier: testVerifier, scope: "read", resources: []string{"https://mcp.example.com/mcp"}}, alice, alicePw)
		tr := e.postToken(exchangeForm(code, redirect, testVerifier, nil), c.ID, secret)
		mustEqual(t, "alice's exchange", tr.Status, 200)
		page := ab.do("GET", provider.PathApps, nil)
		if !strings.Contains(page.body, "https://mcp.example.com/mcp") {
			t.Fatalf("apps page does not show the grant's resource: %.1500s", page.body)
		}
		// When granted and when last used, as the page formats dates.
		today := e.clock.Now().UTC().Format("2006-01-02")
		if strings.Count(page.body, today) < 2 {
			t.Fatalf("apps page does not show when the grant was made and last used (%s): %.1500s", today, page.body)
		}
		aliceGrant := regexpForms(page.body)[0].Get("grant_id")

		// Mallory signs in and posts Alice's grant ID with her own CSRF token.
		mb := e.browser()
		mustEqual(t, "mallory signs in", mb.loginAttempt(mallory, malloryPw).status, http.StatusSeeOther)
		mp := mb.do("GET", provider.PathApps, nil)
		f := formFields(mp.body)
		f.Set("grant_id", aliceGrant)
		mb.do("POST", provider.PathApps, f)
		if m := e.introspect(t, c.ID, secret, tr.RefreshToken); m["active"] != true {
			t.Fatal("another user revoked Alice's grant")
		}

		// Alice revokes it herself: both her tokens stop.
		p := ab.do("POST", provider.PathApps, regexpForms(page.body)[0])
		mustEqual(t, "revoke", p.status, http.StatusSeeOther)
		assertInactive(t, "access token", e.introspect(t, rs.ID, rsSecret, tr.AccessToken))
		assertInactive(t, "refresh token", e.introspect(t, c.ID, secret, tr.RefreshToken))
		mustEqual(t, "refresh after revoke", e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}}, c.ID, secret).Error, "invalid_grant")
	})
}

// writeCounter counts the store's writes.
type writeCounter struct {
	store.Store
	n atomic.Int64
}

func (w *writeCounter) CreateClient(ctx context.Context, c store.Client) error {
	w.n.Add(1)
	return w.Store.CreateClient(ctx, c)
}
func (w *writeCounter) UpdateClient(ctx context.Context, id string, edit store.EditClientFunc) (store.Client, error) {
	w.n.Add(1)
	return w.Store.UpdateClient(ctx, id, edit)
}
func (w *writeCounter) UpdateRegisteredClient(ctx context.Context, id string, presented, next []byte, edit store.EditClientFunc) (store.Client, error) {
	w.n.Add(1)
	return w.Store.UpdateRegisteredClient(ctx, id, presented, next, edit)
}
func (w *writeCounter) DeleteClient(ctx context.Context, id string) error {
	w.n.Add(1)
	return w.Store.DeleteClient(ctx, id)
}
func (w *writeCounter) DeleteRegisteredClient(ctx context.Context, id string, presented []byte) error {
	w.n.Add(1)
	return w.Store.DeleteRegisteredClient(ctx, id, presented)
}
func (w *writeCounter) CreateAuthCode(ctx context.Context, c store.AuthCode, g store.Grant) error {
	w.n.Add(1)
	return w.Store.CreateAuthCode(ctx, c, g)
}
func (w *writeCounter) ConsumeAuthCode(ctx context.Context, h []byte, now time.Time, redeem store.RedeemFunc) (store.AuthCode, error) {
	w.n.Add(1)
	return w.Store.ConsumeAuthCode(ctx, h, now, redeem)
}
func (w *writeCounter) RevokeGrant(ctx context.Context, id string, now time.Time) error {
	w.n.Add(1)
	return w.Store.RevokeGrant(ctx, id, now)
}
func (w *writeCounter) RevokeUserGrant(ctx context.Context, userID, id string, now time.Time) (store.Grant, error) {
	w.n.Add(1)
	return w.Store.RevokeUserGrant(ctx, userID, id, now)
}
func (w *writeCounter) RotateRefreshToken(ctx context.Context, h []byte, now time.Time, grace time.Duration, next store.NextRefreshFunc) (store.Rotation, error) {
	w.n.Add(1)
	return w.Store.RotateRefreshToken(ctx, h, now, grace, next)
}
func (w *writeCounter) RevokeAccessToken(ctx context.Context, jti string, exp time.Time) error {
	w.n.Add(1)
	return w.Store.RevokeAccessToken(ctx, jti, exp)
}
func (w *writeCounter) AddConsent(ctx context.Context, c store.Consent) error {
	w.n.Add(1)
	return w.Store.AddConsent(ctx, c)
}
func (w *writeCounter) DeleteConsent(ctx context.Context, userID, clientID string) error {
	w.n.Add(1)
	return w.Store.DeleteConsent(ctx, userID, clientID)
}
func (w *writeCounter) HitCounter(ctx context.Context, key string, window time.Duration, now time.Time) (store.Counter, error) {
	w.n.Add(1)
	return w.Store.HitCounter(ctx, key, window, now)
}
func (w *writeCounter) DeleteCounters(ctx context.Context, prefix string) (int64, error) {
	w.n.Add(1)
	return w.Store.DeleteCounters(ctx, prefix)
}
func (w *writeCounter) RotateSigningKey(ctx context.Context, k store.SigningKey) error {
	w.n.Add(1)
	return w.Store.RotateSigningKey(ctx, k)
}
func (w *writeCounter) DeleteSigningKeysRetiredBefore(ctx context.Context, t time.Time) error {
	w.n.Add(1)
	return w.Store.DeleteSigningKeysRetiredBefore(ctx, t)
}
func (w *writeCounter) CreateSession(ctx context.Context, s store.Session) error {
	w.n.Add(1)
	return w.Store.CreateSession(ctx, s)
}
func (w *writeCounter) DeleteSession(ctx context.Context, h []byte) error {
	w.n.Add(1)
	return w.Store.DeleteSession(ctx, h)
}
func (w *writeCounter) CreateInitialAccessToken(ctx context.Context, t store.InitialAccessToken) error {
	w.n.Add(1)
	return w.Store.CreateInitialAccessToken(ctx, t)
}
func (w *writeCounter) DeleteExpired(ctx context.Context, now time.Time) (int64, error) {
	w.n.Add(1)
	return w.Store.DeleteExpired(ctx, now)
}
func (w *writeCounter) CreateUser(ctx context.Context, u store.User) error {
	w.n.Add(1)
	return w.Store.CreateUser(ctx, u)
}
func (w *writeCounter) SetUserPassword(ctx context.Context, id, h string) error {
	w.n.Add(1)
	return w.Store.SetUserPassword(ctx, id, h)
}
func (w *writeCounter) DeleteUser(ctx context.Context, id string) error {
	w.n.Add(1)
	return w.Store.DeleteUser(ctx, id)
}

// TestClientCredentialsWritesNothing: the service-to-service hot path
// reads the client and signs; it never writes to the store.
func TestClientCredentialsWritesNothing(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		wc := &writeCounter{Store: open(t)}
		e := start(t, wc, nil)
		svc, secret := e.client(store.ClientMetadata{GrantTypes: []string{oauth.GrantClientCredentials}, Scopes: []string{"read"}})
		before := wc.n.Load()
		for range 20 {
			tr := e.postToken(url.Values{"grant_type": {"client_credentials"}, "resource": {"https://mcp.example.com/mcp"}}, svc.ID, secret)
			mustEqual(t, "issue", tr.Status, 200)
		}
		mustEqual(t, "store writes for 20 client_credentials tokens", wc.n.Load()-before, int64(0))
		// The counter counts: a write-path request moves it.
		r := postForm(t, e.issuer+provider.PathRevoke, url.Values{"token": {"x.y.z"}}, svc.ID, secret)
		mustEqual(t, "revoke", r.Status, 200)
		resp, err := http.Get(e.issuer + "/.well-known/oauth-authorization-server")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		e.client(store.ClientMetadata{GrantTypes: []string{oauth.GrantClientCredentials}})
		if wc.n.Load() == before {
			t.Fatal("the write counter does not count")
		}
	})
}

// replaceClient is a store.UpdateClient edit that sets what the
// administrator may change (secret hash, metadata, UpdatedAt) to c's.
func replaceClient(c store.Client) store.EditClientFunc {
	return func(dst *store.Client) error {
		dst.SecretHash, dst.Metadata, dst.UpdatedAt = c.SecretHash, c.Metadata, c.UpdatedAt
		return nil
	}
}
