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

// floodHosts is one TLS server standing in for many hosts: the server's
// fetch client dials it whatever the URL's host, so the fetcher sees
// distinct hosts (its per-host share is keyed by name). Paths under
// /slow/ hang until released, as an attacker's slow host does; /doc/
// serves a good metadata document for the URL it was fetched at, /jwks/
// the test's key set, /logo.png a small PNG.
type floodHosts struct {
	srv  *httptest.Server
	keys []byte
	logo []byte

	held     chan struct{} // one send per /slow/ request that began to hang
	release  chan struct{}
	mu       sync.Mutex
	hits     map[string]int // by host + path
	hanging  map[string]int // /slow/ requests hanging now, by host
	maxHang  map[string]int
	finished int // /slow/ requests that ended before the release
	released bool
}

func newFloodHosts(t *testing.T, keys []byte) *floodHosts {
	fh := &floodHosts{keys: keys, logo: pngLogo(t), held: make(chan struct{}, 64), release: make(chan struct{}),
		hits: map[string]int{}, hanging: map[string]int{}, maxHang: map[string]int{}}
	fh.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		fh.mu.Lock()
		fh.hits[host+r.URL.Path]++
		fh.mu.Unlock()
		switch p := r.URL.Path; {
		case strings.HasPrefix(p, "/slow/"):
			fh.mu.Lock()
			fh.hanging[host]++
			fh.maxHang[host] = max(fh.maxHang[host], fh.hanging[host])
			fh.mu.Unlock()
			fh.held <- struct{}{}
			select {
			case <-fh.release:
			case <-r.Context().Done():
			}
			fh.mu.Lock()
			fh.hanging[host]--
			if !fh.released {
				fh.finished++
			}
			fh.mu.Unlock()
			http.NotFound(w, r)
		case strings.HasPrefix(p, "/doc/"):
			id := "https://" + host + p
			doc := map[string]any{"client_id": id, "client_name": "Flood-proof", "redirect_uris": []string{"https://app.example/cb"},
				"token_endpoint_auth_method": "none",
				// On the document's own host: the consent page shows a
				// metadata-document client's logo only from there or from
				// the redirect's host (RFC 7591 §5).
				"logo_uri": "https://" + host + "/logo.png"}
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "max-age=300")
			_ = json.NewEncoder(w).Encode(doc)
		case strings.HasPrefix(p, "/jwks/"):
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(fh.keys)
		case p == "/logo.png":
			w.Header().Set("Content-Type", "image/png")
			_, _ = w.Write(fh.logo)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(fh.srv.Close)
	t.Cleanup(fh.open) // never leave a handler hanging into Close
	return fh
}

// client is the server's outbound client: every host is the test server,
// whose certificate names example.com.
func (fh *floodHosts) client() *http.Client {
	roots := x509.NewCertPool()
	roots.AddCert(fh.srv.Certificate())
	addr := fh.srv.Listener.Addr().String()
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "example.com"},
	}}
}

// open lets every hanging request end (once).
func (fh *floodHosts) open() {
	fh.mu.Lock()
	defer fh.mu.Unlock()
	if !fh.released {
		fh.released = true
		close(fh.release)
	}
}

func (fh *floodHosts) fetches(hostPath string) int {
	fh.mu.Lock()
	defer fh.mu.Unlock()
	return fh.hits[hostPath]
}

// flood asks the server to authorize n new document clients on each of
// hosts, all of them hanging, and waits until want of those fetches hang.
// It returns a wait for the flood's requests.
func (fh *floodHosts) flood(t *testing.T, e *env, n, want int, hosts ...string) (wait func()) {
	t.Helper()
	var wg sync.WaitGroup
	for _, h := range hosts {
		for i := range n {
			id := fmt.Sprintf("https://%s/slow/%d.json", h, i)
			wg.Go(func() {
				e.browser().do("GET", authRequest{clientID: id, redirectURI: "https://app.example/cb", state: "s", verifier: testVerifier}.url(e.issuer), nil)
			})
		}
	}
	for range want {
		<-fh.held
	}
	return wg.Wait
}

