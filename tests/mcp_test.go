package tests

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/authzd/authz/middleware"
	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/store"
)

// docServer publishes client ID metadata documents over TLS, as MCP clients
// do, and counts the fetches of each path.
type docServer struct {
	srv  *httptest.Server
	mu   sync.Mutex
	docs map[string]docReply
	hits map[string]*atomic.Int64
}

type docReply struct {
	status int
	header http.Header
	body   []byte
}

func newDocServer(t testing.TB) *docServer {
	ds := &docServer{docs: map[string]docReply{}, hits: map[string]*atomic.Int64{}}
	ds.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ds.mu.Lock()
		d, ok := ds.docs[r.URL.Path]
		if h := ds.hits[r.URL.Path]; h != nil {
			h.Add(1)
		}
		ds.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		for k, v := range d.header {
			w.Header()[k] = v
		}
		if w.Header().Get("Content-Type") == "" {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(d.status)
		_, _ = w.Write(d.body)
	}))
	t.Cleanup(ds.srv.Close)
	return ds
}

// roots trusts the document server's certificate.
func (ds *docServer) roots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ds.srv.Certificate())
	return p
}

// url returns the https URL of path.
func (ds *docServer) url(path string) string { return ds.srv.URL + path }

// publish serves doc (a JSON value, or raw bytes) at path with status and
// header.
func (ds *docServer) publish(path string, status int, header http.Header, doc any) string {
	var body []byte
	switch d := doc.(type) {
	case []byte:
		body = d
	default:
		body, _ = json.Marshal(d)
	}
	ds.mu.Lock()
	defer ds.mu.Unlock()
	ds.docs[path] = docReply{status: status, header: header, body: body}
	if ds.hits[path] == nil {
		ds.hits[path] = &atomic.Int64{}
	}
	return ds.url(path)
}

func (ds *docServer) fetches(path string) int64 {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if h := ds.hits[path]; h != nil {
		return h.Load()
	}
	return 0
}

// startWithDocs runs a server that trusts ds for outbound fetches. Its
// issuer is on loopback, so documents on loopback hosts are accepted.
func startWithDocs(t testing.TB, st store.Store, ds *docServer, mutate func(o *provider.Options)) *env {
	return start(t, st, func(o *provider.Options) {
		o.FetchRootCAs = ds.roots()
		if mutate != nil {
			mutate(o)
		}
	})
}

// mcpShapes are the published document shapes of shipping MCP clients
// (2026), with the redirect each sends. %s is the document's own URL.
var mcpShapes = []struct {
	name     string
	doc      string
	redirect func(t testing.TB) string
}{
	{"Claude Code", `{"client_id":"%s","client_name":"Claude Code","client_uri":"https://claude.ai",
		"redirect_uris":["http://localhost/callback"],"grant_types":["authorization_code","refresh_token"],
		"response_types":["code"],"token_endpoint_auth_method":"none"}`,
		func(t testing.TB) string { return fmt.Sprintf("http://127.0.0.1:%d/callback", freePort(t)) }},
	{"claude.ai", `{"client_id":"%s","client_name":"Claude","client_uri":"https://claude.ai","logo_uri":"https://claude.ai/logo.png",
		"redirect_uris":["https://claude.ai/api/mcp/auth_callback"],
		"grant_types":["authorization_code","refresh_token","urn:ietf:params:oauth:grant-type:jwt-bearer"],
		"response_types":["code"],"token_endpoint_auth_method":"none"}`,
		func(testing.TB) string { return "https://claude.ai/api/mcp/auth_callback" }},
	{"ChatGPT", `{"client_id":"%s","client_name":"ChatGPT","client_uri":"https://chatgpt.com",
		"redirect_uris":["https://chatgpt.com/connector_platform_oauth_redirect"],
		"grant_types":["authorization_code","refresh_token"],"response_types":["code"],
		"token_endpoint_auth_methods_supported":["none","private_key_jwt"],
		"application_type":"web","software_id":"openai-connectors","openai_connector_version":3,"x-unknown":{"nested":[1,2]}}`,
		func(testing.TB) string { return "https://chatgpt.com/connector_platform_oauth_redirect" }},
	{"VS Code", `{"client_id":"%s","client_name":"Visual Studio Code","client_uri":"https://code.visualstudio.com",
		"redirect_uris":["http://127.0.0.1:33418","https://vscode.dev/redirect"],
		"grant_types":["authorization_code","refresh_token"],"response_types":["code"],"token_endpoint_auth_method":"none"}`,
		// What its loopback server sends: the published URI has no path,
		// the one it listens on ends in "/", on 33418 or any free port.
		func(t testing.TB) string { return fmt.Sprintf("http://127.0.0.1:%d/", freePort(t)) }},
	{"VS Code for the Web", `{"client_id":"%s","client_name":"Visual Studio Code","client_uri":"https://code.visualstudio.com",
		"redirect_uris":["http://127.0.0.1:33418","https://vscode.dev/redirect"],
		"grant_types":["authorization_code","refresh_token"],"response_types":["code"],"token_endpoint_auth_method":"none"}`,
		func(testing.TB) string { return "https://vscode.dev/redirect" }},
	{"opencode", `{"client_id":"%s","client_name":"opencode","client_uri":"https://opencode.ai",
		"redirect_uris":["http://127.0.0.1:19876/mcp/oauth/callback"],
		"grant_types":["authorization_code","refresh_token"],"token_endpoint_auth_method":"none"}`,
		func(testing.TB) string { return "http://127.0.0.1:19876/mcp/oauth/callback" }},
}

