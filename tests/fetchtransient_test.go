package tests

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/store"
)

// flakyHost is a client's host that can fail: up (serving metadata
// documents under /doc/ with a 5-minute lifetime and the test's key set
// under /jwks/), answering every request with a status, or down (the
// server's fetch client dials an address nobody listens on: connection
// refused). Every host name reaches it, as in floodHosts.
type flakyHost struct {
	srv  *httptest.Server
	keys []byte
	dead string // a closed listener's address

	mu     sync.Mutex
	status int // 0: serve
	down   bool
	hits   map[string]int // by path
	// hang, when set, holds every request until the test sends the status
	// to answer on it (0: serve); entered is told each held request's path.
	hang    chan int
	entered chan string
}

func newFlakyHost(t *testing.T, keys []byte) *flakyHost {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fh := &flakyHost{keys: keys, dead: l.Addr().String(), hits: map[string]int{}}
	_ = l.Close()
	fh.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fh.mu.Lock()
		fh.hits[r.URL.Path]++
		status, hang, entered := fh.status, fh.hang, fh.entered
		fh.mu.Unlock()
		if hang != nil {
			select {
			case entered <- r.URL.Path:
			case <-r.Context().Done():
				return
			}
			select {
			case status = <-hang:
			case <-r.Context().Done(): // the server's fetch gave up
				return
			}
		}
		if status != 0 {
			w.WriteHeader(status)
			_, _ = w.Write([]byte(`{"error":"not now"}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		switch p := r.URL.Path; {
		case strings.HasPrefix(p, "/doc/"):
			w.Header().Set("Cache-Control", "max-age=300")
			_ = json.NewEncoder(w).Encode(map[string]any{"client_id": "https://" + r.Host + p, "client_name": "Sometimes down",
				"redirect_uris": []string{"https://app.example/cb"}, "token_endpoint_auth_method": "none",
				"grant_types": []string{"authorization_code", "refresh_token"}})
		case strings.HasPrefix(p, "/jwks/"):
			_, _ = w.Write(fh.keys)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(fh.srv.Close)
	return fh
}

// client is the server's outbound client: every host is the test server
// (whose certificate names example.com), or nothing while the host is down.
func (fh *flakyHost) client() *http.Client {
	roots := x509.NewCertPool()
	roots.AddCert(fh.srv.Certificate())
	addr := fh.srv.Listener.Addr().String()
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			fh.mu.Lock()
			to := addr
			if fh.down {
				to = fh.dead
			}
			fh.mu.Unlock()
			var d net.Dialer
			return d.DialContext(ctx, network, to)
		},
		DisableKeepAlives: true, // every fetch dials, so "down" is down at once
		TLSClientConfig:   &tls.Config{RootCAs: roots, ServerName: "example.com"},
	}}
}

// set makes the host answer every request with status (0: serve), or be
// down (connection refused).
func (fh *flakyHost) set(status int, down bool) {
	fh.mu.Lock()
	fh.status, fh.down = status, down
	fh.mu.Unlock()
}

func (fh *flakyHost) fetches(path string) int {
	fh.mu.Lock()
	defer fh.mu.Unlock()
	return fh.hits[path]
}

// TestClientHostDownIsNotTheClientsFault: a client whose metadata document
// or jwks_uri host is down, or answers 503/429, after its stored copy's
// lifetime is not told invalid_client (MCP hosts and x/oauth2 discard
// their credentials on it). Within staleIfError (an hour) past the
// lifetime the stored copy serves (RFC 5861 stale-if-error); beyond it,
// or with no copy, the answer is 503 temporarily_unavailable with
// Retry-After (a 503 page at authorize, no redirect), counted as
// cause="client_host"; the host is asked again once that Retry-After has
// passed, and the same refresh token works. A host that answers 404 is
// still the client's fault: invalid_client, stored copy or not.
func TestClientHostDownIsNotTheClientsFault(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		keys, signer := clientKey(t)
		fh := newFlakyHost(t, keys)
		e := start(t, open(t), func(o *provider.Options) { o.HTTPClient = fh.client() })
		admin := httptest.NewServer(e.srv.AdminHandler())
		defer admin.Close()
		user, pw := e.user("flaky")
		const redirect = "https://app.example/cb"

		mustBe503 := func(t *testing.T, what string, tr tokenResp) {
			t.Helper()
			if tr.Status != http.StatusServiceUnavailable || tr.Error != "temporarily_unavailable" || tr.Header.Get("Retry-After") == "" {
				t.Fatalf("%s: %d %s %q Retry-After %q, want 503 temporarily_unavailable with Retry-After",
					what, tr.Status, tr.Error, tr.ErrorDescription, tr.Header.Get("Retry-After"))
			}
		}
		// wait is what a client told to retry does: it waits Retry-After.
		wait := func(t *testing.T, tr tokenResp) {
			t.Helper()
			mustEqual(t, "Retry-After", tr.Header.Get("Retry-After"), fmt.Sprint(int(provider.RetryAfter/time.Second)))
			e.clock.Advance(provider.RetryAfter)
		}
		down, up := func() { fh.set(0, true) }, func() { fh.set(0, false) }
		answers := func(status int) func() { return func() { fh.set(status, false) } }

		t.Run("metadata document", func(t *testing.T) {
			const path = "/doc/mcp.json"
			id := "https://docs.example.com" + path
			up()
			req := authRequest{clientID: id, redirectURI: redirect, state: "s", verifier: testVerifier}
			code := e.codeFor(e.browser(), req, user, pw)
			tr := e.postToken(exchangeForm(code, redirect, testVerifier, url.Values{"client_id": {id}}), "", "")
			mustEqual(t, "exchange: "+tr.ErrorDescription, tr.Status, 200)
			rt := tr.RefreshToken
			// Each request's background refresh (once the host is known
			// to fail) is let finish before the host changes state.
			refresh := func() tokenResp {
				defer e.srv.WaitBackground()
				return e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {id}}, "", "")
			}
			refreshOK := func(t *testing.T, what string) {
				t.Helper()
				tr := refresh()
				mustEqual(t, what+": "+tr.ErrorDescription, tr.Status, 200)
				rt = tr.RefreshToken
			}
			authorize := func() page {
				defer e.srv.WaitBackground()
				return e.browser().do("GET", req.url(e.issuer), nil)
			}

			// Past the document's lifetime (5 minutes), within the bound.
			e.clock.Advance(6 * time.Minute)
			for _, c := range []struct {
				name string
				set  func()
			}{{"503", answers(503)}, {"429", answers(429)}, {"502", answers(502)}, {"connection refused", down}} {
				c.set()
				before := fh.fetches(path)
				refreshOK(t, "refresh, host "+c.name+", stored copy in its stale window")
				if fh.fetches(path) == before && c.name != "connection refused" {
					t.Fatalf("host %s: the refresh did not ask the host", c.name)
				}
				if p := authorize(); p.status != http.StatusSeeOther || !strings.Contains(p.location, provider.PathLogin) {
					t.Fatalf("authorize, host %s, stored copy in its stale window: %d %q", c.name, p.status, p.location)
				}
				e.clock.Advance(provider.RetryAfter) // past the remembered failure: the host is asked again
			}

			// Still within the bound, well past the lifetime.
			e.clock.Advance(50 * time.Minute)
			down()
			refreshOK(t, "refresh, host down, 51 minutes past the document's lifetime")

			// Beyond the bound (an hour past the lifetime): 503, never
			// invalid_client, and the refresh token is not spent.
			e.clock.Advance(10 * time.Minute)
			tr = refresh()
			mustBe503(t, "refresh, host down, copy too old", tr)
			p := authorize()
			if p.status != http.StatusServiceUnavailable || p.header.Get("Retry-After") == "" || p.location != "" {
				t.Fatalf("authorize, host down, copy too old: status %d Retry-After %q location %q, want a 503 page",
					p.status, p.header.Get("Retry-After"), p.location)
			}
			wait(t, tr)
			fh.set(503, false)
			tr = refresh()
			mustBe503(t, "refresh, host answering 503, copy too old", tr)
			// The host is back at once; the failure is remembered (so a
			// dead host is not asked on every request) as what it was: a
			// 503, for the Retry-After the client was told.
			up()
			before := fh.fetches(path)
			mustBe503(t, "refresh, host just back, failure remembered", refresh())
			mustEqual(t, "fetches while the failure is remembered", fh.fetches(path), before)
			wait(t, tr)
			refreshOK(t, "refresh, host back, a Retry-After later (same refresh token)")
			mustEqual(t, "fetches once the host is back", fh.fetches(path), before+1)

			// A 404 is the document's answer: invalid_client, even with a
			// copy in its stale window.
			e.clock.Advance(6 * time.Minute)
			fh.set(404, false)
			tr = refresh()
			if tr.Status != 401 || tr.Error != "invalid_client" {
				t.Fatalf("refresh, document answering 404: %d %s %q, want invalid_client", tr.Status, tr.Error, tr.ErrorDescription)
			}
			if p := authorize(); p.status != http.StatusBadRequest || !strings.Contains(p.body, "answered 404") {
				t.Fatalf("authorize, document answering 404: status %d, want the refused-document page", p.status)
			}
		})

		t.Run("new document, host down", func(t *testing.T) {
			id := "https://new.example.com/doc/new.json"
			down()
			p := e.browser().do("GET", authRequest{clientID: id, redirectURI: redirect, state: "s", verifier: testVerifier}.url(e.issuer), nil)
			if p.status != http.StatusServiceUnavailable || p.header.Get("Retry-After") == "" || p.location != "" {
				t.Fatalf("authorize: status %d Retry-After %q location %q, want a 503 page", p.status, p.header.Get("Retry-After"), p.location)
			}
			tr := e.postToken(url.Values{"grant_type": {"authorization_code"}, "code": {"x"}, "redirect_uri": {redirect},
				"code_verifier": {testVerifier}, "client_id": {id}}, "", "")
			mustBe503(t, "token endpoint", tr)
			if _, err := e.store.GetClient(t.Context(), id); err == nil {
				t.Fatal("an unreachable document left a client behind")
			}
			up()
			wait(t, tr)
			if p := e.browser().do("GET", authRequest{clientID: id, redirectURI: redirect, state: "s", verifier: testVerifier}.url(e.issuer), nil); p.status != http.StatusSeeOther {
				t.Fatalf("authorize once the host is back: status %d", p.status)
			}
		})

		t.Run("jwks_uri", func(t *testing.T) {
			const path = "/jwks/service.json"
			up()
			status, m := e.registerService(t, map[string]any{"client_name": "Keyed", "token_endpoint_auth_method": "private_key_jwt",
				"jwks_uri": "https://keys.example.com" + path, "grant_types": []string{"client_credentials"}})
			mustEqual(t, "register", status, 201)
			id := m["client_id"].(string)
			call := func() tokenResp {
				defer e.srv.WaitBackground()
				return e.postToken(e.assertionGrant(t, signer, id), "", "")
			}
			mustEqual(t, "first", call().Status, 200)

			// Past the key set's lifetime (5 minutes), within the bound.
			e.clock.Advance(6 * time.Minute)
			for _, c := range []struct {
				name string
				set  func()
			}{{"503", answers(503)}, {"429", answers(429)}, {"connection refused", down}} {
				c.set()
				tr := call()
				mustEqual(t, "host "+c.name+", stored key set in its stale window: "+tr.ErrorDescription, tr.Status, 200)
				e.clock.Advance(provider.RetryAfter)
			}

			// Still within the bound, well past the lifetime.
			e.clock.Advance(50 * time.Minute)
			down()
			mustEqual(t, "host down, 51 minutes past the key set's lifetime", call().Status, 200)

			// Beyond the bound: 503, then the host is back.
			e.clock.Advance(10 * time.Minute)
			tr := call()
			mustBe503(t, "host down, key set too old", tr)
			up()
			mustBe503(t, "host just back, failure remembered", call())
			wait(t, tr)
			before := fh.fetches(path)
			mustEqual(t, "host back, a Retry-After later", call().Status, 200)
			mustEqual(t, "fetches once the host is back", fh.fetches(path), before+1)

			// A 404 is the key set's answer: invalid_client.
			e.clock.Advance(6 * time.Minute)
			fh.set(404, false)
			if tr := call(); tr.Status != 401 || tr.Error != "invalid_client" {
				t.Fatalf("jwks_uri answering 404: %d %s %q, want invalid_client", tr.Status, tr.Error, tr.ErrorDescription)
			}
		})

		// The 503s above are the clients' hosts, not the database nor
		// this process's capacity.
		m := scrape(t, admin.URL)
		n, _ := metric(m, "authz_unavailable_total", "cause", "client_host")
		mustEqual(t, "503s counted as client_host (the 8 answered above)", n, 8.0)
		for _, cause := range []string{"store", "busy", "timeout", "other"} {
			n, _ := metric(m, "authz_unavailable_total", "cause", cause)
			mustEqual(t, "503s counted as "+cause, n, 0.0)
		}
	})
}
