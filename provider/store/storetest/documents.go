package storetest

import (
	"sync"
	"testing"
	"time"

	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/store"
)

// testMetadataDocumentClients: a client whose identity is its metadata
// document is upserted in place (grants keep their foreign keys), its
// consents go when its redirect URIs or keys change, and no other client
// can be replaced through it.
func testMetadataDocumentClients(t *testing.T, newStore factory) {
	e := newEnv(t, newStore)
	const id = "https://app.example.com/oauth/client.json"
	doc := func(redirect string, updated time.Time) store.Client {
		return store.Client{
			ID: id, Trust: store.TrustMetadataDocument, DocumentExpiresAt: updated.Add(time.Hour),
			Metadata: store.ClientMetadata{
				Name: "Doc App", RedirectURIs: []string{redirect}, TokenEndpointAuthMethod: oauth.AuthNone,
				GrantTypes: []string{oauth.GrantAuthorizationCode, oauth.GrantRefreshToken}, ResponseTypes: []string{oauth.ResponseCode}, ApplicationType: "native",
			},
			CreatedAt: updated, UpdatedAt: updated,
		}
	}
	first := doc("http://localhost/callback", base)
	e.must(e.s.SaveMetadataDocumentClient(e.ctx, first), "SaveMetadataDocumentClient (insert)")
	got, err := e.s.GetClient(e.ctx, id)
	e.must(err, "GetClient")
	equal(t, "inserted document client", got, first, canonClient)

	u := e.user("u-doc").ID
	g := e.grant(id, u)
	consent := store.Consent{UserID: u, ClientID: id, Scopes: []string{"read"}, UpdatedAt: base}
	e.must(e.s.AddConsent(e.ctx, consent), "AddConsent")

	// The same document fetched again: the row moves on, consent stays.
	again := doc("http://localhost/callback", at(time.Hour))
	again.Metadata.Name = "Doc App 2"
	e.must(e.s.SaveMetadataDocumentClient(e.ctx, again), "SaveMetadataDocumentClient (same redirects)")
	got, err = e.s.GetClient(e.ctx, id)
	e.must(err, "GetClient")
	want := again
	want.CreatedAt = base
	equal(t, "refreshed document client", got, want, canonClient)
	if _, err := e.s.GetConsent(e.ctx, u, id); err != nil {
		t.Fatalf("consent dropped although redirects and keys did not change: %v", err)
	}
	if _, err := e.s.GetGrant(e.ctx, g.ID); err != nil {
		t.Fatalf("grant lost on refresh: %v", err)
	}

	// New redirect URIs: consent given to the old document goes.
	moved := doc("https://elsewhere.example/cb", at(2*time.Hour))
	e.must(e.s.SaveMetadataDocumentClient(e.ctx, moved), "SaveMetadataDocumentClient (new redirects)")
	_, err = e.s.GetConsent(e.ctx, u, id)
	wantErr(t, "consent after the redirect URIs changed", err, store.ErrNotFound)

	// New keys: consent goes too.
	e.must(e.s.AddConsent(e.ctx, consent), "AddConsent again")
	keyed := moved
	keyed.Metadata.TokenEndpointAuthMethod, keyed.Metadata.JWKSURI = oauth.AuthPrivateKeyJWT, "https://app.example.com/jwks"
	e.must(e.s.SaveMetadataDocumentClient(e.ctx, keyed), "SaveMetadataDocumentClient (new keys)")
	_, err = e.s.GetConsent(e.ctx, u, id)
	wantErr(t, "consent after the keys changed", err, store.ErrNotFound)

	// Many first fetches of one new document at once all succeed.
	const fresh = "https://app.example.com/oauth/fresh.json"
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := doc("http://localhost/callback", base)
			c.ID = fresh
			errs <- e.s.SaveMetadataDocumentClient(e.ctx, c)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		e.must(err, "concurrent SaveMetadataDocumentClient")
	}

	// Never replaces a client that is not a metadata-document client.
	admin := e.client("https://admin.example.com/client")
	hijack := doc("https://evil.example/cb", at(3*time.Hour))
	hijack.ID = admin.ID
	wantErr(t, "SaveMetadataDocumentClient over an admin client", e.s.SaveMetadataDocumentClient(e.ctx, hijack), store.ErrAlreadyExists)
	got, err = e.s.GetClient(e.ctx, admin.ID)
	e.must(err, "GetClient admin")
	equal(t, "admin client untouched", got, admin, canonClient)
}