// TestMCPClientMetadataDocuments replays each shipping client's document
// shape through authorization code + PKCE + refresh on both stores.
func TestMCPClientMetadataDocuments(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		ds := newDocServer(t)
		e := startWithDocs(t, open(t), ds, nil)
		user, pw := e.user("mcp-user")

		meta := discoveryDocument(t, e)
		if meta["client_id_metadata_document_supported"] != true || !slices.Contains(anyStrings(meta["token_endpoint_auth_methods_supported"]), "none") {
			t.Fatalf("metadata does not invite metadata documents: %v", meta)
		}
		for i, shape := range mcpShapes {
			t.Run(shape.name, func(t *testing.T) {
				path := fmt.Sprintf("/clients/%d/oauth-client.json", i)
				id := ds.url(path)
				ds.publish(path, 200, http.Header{"Cache-Control": {"max-age=3600"}}, []byte(fmt.Sprintf(shape.doc, id)))
				redirect := shape.redirect(t)
				req := authRequest{clientID: id, redirectURI: redirect, state: "st-" + shape.name, scope: "read",
					verifier: testVerifier, resources: []string{"https://mcp.example.com/mcp"}}
				code := e.codeFor(e.browser(), req, user, pw)
				tr := e.postToken(exchangeForm(code, redirect, testVerifier, url.Values{"client_id": {id}}), "", "")
				mustEqual(t, "exchange: "+tr.ErrorDescription, tr.Status, 200)
				if tr.RefreshToken == "" {
					t.Fatal("no refresh token")
				}
				mustEqual(t, "client_id claim", claims(t, tr.AccessToken)["client_id"].(string), id)
				if aud := audience(t, tr.AccessToken); !slices.Equal(aud, []string{"https://mcp.example.com/mcp"}) {
					t.Fatalf("aud = %v", aud)
				}
				next := e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}, "client_id": {id}}, "", "")
				mustEqual(t, "refresh: "+next.ErrorDescription, next.Status, 200)
				if next.RefreshToken == "" || next.RefreshToken == tr.RefreshToken {
					t.Fatal("refresh did not rotate")
				}
				c, err := e.store.GetClient(t.Context(), id)
				if err != nil {
					t.Fatal(err)
				}
				mustEqual(t, "trust", c.Trust, store.TrustMetadataDocument)
				mustEqual(t, "auth method", c.Metadata.TokenEndpointAuthMethod, oauth.AuthNone)
				if slices.Contains(c.Metadata.GrantTypes, "urn:ietf:params:oauth:grant-type:jwt-bearer") {
					t.Fatalf("unsupported grant type kept: %v", c.Metadata.GrantTypes)
				}
				mustEqual(t, "fetches (one, then the stored row)", ds.fetches(path), int64(1))
			})
		}
	})
}

func discoveryDocument(t testing.TB, e *env) map[string]any {
	t.Helper()
	resp, err := http.Get(e.issuer + "/.well-known/oauth-authorization-server")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func anyStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

// TestMCPDocumentPrivateKeyJWT: a document with jwks and private_key_jwt
// (what ChatGPT's documents prefer) authenticates at the token endpoint
// with a signed assertion whose iss and sub are the document URL.
func TestMCPDocumentPrivateKeyJWT(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		ds := newDocServer(t)
		e := startWithDocs(t, open(t), ds, nil)
		user, pw := e.user("pkj")
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		jwks := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "k1", Algorithm: "ES256", Use: "sig"}}}
		id := ds.url("/oauth/client.json")
		ds.publish("/oauth/client.json", 200, nil, map[string]any{
			"client_id": id, "client_name": "ChatGPT", "redirect_uris": []string{"https://chatgpt.com/connector_platform_oauth_redirect"},
			"token_endpoint_auth_methods_supported": []string{"private_key_jwt"}, "jwks": jwks,
			"grant_types": []string{"authorization_code", "refresh_token"},
		})
		redirect := "https://chatgpt.com/connector_platform_oauth_redirect"
		code := e.codeFor(e.browser(), authRequest{clientID: id, redirectURI: redirect, state: "s", verifier: testVerifier}, user, pw)
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: "k1"}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		assertion := func(jti string) string {
			s, err := jwt.Signed(signer).Claims(jwt.Claims{Issuer: id, Subject: id, Audience: jwt.Audience{e.issuer + provider.PathToken},
				ID: jti, Expiry: jwt.NewNumericDate(e.clock.Now().Add(time.Minute)), IssuedAt: jwt.NewNumericDate(e.clock.Now())}).Serialize()
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		withAssertion := func(f url.Values, jti string) url.Values {
			f.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
			f.Set("client_assertion", assertion(jti))
			return f
		}
		// Without the assertion, the client cannot pose as public.
		none := e.postToken(exchangeForm(code, redirect, testVerifier, url.Values{"client_id": {id}}), "", "")
		mustEqual(t, "no assertion", none.Error, "invalid_client")
		code = e.codeFor(e.browser(), authRequest{clientID: id, redirectURI: redirect, state: "s", verifier: testVerifier}, user, pw)
		tr := e.postToken(withAssertion(exchangeForm(code, redirect, testVerifier, nil), "a1"), "", "")
		mustEqual(t, "exchange: "+tr.ErrorDescription, tr.Status, 200)
		next := e.postToken(withAssertion(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}}, "a2"), "", "")
		mustEqual(t, "refresh: "+next.ErrorDescription, next.Status, 200)
	})
}

