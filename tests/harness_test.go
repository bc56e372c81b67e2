package tests

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/authzd/authz/internal/testclock"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/pkce"
	"github.com/authzd/authz/provider/store"
	"github.com/authzd/authz/provider/store/memory"
	"github.com/authzd/authz/provider/store/postgres"
	"github.com/authzd/authz/provider/store/postgres/pgtest"
)

// clock is the fake clock shared by a server and its test.
type clock = testclock.Clock

func newClock() *clock {
	return testclock.New(time.Now().UTC().Truncate(time.Second))
}

// storeKinds are the stores every end-to-end test runs on.
var storeKinds = []struct {
	name string
	open func(t testing.TB) store.Store
}{
	{"memory", func(t testing.TB) store.Store { return memory.New() }},
	{"postgres", func(t testing.TB) store.Store { return postgres.New(pgtest.Pool(t)) }},
}

// eachStore runs f once per store kind, in parallel.
func eachStore(t *testing.T, f func(t *testing.T, open func(t testing.TB) store.Store)) {
	t.Helper()
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			f(t, k.open)
		})
	}
}

// env is a running authorization server with its store and clock.
type env struct {
	t      testing.TB
	srv    *provider.Server
	http   *httptest.Server
	store  store.Store
	clock  *clock
	issuer string
}

// start runs a server on a real loopback listener. mutate adjusts the
// options before New (the issuer is already set).
func start(t testing.TB, st store.Store, mutate func(o *provider.Options)) *env {
	t.Helper()
	ts := httptest.NewUnstartedServer(nil)
	issuer := "http://" + ts.Listener.Addr().String()
	clk := newClock()
	o := provider.Options{
		Issuer:    issuer,
		Store:     st,
		Scopes:    []string{"read", "write", "admin"},
		Resources: []string{issuer + "/api", "https://mcp.example.com/mcp", "https://other.example.com"},
		Now:       clk.Now,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		// Every test registers from one loopback address; the registration
		// limit's own test (abuse_test.go) sets it back to the default.
		RegistrationsPerIP: 100_000,
		// Zero is "no grace window"; the default is set explicitly, as
		// cmd/authz does.
		RefreshGrace: provider.DefaultRefreshGrace,
	}
	if mutate != nil {
		mutate(&o)
	}
	srv, err := provider.New(context.Background(), o)
	if err != nil {
		t.Fatalf("provider.New: %v", err)
	}
	ts.Config.Handler = srv.Handler()
	ts.Start()
	t.Cleanup(ts.Close)
	return &env{t: t, srv: srv, http: ts, store: st, clock: clk, issuer: issuer}
}

// user creates a user with a password and returns (username, password).
func (e *env) user(name string) (string, string) {
	e.t.Helper()
	pw := "pw-" + name + "-correct-horse"
	u, err := provider.NewUser(name, pw, provider.UserProfile{}, e.clock.Now(), rand.Reader)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.store.CreateUser(context.Background(), u); err != nil {
		e.t.Fatal(err)
	}
	return name, pw
}

// client creates a client as an administrator would; public clients get no
// secret.
func (e *env) client(m store.ClientMetadata) (store.Client, string) {
	e.t.Helper()
	if m.Name == "" {
		m.Name = "Test app"
	}
	if m.TokenEndpointAuthMethod == "" {
		m.TokenEndpointAuthMethod = oauth.AuthClientSecretBasic
	}
	if m.GrantTypes == nil {
		m.GrantTypes = []string{oauth.GrantAuthorizationCode, oauth.GrantRefreshToken}
	}
	if m.ApplicationType == "" {
		m.ApplicationType = provider.ApplicationTypeFor(m.RedirectURIs)
	}
	c, secret, err := provider.NewClient(m, e.clock.Now(), rand.Reader)
	if err != nil {
		e.t.Fatalf("NewClient: %v", err)
	}
	c.Trust = store.TrustAdmin // as `authz client create` makes it
	if err := e.store.CreateClient(context.Background(), c); err != nil {
		e.t.Fatal(err)
	}
	return c, secret
}

// resourceServer creates what `authz client create --introspect
// --resource R ...` makes: a confidential client that may introspect access
// tokens whose audience includes one of resources (default: every resource
// the server is configured with).
func (e *env) resourceServer(m store.ClientMetadata, resources ...string) (store.Client, string) {
	e.t.Helper()
	if m.GrantTypes == nil {
		m.GrantTypes = []string{oauth.GrantClientCredentials}
	}
	if len(resources) == 0 {
		resources = e.srv.Options().Resources
	}
	m.Introspect, m.Resources = true, resources
	return e.client(m)
}

// browser is a user agent with cookies that does not follow redirects, so
// tests see every hop.
type browser struct {
	t    testing.TB
	e    *env
	http *http.Client
	// header is added to every request (X-Forwarded-For, Sec-Fetch-Site).
	header http.Header
}

func (e *env) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: e.t, e: e, http: &http.Client{
		// Its own connection pool: httptest.Server.Close (any parallel
		// test's) closes http.DefaultTransport's idle connections, which
		// can break a request that just picked one ("CloseIdleConnections
		// called").
		Transport:     http.DefaultTransport.(*http.Transport).Clone(),
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       30 * time.Second,
	}}
}

type page struct {
	status   int
	location string
	body     string
	header   http.Header
}

func (b *browser) do(method, target string, form url.Values) page {
	b.t.Helper()
	if strings.HasPrefix(target, "/") {
		target = b.e.issuer + target
	}
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, target, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range b.header {
		req.Header[k] = v
	}
	resp, err := b.http.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return page{status: resp.StatusCode, location: resp.Header.Get("Location"), body: string(raw), header: resp.Header}
}

var hiddenRe = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

