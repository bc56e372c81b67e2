package tests

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/store"
)

// vanishingStore is a real store that runs a deletion once, just before
// the next consent or code is stored: what another replica (RFC 7592
// DELETE, `authz client delete`, the janitor) or an administrator does
// between this replica's reads and its write. Nothing is mocked; only the
// moment is chosen.
type vanishingStore struct {
	store.Store
	mu     sync.Mutex
	before func()
}

func (v *vanishingStore) arm(f func()) {
	v.mu.Lock()
	v.before = f
	v.mu.Unlock()
}

func (v *vanishingStore) fire() {
	v.mu.Lock()
	f := v.before
	v.before = nil
	v.mu.Unlock()
	if f != nil {
		f()
	}
}

func (v *vanishingStore) CreateAuthCode(ctx context.Context, code store.AuthCode, g store.Grant) error {
	v.fire()
	return v.Store.CreateAuthCode(ctx, code, g)
}

func (v *vanishingStore) AddConsent(ctx context.Context, c store.Consent) error {
	v.fire()
	return v.Store.AddConsent(ctx, c)
}

// unknownApp asserts that p is the page an unknown client_id gets: no
// redirect (the client is no longer trusted with one), never server_error.
func unknownApp(t *testing.T, what string, p page) {
	t.Helper()
	if p.status != http.StatusBadRequest || p.location != "" || !strings.Contains(p.body, "Unknown application") {
		t.Fatalf("%s: status %d location %q body %.300s, want the unknown-application page", what, p.status, p.location, p.body)
	}
}

// TestAuthorizeClientOrUserVanished: a client deleted elsewhere while
// this replica still holds it in its client cache, or a user deleted
// after the session check, makes storing the consent or the code fail
// with ErrNotFound. The answer is what a request arriving now gets: the
// unknown-application page for the client, the sign-in page for the
// user; never a redirect with server_error.
func TestAuthorizeClientOrUserVanished(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		vs := &vanishingStore{Store: open(t)}
		e := start(t, vs, nil)
		ctx := context.Background()
		deleteClient := func(id string) func() {
			return func() {
				if err := vs.Store.DeleteClient(ctx, id); err != nil {
					t.Error(err)
				}
			}
		}
		deleteUser := func(name string) func() {
			return func() {
				u, err := vs.Store.GetUserByUsername(ctx, name)
				if err == nil {
					err = vs.Store.DeleteUser(ctx, u.ID)
				}
				if err != nil {
					t.Error(err)
				}
			}
		}

		t.Run("client deleted, remembered consent", func(t *testing.T) {
			b, c, _, req := e.rememberedConsent(t, "vanish-rc-client")
			// The client is now in this server's cache; the clock does not move.
			codeAtOnce(t, "before the deletion", getAuthorize(b, e, req))
			vs.arm(deleteClient(c.ID))
			unknownApp(t, "client deleted while cached", getAuthorize(b, e, req))
			unknownApp(t, "the next request", getAuthorize(b, e, req))
		})

		t.Run("user deleted, remembered consent", func(t *testing.T) {
			b, _, _, req := e.rememberedConsent(t, "vanish-rc-user")
			vs.arm(deleteUser("vanish-rc-user"))
			toSignIn(t, "user deleted after the session check", getAuthorize(b, e, req))
		})

		consentPage := func(t *testing.T, username string) (*browser, store.Client, page) {
			user, pw := e.user(username)
			c, _ := e.client(store.ClientMetadata{RedirectURIs: []string{"https://app.example.com/cb"}, Scopes: []string{"read"}})
			req := authRequest{clientID: c.ID, redirectURI: "https://app.example.com/cb", state: "st", scope: "read", verifier: testVerifier}
			b := e.browser()
			p := b.consentPage(req.url(e.issuer), user, pw)
			if p.status != http.StatusOK || !strings.Contains(p.body, `name="decision"`) {
				t.Fatalf("consent page: status %d body %.300s", p.status, p.body)
			}
			return b, c, p
		}
		allow := func(b *browser, p page) page {
			f := formFields(p.body)
			f.Set("decision", "allow")
			return b.do("POST", provider.PathAuthorize, f)
		}

		t.Run("client deleted, consent POST", func(t *testing.T) {
			b, c, p := consentPage(t, "vanish-post-client")
			// Directly through the store, bypassing the server's cache.
			deleteClient(c.ID)()
			unknownApp(t, "consent for a deleted client", allow(b, p))
		})

		t.Run("user deleted, consent POST", func(t *testing.T) {
			b, _, p := consentPage(t, "vanish-post-user")
			vs.arm(deleteUser("vanish-post-user"))
			toSignIn(t, "consent by a user deleted after the session check", allow(b, p))
		})
	})
}