// TestMCPDocumentRejections: every rule, each refused at authorize with a
// page saying which rule failed (no redirect: the client is not trusted)
// and at the token endpoint with invalid_client.
func TestMCPDocumentRejections(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		ds := newDocServer(t)
		e := startWithDocs(t, open(t), ds, nil)
		good := func(id string) map[string]any {
			return map[string]any{"client_id": id, "client_name": "Doc", "redirect_uris": []string{"https://app.example/cb"}, "token_endpoint_auth_method": "none"}
		}
		with := func(id string, k string, v any) map[string]any {
			d := good(id)
			if v == nil {
				delete(d, k)
			} else {
				d[k] = v
			}
			return d
		}
		target := ds.publish("/target.json", 200, nil, good(ds.url("/target.json")))
		big := good(ds.url("/big.json"))
		big["client_uri"] = "https://app.example/" + strings.Repeat("a", 6<<10)
		cases := []struct {
			name, path string
			doc        any
			status     int
			header     http.Header
			redirect   string
			id         string // when not the served URL
			rule       string
		}{
			{name: "client_id not the URL", path: "/mismatch.json", doc: good("https://elsewhere.example/client.json"), rule: "is not the URL it was fetched from"},
			{name: "client_id differs only by case", path: "/Case.json", doc: good(strings.Replace(ds.url("/Case.json"), "Case", "case", 1)), rule: "is not the URL it was fetched from"},
			{name: "302 to a valid document", path: "/moved.json", doc: []byte{}, status: 302, header: http.Header{"Location": {target}}, rule: "redirects are not followed"},
			{name: "6 KiB", path: "/big.json", doc: big, rule: "larger than 5120 bytes"},
			{name: "client_secret", path: "/secret.json", doc: with(ds.url("/secret.json"), "client_secret", "s3cr3t"), rule: "client_secret must not appear"},
			{name: "shared-secret auth method", path: "/basic.json", doc: with(ds.url("/basic.json"), "token_endpoint_auth_method", "client_secret_basic"), rule: "shared secret"},
			{name: "no client_name", path: "/noname.json", doc: with(ds.url("/noname.json"), "client_name", nil), rule: "client_name is missing"},
			{name: "no redirect_uris", path: "/noredirect.json", doc: with(ds.url("/noredirect.json"), "redirect_uris", nil), rule: "redirect_uris is missing"},
			{name: "unlisted redirect URI", path: "/unlisted.json", doc: good(ds.url("/unlisted.json")), redirect: "https://attacker.example/cb", rule: ""},
			{name: "not JSON", path: "/html.json", doc: []byte("<html>hi</html>"), rule: "not a JSON object"},
			{name: "404", path: "/gone.json", doc: []byte(`{}`), status: 404, rule: "answered 404"},
			{name: "private address", id: "https://10.0.0.1:9/client.json", rule: "not a public internet address"},
			{name: "fragment", id: ds.url("/a.json#x"), rule: "fragment"},
			{name: "no path", id: ds.url("/"), rule: "must have a path"},
			{name: "dot segment", id: ds.url("/a/../b.json"), rule: ". or .. path segments"},
			{name: "user info", id: strings.Replace(ds.url("/u.json"), "https://", "https://user@", 1), rule: "user information"},
		}
		t.Run("a message for a client_id", func(t *testing.T) {
			// Whoever writes the link chooses the client_id: the page shows
			// enough of it for a real document URL, not a paragraph.
			id := ds.url("/x/../" + strings.Repeat("Your account is locked: call +1 555 0100 now. ", 8))
			p := e.browser().do("GET", authRequest{clientID: id, redirectURI: "https://app.example/cb", state: "s", verifier: testVerifier}.url(e.issuer), nil)
			if p.status != http.StatusBadRequest || !strings.Contains(p.body, "…") || strings.Count(p.body, "Your account is locked") > 2 {
				t.Fatalf("status %d, want a 400 page showing the start of the client_id only: %.1500s", p.status, p.body)
			}
		})
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				id := tc.id
				if tc.path != "" {
					status := tc.status
					if status == 0 {
						status = 200
					}
					id = ds.publish(tc.path, status, tc.header, tc.doc)
				}
				redirect := tc.redirect
				if redirect == "" {
					redirect = "https://app.example/cb"
				}
				p := e.browser().do("GET", authRequest{clientID: id, redirectURI: redirect, state: "s", verifier: testVerifier}.url(e.issuer), nil)
				if p.status != http.StatusBadRequest || p.location != "" {
					t.Fatalf("authorize: status %d location %q, want a 400 page", p.status, p.location)
				}
				if tc.rule != "" && !strings.Contains(p.body, htmlEscape(tc.rule)) {
					t.Fatalf("the page does not say %q: %.600s", tc.rule, p.body)
				}
				if tc.rule == "" {
					return // the document is fine; only the redirect is not
				}
				tr := e.postToken(url.Values{"grant_type": {"authorization_code"}, "code": {"x"}, "redirect_uri": {redirect},
					"code_verifier": {testVerifier}, "client_id": {id}}, "", "")
				if tr.Status != 401 || tr.Error != "invalid_client" || !strings.Contains(tr.ErrorDescription, tc.rule) {
					t.Fatalf("token endpoint: %d %s %q", tr.Status, tr.Error, tr.ErrorDescription)
				}
				if _, err := e.store.GetClient(t.Context(), id); err == nil {
					t.Fatal("a refused document was stored as a client")
				}
			})
		}
	})
}

func htmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;").Replace(s)
}

// TestMCPDocumentLoopbackNeedsLoopbackIssuer: the local-development
// exception holds only while the issuer itself is on loopback.
func TestMCPDocumentLoopbackNeedsLoopbackIssuer(t *testing.T) {
	t.Parallel()
	ds := newDocServer(t)
	e := startWithDocs(t, storeKinds[0].open(t), ds, func(o *provider.Options) { o.Issuer = "https://auth.example.com" })
	id := ds.publish("/c.json", 200, nil, map[string]any{"client_id": ds.url("/c.json"), "client_name": "X", "redirect_uris": []string{"https://app.example/cb"}})
	p := e.browser().do("GET", authRequest{clientID: id, redirectURI: "https://app.example/cb", state: "s", verifier: testVerifier}.url(e.http.URL), nil)
	if p.status != http.StatusBadRequest || !strings.Contains(p.body, "not a public internet address") {
		t.Fatalf("status %d body %.400s", p.status, p.body)
	}
	mustEqual(t, "fetches", ds.fetches("/c.json"), int64(0))
}

// TestMCPDocumentCaching: a good document is kept for its HTTP cache
// lifetime bounded to [5 min, 24 h] and then fetched again; an error
// answer is never kept as a client, and is retried once the brief failure
// memory has passed.
func TestMCPDocumentCaching(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		ds := newDocServer(t)
		e := startWithDocs(t, open(t), ds, nil)
		user, pw := e.user("cache")
		authorizeOnce := func(id, redirect string) page {
			b := e.browser()
			return b.do("GET", authRequest{clientID: id, redirectURI: redirect, state: "s", verifier: testVerifier}.url(e.issuer), nil)
		}
		doc := func(id, redirect string) map[string]any {
			return map[string]any{"client_id": id, "client_name": "Cache", "redirect_uris": []string{redirect}, "token_endpoint_auth_method": "none"}
		}

		t.Run("short max-age is raised to 5 minutes", func(t *testing.T) {
			id := ds.url("/short.json")
			ds.publish("/short.json", 200, http.Header{"Cache-Control": {"public, max-age=10"}}, doc(id, "https://a.example/cb"))
			mustEqual(t, "first", authorizeOnce(id, "https://a.example/cb").status, http.StatusSeeOther)
			e.clock.Advance(4 * time.Minute)
			authorizeOnce(id, "https://a.example/cb")
			mustEqual(t, "fetches within 5 minutes", ds.fetches("/short.json"), int64(1))
			e.clock.Advance(61 * time.Second)
			authorizeOnce(id, "https://a.example/cb")
			mustEqual(t, "fetches after 5 minutes", ds.fetches("/short.json"), int64(2))
		})
		t.Run("long max-age is capped at 24 hours", func(t *testing.T) {
			id := ds.url("/long.json")
			ds.publish("/long.json", 200, http.Header{"Cache-Control": {"max-age=31536000"}}, doc(id, "https://b.example/cb"))
			authorizeOnce(id, "https://b.example/cb")
			e.clock.Advance(23 * time.Hour)
			authorizeOnce(id, "https://b.example/cb")
			mustEqual(t, "fetches within 24 hours", ds.fetches("/long.json"), int64(1))
			e.clock.Advance(time.Hour + time.Second)
			authorizeOnce(id, "https://b.example/cb")
			mustEqual(t, "fetches after 24 hours", ds.fetches("/long.json"), int64(2))
		})
		t.Run("an error is not cached as a client", func(t *testing.T) {
			id := ds.url("/flaky.json")
			ds.publish("/flaky.json", 500, nil, []byte(`{"error":"boom"}`))
			// A 500 is the host's trouble, not a verdict on the client: a
			// 503 page (tests/fetchtransient_test.go has the rest).
			mustEqual(t, "on error", authorizeOnce(id, "https://c.example/cb").status, http.StatusServiceUnavailable)
			// Remembered briefly: no fetch on every request.
			authorizeOnce(id, "https://c.example/cb")
			mustEqual(t, "fetches while the failure is remembered", ds.fetches("/flaky.json"), int64(1))
			if _, err := e.store.GetClient(t.Context(), id); err == nil {
				t.Fatal("an error answer left a client behind")
			}
			ds.publish("/flaky.json", 200, nil, doc(id, "https://c.example/cb"))
			e.clock.Advance(provider.RetryAfter)
			mustEqual(t, "after recovery", authorizeOnce(id, "https://c.example/cb").status, http.StatusSeeOther)
			mustEqual(t, "fetches", ds.fetches("/flaky.json"), int64(2))
		})
		t.Run("changed redirect URIs drop remembered consent", func(t *testing.T) {
			id := ds.url("/moving.json")
			ds.publish("/moving.json", 200, nil, doc(id, "https://d.example/cb"))
			b := e.browser()
			req := authRequest{clientID: id, redirectURI: "https://d.example/cb", state: "s", scope: "read", verifier: testVerifier}
			b.authorize(req.url(e.issuer), user, pw)
			if _, err := e.store.GetConsent(t.Context(), mustUserID(t, e, user), id); err != nil {
				t.Fatalf("consent not remembered: %v", err)
			}
			ds.publish("/moving.json", 200, nil, doc(id, "https://d2.example/cb"))
			e.clock.Advance(6 * time.Minute)
			req.redirectURI = "https://d2.example/cb"
			p := b.do("GET", req.url(e.issuer), nil)
			if p.status != http.StatusOK || !strings.Contains(p.body, `name="decision"`) {
				t.Fatalf("status %d: the consent page was skipped after the document changed", p.status)
			}
		})
	})
}

