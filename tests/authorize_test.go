package tests

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/store"
	"github.com/authzd/authz/provider/store/postgres"
	"github.com/authzd/authz/provider/store/postgres/pgtest"
)

// rememberedConsent signs a new user in through the pages and consents
// once for a confidential client with an https redirect (so the consent is
// remembered), and returns the browser, the client, its secret and the
// request to repeat.
func (e *env) rememberedConsent(t *testing.T, username string) (*browser, store.Client, string, authRequest) {
	t.Helper()
	user, pw := e.user(username)
	c, secret := e.client(store.ClientMetadata{RedirectURIs: []string{"https://app.example.com/cb"}, Scopes: []string{"read"}})
	req := authRequest{clientID: c.ID, redirectURI: "https://app.example.com/cb", state: "st", scope: "read", verifier: testVerifier}
	b := e.browser()
	e.codeFor(b, req, user, pw)
	return b, c, secret, req
}

// getAuthorize is one GET /authorize with b's cookies.
func getAuthorize(b *browser, e *env, req authRequest) page {
	return b.do("GET", req.url(e.issuer), nil)
}

// codeAtOnce asserts that p is the redirect to the client with a code,
// with no page in between, and returns the code.
func codeAtOnce(t *testing.T, what string, p page) string {
	t.Helper()
	if p.status != http.StatusFound {
		t.Fatalf("%s: status %d location %q body %.300s, want 302 to the client", what, p.status, p.location, p.body)
	}
	u, err := url.Parse(p.location)
	if err != nil || u.Host != "app.example.com" || u.Query().Get("code") == "" {
		t.Fatalf("%s: redirect %q, want the client's redirect URI with a code", what, p.location)
	}
	return u.Query().Get("code")
}

// toSignIn asserts that p sends the browser to the sign-in page.
func toSignIn(t *testing.T, what string, p page) {
	t.Helper()
	if p.status != http.StatusSeeOther || !strings.Contains(p.location, provider.PathLogin) {
		t.Fatalf("%s: status %d location %q body %.300s, want 303 to the sign-in page", what, p.status, p.location, p.body)
	}
}

// TestAuthorizeSignedIn (issue 13): the authorization endpoint reads the
// session with its user in one store call and stores the code with its
// grant in one; the flow behaves as before. A signed-in user with a
// remembered consent gets a code at once, and it redeems; an expired
// session, or a session whose user was deleted since, sends the browser
// to the sign-in page (never a 500).
func TestAuthorizeSignedIn(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)

		t.Run("remembered consent gets a code that redeems", func(t *testing.T) {
			b, c, secret, req := e.rememberedConsent(t, "remembered")
			for i := range 2 {
				code := codeAtOnce(t, "authorization with a remembered consent", getAuthorize(b, e, req))
				tr := e.postToken(exchangeForm(code, req.redirectURI, testVerifier, nil), c.ID, secret)
				mustEqual(t, "exchange of the code", tr.Status, 200)
				mustEqual(t, "scope", tr.Scope, "read")
				if i == 0 {
					// The code and its grant were stored together: a
					// second presentation is reuse, refused.
					r := e.postToken(exchangeForm(code, req.redirectURI, testVerifier, nil), c.ID, secret)
					mustEqual(t, "the same code again", r.Error, "invalid_grant")
				}
			}
		})

		t.Run("expired session", func(t *testing.T) {
			// Its own server: the clock moves.
			e := start(t, open(t), nil)
			b, _, _, req := e.rememberedConsent(t, "expiring")
			e.clock.Advance(provider.DefaultSessionTTL - 1)
			codeAtOnce(t, "just before the session ends", getAuthorize(b, e, req))
			e.clock.Advance(1)
			toSignIn(t, "when the session ends", getAuthorize(b, e, req))
		})

		t.Run("user deleted after sign-in", func(t *testing.T) {
			b, _, _, req := e.rememberedConsent(t, "deleted")
			users, err := e.store.ListUsers(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for _, u := range users {
				if u.Username == "deleted" {
					if err := e.store.DeleteUser(context.Background(), u.ID); err != nil {
						t.Fatal(err)
					}
				}
			}
			toSignIn(t, "after the user was deleted", getAuthorize(b, e, req))
		})
	})
}

// TestAuthorizeRoundTrips (issue 13): on PostgreSQL, GET /authorize for a
// signed-in user with a remembered consent is three round trips: the
// session with its user, the remembered consent, and the grant with its
// code; the client comes from the per-process cache. It was eight. A
// count on the wire, never a time.
func TestAuthorizeRoundTrips(t *testing.T) {
	t.Parallel()
	pool, rt := pgtest.CountingPool(t)
	e := start(t, postgres.New(pool), nil)
	b, _, _, req := e.rememberedConsent(t, "counted")
	// Warm: the first use of each statement on the connection prepares it.
	codeAtOnce(t, "warm-up", getAuthorize(b, e, req))
	rt.Reset()
	codeAtOnce(t, "counted authorization", getAuthorize(b, e, req))
	if n := rt.Count(); n != 3 {
		t.Errorf("GET /authorize took %d round trips to PostgreSQL, want 3", n)
	}
}

// TestJanitorDeletionIsSeenAtOnce: a self-registered client the janitor
// deletes on this replica is gone from its client cache at once, as after
// an RFC 7592 delete: an authorization request naming it right after the
// tick is refused, not served from a record cached a moment before.
func TestJanitorDeletionIsSeenAtOnce(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		id, _, _ := e.registerOK(t, map[string]any{"client_name": "never used", "redirect_uris": []string{"https://app.example.com/cb"}})
		req := authRequest{clientID: id, redirectURI: "https://app.example.com/cb", state: "s", verifier: testVerifier}
		e.clock.Advance(provider.DefaultRegistrationUnusedTTL)
		toSignIn(t, "before the janitor's tick", getAuthorize(e.browser(), e, req)) // now cached
		e.srv.RunJobs(context.Background())
		p := getAuthorize(e.browser(), e, req)
		if p.status != http.StatusBadRequest || !strings.Contains(p.body, "Unknown application") {
			t.Fatalf("right after the janitor deleted the client: status %d location %q, want 400 Unknown application", p.status, p.location)
		}
	})
}
