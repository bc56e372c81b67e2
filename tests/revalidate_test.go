package tests

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/store"
)

// TestStaleCopyDoesNotWaitForAHangingHost: a client whose metadata
// document or jwks_uri host hangs after the stored copy's lifetime is
// answered from that copy without waiting for the fetch (RFC 5861 §3
// stale-while-revalidate), with one fetch of the URL in flight however
// many requests come:
//   - the first request after the lifetime waits for its refresh (so a
//     changed document or rotated key is seen exactly when the lifetime
//     says); every request meanwhile answers at once from the copy;
//   - once that refresh failed transiently, every request answers at once
//     and the refresh runs in the background, one at a time;
//   - a background refresh answered 404 ends the copy: the next request
//     is invalid_client, as today.
//
// Ordering, never elapsed time, shows "at once": each response arrives
// while the host's handler is still held by the test.
func TestStaleCopyDoesNotWaitForAHangingHost(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		keys, signer := clientKey(t)
		fh := newFlakyHost(t, keys)
		e := start(t, open(t), func(o *provider.Options) { o.HTTPClient = fh.client() })
		t.Cleanup(e.srv.WaitBackground)
		user, pw := e.user("swr")
		const redirect = "https://app.example/cb"

		// hang holds every fetch from now on; release answers the held one.
		// A test that fails while fetches are held lets them go.
		hang := func(t *testing.T) {
			h := make(chan int)
			fh.mu.Lock()
			fh.hang, fh.entered = h, make(chan string)
			fh.mu.Unlock()
			t.Cleanup(func() {
				fh.mu.Lock()
				defer fh.mu.Unlock()
				if fh.hang == h {
					fh.hang, fh.entered = nil, nil
					close(h)
				}
			})
		}
		entered := func(t *testing.T, path string) {
			t.Helper()
			fh.mu.Lock()
			ch := fh.entered
			fh.mu.Unlock()
			mustEqual(t, "held fetch", <-ch, path)
		}
		release := func(status int) {
			fh.mu.Lock()
			h := fh.hang
			fh.hang, fh.entered = nil, nil
			fh.mu.Unlock()
			h <- status
		}
		// concurrently runs n requests at once and returns their statuses.
		concurrently := func(n int, do func() int) []int {
			out := make([]int, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() { out[i] = do() })
			}
			wg.Wait()
			return out
		}
		allAre := func(t *testing.T, what string, got []int, want int) {
			t.Helper()
			for _, s := range got {
				if s != want {
					t.Fatalf("%s: statuses %v, want all %d", what, got, want)
				}
			}
		}

		t.Run("metadata document", func(t *testing.T) {
			const path = "/doc/swr.json"
			id := "https://docs.example.com" + path
			req := authRequest{clientID: id, redirectURI: redirect, state: "s", verifier: testVerifier}
			rts := make([]string, 3)
			for i := range rts {
				code := e.codeFor(e.browser(), req, user, pw)
				tr := e.postToken(exchangeForm(code, redirect, testVerifier, url.Values{"client_id": {id}}), "", "")
				mustEqual(t, "exchange: "+tr.ErrorDescription, tr.Status, 200)
				rts[i] = tr.RefreshToken
			}
			refresh := func(i int) tokenResp {
				tr := postForm(t, e.issuer+provider.PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rts[i]}, "client_id": {id}}, "", "")
				if tr.Status == 200 {
					rts[i] = tr.RefreshToken
				}
				return tr
			}
			authorize := func() int { return e.browser().do("GET", req.url(e.issuer), nil).status }
			fetched := fh.fetches(path)

			// Past the document's lifetime (5 minutes): the first request
			// waits for its own refresh; the others answer meanwhile.
			e.clock.Advance(6 * time.Minute)
			hang(t)
			first := make(chan tokenResp, 1)
			go func() { first <- refresh(0) }()
			entered(t, path)
			tr := refresh(1)
			mustEqual(t, "refresh while another request's refresh hangs: "+tr.ErrorDescription, tr.Status, 200)
			allAre(t, "authorize while a refresh hangs", concurrently(8, authorize), http.StatusSeeOther)
			mustEqual(t, "fetches of the document", fh.fetches(path), fetched+1)
			release(http.StatusServiceUnavailable)
			tr = <-first
			mustEqual(t, "the waiting request, host answered 503 (stale-if-error): "+tr.ErrorDescription, tr.Status, 200)

			// The host is known to fail: every request answers at once,
			// and one background refresh runs; it brings the document
			// back, which ends "known to fail".
			e.clock.Advance(provider.RetryAfter) // past the remembered failure
			hang(t)
			tr = refresh(2)
			mustEqual(t, "refresh, host known to fail, hanging: "+tr.ErrorDescription, tr.Status, 200)
			entered(t, path) // the background refresh, held: the response came first
			allAre(t, "authorize while the background refresh hangs", concurrently(8, authorize), http.StatusSeeOther)
			release(0)
			e.srv.WaitBackground()
			c, err := e.store.GetClient(t.Context(), id)
			if err != nil || !c.DocumentExpiresAt.After(e.clock.Now()) {
				t.Fatalf("after the background refresh the document is not fresh: %v, expires %s (now %s)", err, c.DocumentExpiresAt, e.clock.Now())
			}
			e.clock.Advance(6 * time.Minute)
			fh.set(http.StatusServiceUnavailable, false)
			fetched = fh.fetches(path)
			tr = refresh(2)
			mustEqual(t, "refresh past the new lifetime, host answering 503: "+tr.ErrorDescription, tr.Status, 200)
			mustEqual(t, "fetches by the first request past the new lifetime (its own)", fh.fetches(path), fetched+1)
			fh.set(0, false)

			// Known to fail again; this time the background refresh
			// finds the document gone.
			e.clock.Advance(provider.RetryAfter)
			hang(t)
			tr = refresh(2)
			mustEqual(t, "refresh, host known to fail, hanging: "+tr.ErrorDescription, tr.Status, 200)
			entered(t, path) // the background refresh, held: the response came first
			allAre(t, "authorize while the background refresh hangs", concurrently(8, authorize), http.StatusSeeOther)
			tr = refresh(0)
			mustEqual(t, "refresh while the background refresh hangs: "+tr.ErrorDescription, tr.Status, 200)
			mustEqual(t, "fetches of the document", fh.fetches(path), fetched+2)

			// The background refresh finds the document gone: the copy
			// ends, the next request is invalid_client.
			release(http.StatusNotFound)
			e.srv.WaitBackground()
			tr = refresh(1)
			if tr.Status != 401 || tr.Error != "invalid_client" {
				t.Fatalf("refresh after the background refresh got 404: %d %s %q, want invalid_client", tr.Status, tr.Error, tr.ErrorDescription)
			}
			if p := e.browser().do("GET", req.url(e.issuer), nil); p.status != http.StatusBadRequest || !strings.Contains(p.body, "answered 404") {
				t.Fatalf("authorize after the background refresh got 404: status %d, want the refused-document page", p.status)
			}
		})

		t.Run("jwks_uri", func(t *testing.T) {
			const path = "/jwks/swr.json"
			fh.set(0, false)
			status, m := e.registerService(t, map[string]any{"client_name": "Keyed", "token_endpoint_auth_method": "private_key_jwt",
				"jwks_uri": "https://keys.example.com" + path, "grant_types": []string{"client_credentials"}})
			mustEqual(t, "register", status, 201)
			id := m["client_id"].(string)
			call := func() tokenResp {
				return postForm(t, e.issuer+provider.PathToken, e.assertionGrant(t, signer, id), "", "")
			}
			status200 := func() int { return call().Status }
			mustEqual(t, "first", call().Status, 200)
			fetched := fh.fetches(path)

			e.clock.Advance(6 * time.Minute)
			hang(t)
			first := make(chan tokenResp, 1)
			go func() { first <- call() }()
			entered(t, path)
			allAre(t, "token requests while another request's refresh hangs", concurrently(8, status200), 200)
			mustEqual(t, "fetches of the key set", fh.fetches(path), fetched+1)
			release(http.StatusServiceUnavailable)
			tr := <-first
			mustEqual(t, "the waiting request, host answered 503 (stale-if-error): "+tr.ErrorDescription, tr.Status, 200)

			e.clock.Advance(provider.RetryAfter)
			hang(t)
			mustEqual(t, "token request, host known to fail, hanging", call().Status, 200)
			entered(t, path)
			allAre(t, "token requests while the background refresh hangs", concurrently(8, status200), 200)
			mustEqual(t, "fetches of the key set", fh.fetches(path), fetched+2)
			release(0) // the key set is back: fresh again, not known to fail
			e.srv.WaitBackground()
			mustEqual(t, "token request with the refreshed key set", call().Status, 200)
			mustEqual(t, "fetches while the refreshed key set is fresh", fh.fetches(path), fetched+2)
			e.clock.Advance(6 * time.Minute)
			fh.set(http.StatusServiceUnavailable, false)
			mustEqual(t, "token request past the new lifetime, host answering 503", call().Status, 200)
			mustEqual(t, "fetches by the first request past the new lifetime (its own)", fh.fetches(path), fetched+3)
			fh.set(0, false)

			e.clock.Advance(provider.RetryAfter)
			hang(t)
			mustEqual(t, "token request, host known to fail again, hanging", call().Status, 200)
			entered(t, path)
			allAre(t, "token requests while the background refresh hangs", concurrently(8, status200), 200)
			mustEqual(t, "fetches of the key set", fh.fetches(path), fetched+4)

			release(http.StatusNotFound)
			e.srv.WaitBackground()
			if tr := call(); tr.Status != 401 || tr.Error != "invalid_client" {
				t.Fatalf("token request after the background refresh got 404: %d %s %q, want invalid_client", tr.Status, tr.Error, tr.ErrorDescription)
			}
		})
	})
}