func mustUserID(t testing.TB, e *env, username string) string {
	t.Helper()
	u, err := e.store.GetUserByUsername(t.Context(), username)
	if err != nil {
		t.Fatal(err)
	}
	return u.ID
}

// TestMCPConsentPage: the page names the host that published the document
// and warns when every redirect URI is on this computer.
func TestMCPConsentPage(t *testing.T) {
	t.Parallel()
	ds := newDocServer(t)
	e := startWithDocs(t, storeKinds[0].open(t), ds, nil)
	user, pw := e.user("consent")
	host := strings.Split(strings.TrimPrefix(ds.srv.URL, "https://"), ":")[0]
	for _, tc := range []struct {
		name, redirect string
		loopback       bool
	}{
		{"loopback only", "http://localhost/callback", true},
		{"https", "https://claude.ai/api/mcp/auth_callback", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := "/consent-" + strings.ReplaceAll(tc.name, " ", "-") + ".json"
			id := ds.publish(path, 200, nil, map[string]any{"client_id": ds.url(path), "client_name": "Claude Code", "redirect_uris": []string{tc.redirect}, "token_endpoint_auth_method": "none"})
			redirect := tc.redirect
			if tc.loopback {
				redirect = fmt.Sprintf("http://127.0.0.1:%d/callback", freePort(t))
			}
			p := e.browser().consentPage(authRequest{clientID: id, redirectURI: redirect, state: "s", scope: "read offline_access", verifier: testVerifier}.url(e.issuer), user, pw)
			if !strings.Contains(p.body, `Published by <strong>`+host+`</strong>`) {
				t.Fatalf("the page does not name the host %s: %.800s", host, p.body)
			}
			if got := strings.Contains(p.body, `id="loopback-warning"`); got != tc.loopback {
				t.Fatalf("loopback warning shown = %v, want %v", got, tc.loopback)
			}
			if !strings.Contains(p.body, "stay signed in") {
				t.Fatal("offline_access is not shown as staying signed in")
			}
		})
	}
}