// formFields returns the hidden inputs of a page.
func formFields(body string) url.Values {
	v := url.Values{}
	for _, m := range hiddenRe.FindAllStringSubmatch(body, -1) {
		v.Add(html.UnescapeString(m[1]), html.UnescapeString(m[2]))
	}
	return v
}

// issuerPath is the path of the server's issuer ("" unless a test gave it
// one): the prefix of its pages. e.issuer stays the origin, which the
// pages' relative redirects (already prefixed) are resolved against.
func (e *env) issuerPath() string {
	if e.srv == nil {
		return ""
	}
	u, err := url.Parse(e.srv.Options().Issuer)
	if err != nil {
		e.t.Fatal(err)
	}
	return u.Path
}

// authRequest is the parameters of an authorization request.
type authRequest struct {
	clientID, redirectURI, state, scope, verifier string
	resources                                     []string
	extra                                         url.Values
}

func (a authRequest) url(issuer string) string {
	q := url.Values{
		"response_type": {"code"}, "client_id": {a.clientID}, "state": {a.state},
		"code_challenge": {pkce.ChallengeS256(a.verifier)}, "code_challenge_method": {"S256"},
	}
	if a.redirectURI != "" {
		q.Set("redirect_uri", a.redirectURI)
	}
	if a.scope != "" {
		q.Set("scope", a.scope)
	}
	for _, r := range a.resources {
		q.Add("resource", r)
	}
	for k, v := range a.extra {
		q[k] = v
	}
	return issuer + provider.PathAuthorize + "?" + q.Encode()
}

const testVerifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-test-verifier"

// authorize drives a whole browser authorization: sign in if needed,
// consent if asked, and returns the final redirect to the client.
func (b *browser) authorize(authURL, username, password string) *url.URL {
	b.t.Helper()
	p := b.do("GET", authURL, nil)
	for i := 0; i < 6; i++ {
		switch {
		case p.status == http.StatusSeeOther && strings.Contains(p.location, provider.PathLogin):
			p = b.do("GET", p.location, nil)
		case p.status == http.StatusOK && strings.Contains(p.body, `name="password"`):
			f := formFields(p.body)
			f.Set("username", username)
			f.Set("password", password)
			p = b.do("POST", b.e.issuerPath()+provider.PathLogin, f)
		case p.status == http.StatusSeeOther && strings.Contains(p.location, provider.PathAuthorize):
			p = b.do("GET", p.location, nil)
		case p.status == http.StatusOK && strings.Contains(p.body, `name="decision"`):
			f := formFields(p.body)
			f.Set("decision", "allow")
			p = b.do("POST", b.e.issuerPath()+provider.PathAuthorize, f)
		case p.status == http.StatusFound:
			u, err := url.Parse(p.location)
			if err != nil {
				b.t.Fatalf("bad redirect %q", p.location)
			}
			return u
		default:
			b.t.Fatalf("authorization stuck at status %d location %q body %.400s", p.status, p.location, p.body)
		}
	}
	b.t.Fatal("authorization did not finish")
	return nil
}

// consentPage starts an authorization in a fresh session, signs in and
// returns the consent page it lands on.
func (b *browser) consentPage(authURL, username, password string) page {
	b.t.Helper()
	p := b.do("GET", authURL, nil)
	p = b.do("GET", p.location, nil)
	f := formFields(p.body)
	f.Set("username", username)
	f.Set("password", password)
	p = b.do("POST", b.e.issuerPath()+provider.PathLogin, f)
	return b.do("GET", p.location, nil)
}

// tokenResp is a decoded token endpoint answer.
type tokenResp struct {
	Status           int
	Header           http.Header
	AccessToken      string `json:"access_token"`
	TokenType        string `json:"token_type"`
	ExpiresIn        int    `json:"expires_in"`
	RefreshToken     string `json:"refresh_token"`
	IDToken          string `json:"id_token"`
	Scope            string `json:"scope"`
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
}

// postToken calls the token endpoint; basic sets client_secret_basic.
func (e *env) postToken(form url.Values, basicID, basicSecret string) tokenResp {
	e.t.Helper()
	return postForm(e.t, e.issuer+provider.PathToken, form, basicID, basicSecret)
}

// testClient bounds every request a test makes: a server that hangs fails
// that test instead of stalling the whole run until go test's timeout.
var testClient = &http.Client{Timeout: time.Minute}

func postForm(t testing.TB, target string, form url.Values, basicID, basicSecret string) tokenResp {
	t.Helper()
	req, _ := http.NewRequest("POST", target, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basicID != "" {
		req.SetBasicAuth(url.QueryEscape(basicID), url.QueryEscape(basicSecret))
	}
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", target, err)
	}
	defer resp.Body.Close()
	var tr tokenResp
	raw, _ := io.ReadAll(resp.Body)
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &tr); err != nil {
			t.Fatalf("token endpoint answered non-JSON (%d): %s", resp.StatusCode, raw)
		}
	}
	tr.Status, tr.Header = resp.StatusCode, resp.Header
	return tr
}

// claims decodes a JWT's payload without verifying it (tests verify
// signatures separately, through the JWKS).
func claims(t testing.TB, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWS: %q", jwt)
	}
	raw, err := decodeSegment(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func audience(t testing.TB, jwt string) []string {
	t.Helper()
	raw, ok := claims(t, jwt)["aud"].([]any)
	if !ok {
		t.Fatalf("aud is not an array in %v", claims(t, jwt))
	}
	var out []string
	for _, a := range raw {
		out = append(out, a.(string))
	}
	return out
}

// freePort returns a port nothing listens on (for loopback redirect URIs).
func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func mustEqual[T comparable](t testing.TB, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Fatalf("%s = %v, want %v", what, got, want)
	}
}
