package tests

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/store"
)

// TestJanitorSweepsDocumentClients: client ID metadata document clients were
// kept forever, so anyone publishing documents at new URLs grew the clients
// table without bound. Now the janitor sweeps them by the self-registered
// rule (never used within AUTHZ_REGISTRATION_UNUSED_TTL, idle past
// AUTHZ_REGISTRATION_IDLE_TTL without a live grant), records each deletion,
// and the next request with the same client_id fetches the document again
// and works.
func TestJanitorSweepsDocumentClients(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		ds := newDocServer(t)
		e := startWithDocs(t, open(t), ds, nil)
		ctx := context.Background()
		user, pw := e.user("sweep")
		const redirect = "https://app.example/cb"
		doc := func(path string) string {
			return ds.publish(path, 200, http.Header{"Cache-Control": {"max-age=3600"}}, map[string]any{"client_id": ds.url(path),
				"client_name": "Swept", "redirect_uris": []string{redirect}, "token_endpoint_auth_method": "none",
				"grant_types": []string{"authorization_code", "refresh_token"}})
		}
		visit := func(id string) page {
			return e.browser().do("GET", authRequest{clientID: id, redirectURI: redirect, state: "s", verifier: testVerifier}.url(e.issuer), nil)
		}
		stored := func(id string) (store.Client, bool) {
			c, err := e.store.GetClient(ctx, id)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				t.Fatal(err)
			}
			return c, err == nil
		}
		// connect runs authorization code + PKCE and the code exchange.
		connect := func(id string) tokenResp {
			req := authRequest{clientID: id, redirectURI: redirect, state: "s", scope: "read", verifier: testVerifier}
			code := e.codeFor(e.browser(), req, user, pw)
			tr := e.postToken(exchangeForm(code, redirect, testVerifier, url.Values{"client_id": {id}}), "", "")
			mustEqual(t, "exchange: "+tr.ErrorDescription, tr.Status, 200)
			return tr
		}

		// One document is fetched but no authorization completes; the
		// other completes one.
		unused, used := doc("/unused.json"), doc("/used.json")
		if p := visit(unused); p.status >= 400 {
			t.Fatalf("authorize with the unused document: %d %.300s", p.status, p.body)
		}
		tr := connect(used)
		if _, ok := stored(unused); !ok {
			t.Fatal("the fetched document was not stored as a client")
		}

		e.clock.Advance(24*time.Hour - time.Second)
		e.srv.RunJobs(ctx)
		if _, ok := stored(unused); !ok {
			t.Fatal("a tick before the unused TTL removed the document client")
		}
		e.clock.Advance(time.Second)
		e.srv.RunJobs(ctx)
		if _, ok := stored(unused); ok {
			t.Fatal("a document client that never completed an authorization survived the tick at the unused TTL")
		}
		if _, ok := stored(used); !ok {
			t.Fatal("a document client that completed an authorization was removed at the unused TTL")
		}

		// The user disconnects the app; 90 days after its last use, with no
		// live grant, it goes.
		if r := postForm(t, e.issuer+provider.PathRevoke, url.Values{"token": {tr.RefreshToken}, "client_id": {used}}, "", ""); r.Status != 200 {
			t.Fatalf("revoke: %d %s %s", r.Status, r.Error, r.ErrorDescription)
		}
		e.clock.Advance(90*24*time.Hour - 24*time.Hour - time.Second)
		e.srv.RunJobs(ctx)
		if _, ok := stored(used); !ok {
			t.Fatal("a tick before the idle TTL removed the document client")
		}
		e.clock.Advance(time.Second)
		// A request just before the tick puts the client in this replica's
		// cache; the janitor's deletion must drop it there too, or the next
		// request would use a client that no longer exists.
		if p := visit(used); p.status >= 400 {
			t.Fatalf("authorize just before the tick: %d %.300s", p.status, p.body)
		}
		fetches := ds.fetches("/used.json")
		e.srv.RunJobs(ctx)
		if _, ok := stored(used); ok {
			t.Fatal("an idle document client survived the tick at the idle TTL")
		}

		// Each sweep is in the audit trail, once, as the system's.
		evs, err := e.store.ListAuditEvents(ctx, store.AuditFilter{Name: provider.EventClientDeleted})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]int{}
		for _, ev := range evs {
			if ev.Actor != provider.ActorSystem || ev.Details["reason"] != "stale_registration" || ev.Details["trust"] != store.TrustMetadataDocument {
				t.Errorf("stale deletion event %+v: want actor system, reason stale_registration, trust metadata-document", ev)
			}
			got[ev.ClientID]++
		}
		if len(got) != 2 || got[unused] != 1 || got[used] != 1 {
			t.Errorf("client.deleted events by client: %v, want one each for %s and %s", got, unused, used)
		}

		// The same client_id comes back: the document is fetched again (at
		// once, not after the cache's lifetime), a new row is made, and
		// the app connects as before.
		again := connect(used)
		mustEqual(t, "fetches after the sweep", ds.fetches("/used.json"), fetches+1)
		c, ok := stored(used)
		if !ok {
			t.Fatal("the document client was not stored again")
		}
		mustEqual(t, "trust", c.Trust, store.TrustMetadataDocument)
		if !c.CreatedAt.Equal(e.clock.Now().UTC().Truncate(time.Microsecond)) {
			t.Errorf("CreatedAt %v: want a new row made now (%v)", c.CreatedAt, e.clock.Now())
		}
		next := e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {again.RefreshToken}, "client_id": {used}}, "", "")
		mustEqual(t, "refresh after coming back: "+next.ErrorDescription, next.Status, 200)
	})
}