// TestScopesByHabit: openid is answered by the OpenID Connect layer (an
// ID token) or, with AUTHZ_OIDC=off, dropped; offline_access is granted;
// an unknown scope is still invalid_scope.
func TestScopesByHabit(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		for _, oidcOff := range []bool{false, true} {
			e := start(t, open(t), func(o *provider.Options) { o.DisableOIDC = oidcOff })
			user, pw := e.user("habit")
			c, _, redirect := e.loopbackClient(true)
			// The client's own allowance is read only: offline_access is about
			// the grant (and openid about the user) and is allowed anyway.
			c.Metadata.Scopes = []string{"read"}
			if _, err := e.store.UpdateClient(t.Context(), c.ID, replaceClient(c)); err != nil {
				t.Fatal(err)
			}
			for _, tc := range []struct{ scope, on, off string }{
				{"openid read", "openid read", "read"},                                // Cline
				{"read offline_access", "read offline_access", "read offline_access"}, // Perplexity
				{"openid offline_access read", "openid offline_access read", "offline_access read"},
			} {
				t.Run(fmt.Sprintf("%s/oidc-off=%v", tc.scope, oidcOff), func(t *testing.T) {
					want := tc.on
					if oidcOff {
						want = tc.off
					}
					code := e.codeFor(e.browser(), authRequest{clientID: c.ID, redirectURI: redirect, state: "s", scope: tc.scope, verifier: testVerifier}, user, pw)
					tr := e.postToken(exchangeForm(code, redirect, testVerifier, url.Values{"client_id": {c.ID}}), "", "")
					mustEqual(t, "exchange: "+tr.ErrorDescription, tr.Status, 200)
					mustEqual(t, "scope", tr.Scope, want)
					if tr.RefreshToken == "" {
						t.Fatal("no refresh token")
					}
					// A refresh that repeats openid is not refused either
					// (with the layer on, when openid was granted).
					refreshScope, wantRefreshed := "openid read", "read"
					if !oidcOff {
						if strings.Contains(want, "openid") {
							wantRefreshed = "openid read"
						} else {
							refreshScope = "read"
						}
					}
					next := e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}, "client_id": {c.ID}, "scope": {refreshScope}}, "", "")
					mustEqual(t, "refresh: "+next.ErrorDescription, next.Status, 200)
					mustEqual(t, "refreshed scope", next.Scope, wantRefreshed)
				})
			}
			u := e.browser().authorize(authRequest{clientID: c.ID, redirectURI: redirect, state: "s", scope: "read bogus", verifier: testVerifier}.url(e.issuer), user, pw)
			mustEqual(t, "unknown scope", u.Query().Get("error"), "invalid_scope")
			meta := discoveryDocument(t, e)
			supported := anyStrings(meta["scopes_supported"])
			if !slices.Contains(supported, "offline_access") || slices.Contains(supported, "openid") != !oidcOff {
				t.Fatalf("scopes_supported %v with OIDC off=%v", meta["scopes_supported"], oidcOff)
			}
		}
	})
}

// TestResourceSlashAndDefault: a trailing slash alone never makes a
// resource unknown, no resource means the default one, and the example
// resource server accepts the tokens either way, including when the
// configured form is the one with the slash.
func TestResourceSlashAndDefault(t *testing.T) {
	t.Parallel()
	port, portSlash := freePort(t), freePort(t)
	api := fmt.Sprintf("http://127.0.0.1:%d/api", port)
	apiSlash := fmt.Sprintf("http://127.0.0.1:%d/api/", portSlash)
	e := start(t, storeKinds[1].open(t), func(o *provider.Options) { o.Resources = []string{api, apiSlash, "https://mcp.example.com/mcp"} })
	svc := startService(t, e.issuer, port)
	svcSlash := startService(t, e.issuer, portSlash)
	user, pw := e.user("slash")
	c, _, redirect := e.loopbackClient(true)
	for _, tc := range []struct {
		name      string
		resources []string
		aud       string
		at        service
	}{
		{"trailing slash added", []string{api + "/"}, api, svc},
		{"no resource", nil, api, svc},
		{"upper-case scheme, trailing slash", []string{strings.Replace(api, "http://", "HTTP://", 1) + "/"}, api, svc},
		{"configured with a slash, requested without", []string{strings.TrimSuffix(apiSlash, "/")}, apiSlash, svcSlash},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code := e.codeFor(e.browser(), authRequest{clientID: c.ID, redirectURI: redirect, state: "s", scope: "read", verifier: testVerifier, resources: tc.resources}, user, pw)
			tr := e.postToken(exchangeForm(code, redirect, testVerifier, url.Values{"client_id": {c.ID}}), "", "")
			mustEqual(t, "exchange: "+tr.ErrorDescription, tr.Status, 200)
			if aud := audience(t, tr.AccessToken); !slices.Equal(aud, []string{tc.aud}) {
				t.Fatalf("aud = %v, want %s (the configured form)", aud, tc.aud)
			}
			status, wa, _ := tc.at.call(t, tr.AccessToken, "")
			mustEqual(t, "resource server: "+wa, status, 200)
		})
	}
	// claude.ai sends https://host/ for https://host.
	e2 := start(t, storeKinds[0].open(t), func(o *provider.Options) { o.Resources = []string{"https://mcp.example.com"} })
	user2, pw2 := e2.user("root")
	c2, _, redirect2 := e2.loopbackClient(true)
	code := e2.codeFor(e2.browser(), authRequest{clientID: c2.ID, redirectURI: redirect2, state: "s", verifier: testVerifier, resources: []string{"https://mcp.example.com/"}}, user2, pw2)
	tr := e2.postToken(exchangeForm(code, redirect2, testVerifier, url.Values{"client_id": {c2.ID}, "resource": {"https://MCP.example.com:443/"}}), "", "")
	mustEqual(t, "exchange: "+tr.ErrorDescription, tr.Status, 200)
	if aud := audience(t, tr.AccessToken); !slices.Equal(aud, []string{"https://mcp.example.com"}) {
		t.Fatalf("aud = %v", aud)
	}
}