// TestFetchFloodIsNotTheClientsFault: outbound fetches (client metadata
// documents, jwks_uri, logos) go to URLs anyone chooses, so a flood of
// them on slow hosts must not become a failure of the legitimate clients
// fetched meanwhile. One host holds at most two of the four fetch slots,
// so other hosts' documents are fetched during its flood. When many hosts
// hold every slot, a client that needs a fetch is answered 503
// temporarily_unavailable with Retry-After (the token endpoint) or a 503
// page (authorize), never invalid_client, and works as soon as the flood
// ends, not 30 s later; a client with a good copy a little past its
// lifetime (document row, key set) keeps using it meanwhile; a logo that
// got no slot is shown on the next page, not hidden for 10 minutes.
func TestFetchFloodIsNotTheClientsFault(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		keys, signer := clientKey(t)

		t.Run("one host's flood leaves other hosts a slot", func(t *testing.T) {
			fh := newFloodHosts(t, keys)
			e := start(t, open(t), func(o *provider.Options) { o.HTTPClient = fh.client() })
			wait := fh.flood(t, e, 4, 2, "flood.example.com")
			id := "https://good.example.com/doc/a.json"
			p := e.browser().do("GET", authRequest{clientID: id, redirectURI: "https://app.example/cb", state: "s", verifier: testVerifier}.url(e.issuer), nil)
			fh.mu.Lock()
			finished, maxHang := fh.finished, fh.maxHang["flood.example.com"]
			fh.mu.Unlock()
			fh.open()
			wait()
			if p.status != http.StatusSeeOther || !strings.Contains(p.location, provider.PathLogin) {
				t.Fatalf("another host's document during the flood: status %d location %q %.300s", p.status, p.location, p.body)
			}
			mustEqual(t, "flood fetches that ended before the other host's document was fetched", finished, 0)
			mustEqual(t, "most fetches of the flooding host at once", maxHang, 2)
		})

		t.Run("every slot held: 503, then at once", func(t *testing.T) {
			fh := newFloodHosts(t, keys)
			e := start(t, open(t), func(o *provider.Options) { o.HTTPClient = fh.client() })
			admin := httptest.NewServer(e.srv.AdminHandler())
			defer admin.Close()
			user, pw := e.user("flood")
			authorize := func(id string) page {
				return e.browser().do("GET", authRequest{clientID: id, redirectURI: "https://app.example/cb", state: "s", verifier: testVerifier}.url(e.issuer), nil)
			}
			keyClient := func(jwksURI string) string {
				status, m := e.registerService(t, map[string]any{"client_name": "Keyed", "token_endpoint_auth_method": "private_key_jwt",
					"jwks_uri": jwksURI, "grant_types": []string{"client_credentials"}})
				mustEqual(t, "register", status, 201)
				return m["client_id"].(string)
			}
			withKey := func(id string) tokenResp { return e.postToken(e.assertionGrant(t, signer, id), "", "") }
			codeFor := func(id string) tokenResp {
				return e.postToken(url.Values{"grant_type": {"authorization_code"}, "code": {"not-a-code"}, "redirect_uri": {"https://app.example/cb"},
					"code_verifier": {testVerifier}, "client_id": {id}}, "", "")
			}

			// Good copies, fetched before the flood and a minute past
			// their lifetime (5 minutes each) when it comes.
			staleDoc, logoDoc := "https://good.example.com/doc/stale.json", "https://good.example.com/doc/logo.json"
			mustEqual(t, "stale document, first fetch", authorize(staleDoc).status, http.StatusSeeOther)
			mustEqual(t, "logo document, first fetch", authorize(logoDoc).status, http.StatusSeeOther)
			staleKeys := keyClient("https://keys.example.com/jwks/stale.json")
			mustEqual(t, "stale key set, first fetch", withKey(staleKeys).Status, 200)
			newKeys := keyClient("https://keys.example.com/jwks/new.json")
			e.clock.Advance(6 * time.Minute)

			wait := fh.flood(t, e, 3, 4, "flood1.example.com", "flood2.example.com")
			newDoc, newTokenDoc := "https://good.example.com/doc/new.json", "https://good.example.com/doc/new-token.json"
			var (
				wg                     sync.WaitGroup
				pNew, pStale, pConsent page
				tNewDoc, tNewKeys      tokenResp
				tStaleKeys             tokenResp
			)
			wg.Go(func() { pNew = authorize(newDoc) })
			wg.Go(func() { tNewDoc = codeFor(newTokenDoc) })
			wg.Go(func() { tNewKeys = withKey(newKeys) })
			wg.Go(func() { pStale = authorize(staleDoc) })
			wg.Go(func() { tStaleKeys = withKey(staleKeys) })
			wg.Go(func() {
				pConsent = e.browser().consentPage(authRequest{clientID: logoDoc, redirectURI: "https://app.example/cb", state: "s",
					verifier: testVerifier}.url(e.issuer), user, pw)
			})
			wg.Wait()
			fh.mu.Lock()
			finished := fh.finished
			fh.mu.Unlock()
			fh.open()
			wait()
			mustEqual(t, "flood fetches that ended while the clients were answered", finished, 0)

			if pNew.status != http.StatusServiceUnavailable || pNew.header.Get("Retry-After") == "" || pNew.location != "" {
				t.Errorf("authorize, new document: status %d Retry-After %q location %q, want a 503 page with Retry-After",
					pNew.status, pNew.header.Get("Retry-After"), pNew.location)
			}
			for name, tr := range map[string]tokenResp{"new document": tNewDoc, "new jwks_uri": tNewKeys} {
				if tr.Status != http.StatusServiceUnavailable || tr.Error != "temporarily_unavailable" || tr.Header.Get("Retry-After") == "" {
					t.Errorf("token endpoint, %s: %d %s %q Retry-After %q, want 503 temporarily_unavailable with Retry-After",
						name, tr.Status, tr.Error, tr.ErrorDescription, tr.Header.Get("Retry-After"))
				}
			}
			// Counted as this process's capacity, not as a store outage:
			// the three above, and any of the flood's own two requests
			// that waited for their host's share as long.
			m := scrape(t, admin.URL)
			if busy, _ := metric(m, "authz_unavailable_total", "cause", "busy"); busy < 3 || busy > 5 {
				t.Errorf("503s counted as busy: %v, want the 3 answered here and up to 2 of the flood's", busy)
			}
			storeOut, _ := metric(m, "authz_unavailable_total", "cause", "store")
			mustEqual(t, "503s counted as store outages", storeOut, 0.0)
			mustEqual(t, "authorize, stale document row", pStale.status, http.StatusSeeOther)
			mustEqual(t, "stale document fetches", fh.fetches("good.example.com/doc/stale.json"), 1)
			mustEqual(t, "token endpoint, stale key set: "+tStaleKeys.ErrorDescription, tStaleKeys.Status, 200)
			mustEqual(t, "stale key set fetches", fh.fetches("keys.example.com/jwks/stale.json"), 1)
			if pConsent.status != http.StatusOK || !strings.Contains(pConsent.body, `name="decision"`) || strings.Contains(pConsent.body, "data:image/png") {
				t.Errorf("consent page during the flood: status %d, want the page without the logo: %.300s", pConsent.status, pConsent.body)
			}

			// Right after the flood, with no time passed on the server's
			// clock: nothing of it was remembered against these URLs.
			mustEqual(t, "authorize, new document after the flood", authorize(newDoc).status, http.StatusSeeOther)
			after := codeFor(newTokenDoc)
			mustEqual(t, "token endpoint, new document after the flood: "+after.ErrorDescription, after.Error, "invalid_grant")
			mustEqual(t, "token endpoint, new jwks_uri after the flood", withKey(newKeys).Status, 200)
			p := e.browser().consentPage(authRequest{clientID: logoDoc, redirectURI: "https://app.example/cb", state: "s",
				verifier: testVerifier}.url(e.issuer), user, pw)
			if !strings.Contains(p.body, "data:image/png") {
				t.Errorf("consent page after the flood has no logo: status %d", p.status)
			}
		})
	})
}
