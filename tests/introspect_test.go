package tests

import (
	"context"
	"net/http"
	"net/url"
	"testing"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/store"
)

// TestIntrospectionSeesWhatTheSignatureCannot: a validly signed access
// token is active only while its jti is not revoked and its grant, or
// (client_credentials, no grant) its client, is live; each is asked of the
// store in one round trip (issue 13). Over HTTP, on both stores.
func TestIntrospectionSeesWhatTheSignatureCannot(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		rs, rsSecret := e.resourceServer(store.ClientMetadata{})
		ccToken := func() (store.Client, string, string) {
			c, secret := e.resourceServer(store.ClientMetadata{})
			tr := e.postToken(url.Values{"grant_type": {"client_credentials"}}, c.ID, secret)
			mustEqual(t, "client_credentials", tr.Status, 200)
			return c, secret, tr.AccessToken
		}
		revoke := func(id, secret, token string) {
			t.Helper()
			mustEqual(t, "revoke", postForm(t, e.issuer+provider.PathRevoke, url.Values{"token": {token}}, id, secret).Status, 200)
		}
		deleteClient := func(id string) {
			t.Helper()
			if err := e.store.DeleteClient(context.Background(), id); err != nil {
				t.Fatal(err)
			}
		}

		t.Run("client_credentials token", func(t *testing.T) {
			_, _, tok := ccToken()
			assertActive(t, "live", e.introspect(t, rs.ID, rsSecret, tok))
			c, secret, tok := ccToken()
			revoke(c.ID, secret, tok)
			assertInactive(t, "revoked", e.introspect(t, rs.ID, rsSecret, tok))
			c, _, tok = ccToken()
			deleteClient(c.ID)
			assertInactive(t, "its client deleted", e.introspect(t, rs.ID, rsSecret, tok))
		})
		t.Run("token of a grant", func(t *testing.T) {
			_, _, _, tr := e.firstTokens(t, "ivy", "s1")
			assertActive(t, "live", e.introspect(t, rs.ID, rsSecret, tr.AccessToken))
			c, secret, _, tr := e.firstTokens(t, "ivan", "s2")
			revoke(c.ID, secret, tr.AccessToken)
			assertInactive(t, "revoked", e.introspect(t, rs.ID, rsSecret, tr.AccessToken))
			c, secret, _, tr = e.firstTokens(t, "iris", "s3")
			revoke(c.ID, secret, tr.RefreshToken) // revokes the grant (RFC 7009 §2.1)
			assertInactive(t, "its grant revoked", e.introspect(t, rs.ID, rsSecret, tr.AccessToken))
			c, _, _, tr = e.firstTokens(t, "ines", "s4")
			deleteClient(c.ID)
			assertInactive(t, "its client deleted", e.introspect(t, rs.ID, rsSecret, tr.AccessToken))
		})
	})
}

// TestIntrospectionDuringOutageIs503: when the store cannot say whether a
// token was revoked, introspection answers 503 temporarily_unavailable
// with Retry-After, never {"active": false} (a resource server would turn
// away every caller) nor active (a revoked token would pass); once the
// database is back the same tokens are active again.
func TestIntrospectionDuringOutageIs503(t *testing.T) {
	t.Parallel()
	st, proxy := proxiedPostgres(t)
	e := start(t, st, nil)
	rs, rsSecret := e.resourceServer(store.ClientMetadata{})
	cc := e.postToken(url.Values{"grant_type": {"client_credentials"}}, rs.ID, rsSecret)
	mustEqual(t, "client_credentials", cc.Status, 200)
	_, _, _, withGrant := e.firstTokens(t, "otto", "s")
	toks := map[string]string{"client_credentials token": cc.AccessToken, "token of a grant": withGrant.AccessToken}
	for what, tok := range toks {
		// Also puts rs in the client cache: its authentication does not
		// need the database during the outage.
		assertActive(t, what, e.introspect(t, rs.ID, rsSecret, tok))
	}

	proxy.setDown(true)
	for what, tok := range toks {
		r := postForm(t, e.issuer+provider.PathIntrospect, url.Values{"token": {tok}}, rs.ID, rsSecret)
		mustEqual(t, what+" status", r.Status, http.StatusServiceUnavailable)
		mustEqual(t, what+" error", r.Error, "temporarily_unavailable")
		if r.Header.Get("Retry-After") == "" {
			t.Errorf("%s: 503 without Retry-After", what)
		}
	}

	proxy.setDown(false)
	for what, tok := range toks {
		assertActive(t, what+" after the outage", e.introspect(t, rs.ID, rsSecret, tok))
	}
}