// TestOneShotInsufficientScope: a 403 names every scope the operation
// needs, so one re-authorization with that scope value succeeds.
func TestOneShotInsufficientScope(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	api := fmt.Sprintf("http://127.0.0.1:%d/api", port)
	e := start(t, storeKinds[0].open(t), func(o *provider.Options) { o.Resources = []string{api} })
	svc := startService(t, e.issuer, port, "-scope", "read write")
	user, pw := e.user("oneshot")
	c, _, redirect := e.loopbackClient(true)
	token := func(scope string) string {
		code := e.codeFor(e.browser(), authRequest{clientID: c.ID, redirectURI: redirect, state: "s", scope: scope, verifier: testVerifier}, user, pw)
		tr := e.postToken(exchangeForm(code, redirect, testVerifier, url.Values{"client_id": {c.ID}}), "", "")
		mustEqual(t, "exchange: "+tr.ErrorDescription, tr.Status, 200)
		return tr.AccessToken
	}
	status, wa, _ := svc.call(t, token("read offline_access"), "")
	mustEqual(t, "status", status, 403)
	_, after, ok := strings.Cut(wa, `scope="`)
	if !ok || !strings.Contains(wa, `error="insufficient_scope"`) || !strings.Contains(wa, "resource_metadata=") {
		t.Fatalf("WWW-Authenticate %q", wa)
	}
	needed, _, _ := strings.Cut(after, `"`)
	mustEqual(t, "scope in the challenge", needed, "read write")
	status, wa, _ = svc.call(t, token(needed), "")
	mustEqual(t, "after one re-authorization: "+wa, status, 200)
}

// TestResourceEncodedSlash: %2F is not "/" (RFC 3986 §2.2). The server and
// the middleware used to disagree here (the server decoded it), so a
// service at https://mcp.example.com/a%2Fb refused the server's tokens.
func TestResourceEncodedSlash(t *testing.T) {
	t.Parallel()
	const res = "https://mcp.example.com/a%2Fb"
	e := start(t, storeKinds[0].open(t), func(o *provider.Options) { o.Resources = []string{res, "https://mcp.example.com/a/b"} })
	user, pw := e.user("encoded")
	c, _, redirect := e.loopbackClient(true)
	v, err := middleware.New(middleware.Config{Issuer: e.issuer, Resource: res})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ requested, aud string }{
		{"https://mcp.example.com/a%2fb", res},
		{"https://mcp.example.com/a/b", "https://mcp.example.com/a/b"},
	} {
		code := e.codeFor(e.browser(), authRequest{clientID: c.ID, redirectURI: redirect, state: "s", verifier: testVerifier, resources: []string{tc.requested}}, user, pw)
		tr := e.postToken(exchangeForm(code, redirect, testVerifier, url.Values{"client_id": {c.ID}}), "", "")
		mustEqual(t, "exchange: "+tr.ErrorDescription, tr.Status, 200)
		if aud := audience(t, tr.AccessToken); !slices.Equal(aud, []string{tc.aud}) {
			t.Fatalf("%s: aud = %v, want %s", tc.requested, aud, tc.aud)
		}
		_, err := v.Validate(t.Context(), tr.AccessToken)
		if accepted := err == nil; accepted != (tc.aud == res) {
			t.Fatalf("%s: the service at %s accepted = %v (%v)", tc.requested, res, accepted, err)
		}
	}
}

// TestMCPDocumentHeldToRegistrationRules: anyone can publish a metadata
// document, so a document client gets no more than an anonymous RFC 7591
// registration: a `scope` of nothing but admin-only scopes and a made-up
// single-word redirect scheme are refused (the page and the token endpoint
// say which rule), an admin-only scope beside others is left out, and a
// document asking only for registration scopes works.
func TestMCPDocumentHeldToRegistrationRules(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		ds := newDocServer(t)
		e := startWithDocs(t, open(t), ds, func(o *provider.Options) { o.AdminScopes = []string{"admin"} })
		doc := func(path, scope, redirect string) string {
			d := map[string]any{"client_id": ds.url(path), "client_name": "Doc", "redirect_uris": []string{redirect}, "token_endpoint_auth_method": "none"}
			if scope != "" {
				d["scope"] = scope
			}
			return ds.publish(path, 200, nil, d)
		}
		for _, tc := range []struct{ name, path, scope, redirect, rule string }{
			{"only an admin-only scope", "/admin.json", "admin", "https://app.example/cb", "admin"},
			{"single-word scheme not listed", "/scheme.json", "", "myapp:/cb", "redirect_uris"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				id := doc(tc.path, tc.scope, tc.redirect)
				p := e.browser().do("GET", authRequest{clientID: id, redirectURI: tc.redirect, state: "s", verifier: testVerifier, scope: "read"}.url(e.issuer), nil)
				if p.status != http.StatusBadRequest || p.location != "" || !strings.Contains(p.body, tc.rule) {
					t.Fatalf("authorize: status %d location %q, want a 400 page naming %q: %.600s", p.status, p.location, tc.rule, p.body)
				}
				tr := e.postToken(url.Values{"grant_type": {"authorization_code"}, "code": {"x"}, "redirect_uri": {tc.redirect},
					"code_verifier": {testVerifier}, "client_id": {id}}, "", "")
				if tr.Status != 401 || tr.Error != "invalid_client" {
					t.Fatalf("token endpoint: %d %s %q", tr.Status, tr.Error, tr.ErrorDescription)
				}
				if _, err := e.store.GetClient(t.Context(), id); err == nil {
					t.Fatal("a refused document was stored as a client")
				}
			})
		}
		id := doc("/fine.json", "read write", "https://app.example/cb")
		user, pw := e.user("docuser")
		p := e.browser().consentPage(authRequest{clientID: id, redirectURI: "https://app.example/cb", state: "s", verifier: testVerifier, scope: "read"}.url(e.issuer), user, pw)
		mustEqual(t, "consent page for a document within the registration scopes", p.status, 200)

		// Read admin: stored with read only, and an authorization asking
		// for both is shown read alone.
		id = doc("/narrowed.json", "read admin", "https://app.example/cb")
		p = e.browser().consentPage(authRequest{clientID: id, redirectURI: "https://app.example/cb", state: "s", verifier: testVerifier, scope: "read admin"}.url(e.issuer), user, pw)
		if p.status != 200 || !strings.Contains(p.body, "(read)") || strings.Contains(p.body, "(admin)") {
			t.Fatalf("consent page for a document asking for read admin: %d, want read alone: %.1500s", p.status, p.body)
		}
		c, err := e.store.GetClient(t.Context(), id)
		if err != nil || !slices.Equal(c.Metadata.Scopes, []string{"read"}) {
			t.Fatalf("stored document client scopes %v (%v), want [read]", c.Metadata.Scopes, err)
		}
	})
}

// TestMCPDocumentsCountAsRegistrations: the first fetch of a metadata
// document makes a client row, as an RFC 7591 registration does, so it
// counts against the client IP's registration limit; a document already
// stored costs nothing more.
func TestMCPDocumentsCountAsRegistrations(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		ds := newDocServer(t)
		e := startWithDocs(t, open(t), ds, func(o *provider.Options) { o.RegistrationsPerIP = 2 })
		doc := func(path string) string {
			return ds.publish(path, 200, nil, map[string]any{"client_id": ds.url(path), "client_name": "Doc",
				"redirect_uris": []string{"https://app.example/cb"}, "token_endpoint_auth_method": "none"})
		}
		visit := func(id string) page {
			return e.browser().do("GET", authRequest{clientID: id, redirectURI: "https://app.example/cb", state: "s", verifier: testVerifier}.url(e.issuer), nil)
		}
		first, second, third := doc("/one.json"), doc("/two.json"), doc("/three.json")
		for _, id := range []string{first, second, first, second} {
			if p := visit(id); p.status >= 400 {
				t.Fatalf("document %s within the limit: status %d: %.300s", id, p.status, p.body)
			}
		}
		p := visit(third)
		if p.status != http.StatusTooManyRequests || p.location != "" {
			t.Fatalf("third new document from one address: status %d location %q, want a 429 page", p.status, p.location)
		}
		if _, err := e.store.GetClient(t.Context(), third); err == nil {
			t.Fatal("a document past the registration limit was stored as a client")
		}
		tr := e.postToken(url.Values{"grant_type": {"authorization_code"}, "code": {"x"}, "redirect_uri": {"https://app.example/cb"},
			"code_verifier": {testVerifier}, "client_id": {third}}, "", "")
		if tr.Status != http.StatusTooManyRequests {
			t.Fatalf("token endpoint for a document past the limit: %d %s %q", tr.Status, tr.Error, tr.ErrorDescription)
		}
	})
}
