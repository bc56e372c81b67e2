package tests

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/store"
	"github.com/authzd/authz/provider/store/postgres"
	"github.com/authzd/authz/provider/store/postgres/pgtest"
)

// binaries builds cmd/authz and the example resource server once per test
// run; the tests run them as their users would.
var binaries struct {
	once                  sync.Once
	dir, authz, resources string
	err                   error
}

func buildBinaries(t testing.TB) (authzBin, resourceBin string) {
	t.Helper()
	binaries.once.Do(func() {
		dir, err := os.MkdirTemp("", "authz-tests-bin-")
		if err != nil {
			binaries.err = err
			return
		}
		binaries.dir = dir
		_, self, _, _ := runtime.Caller(0)
		root := filepath.Dir(filepath.Dir(self))
		for _, b := range []struct{ out, pkg string }{{"authz", "./cmd/authz"}, {"resource-server", "./examples/resource-server"}} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(dir, b.out), b.pkg)
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				binaries.err = fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
				return
			}
		}
		binaries.authz, binaries.resources = filepath.Join(dir, "authz"), filepath.Join(dir, "resource-server")
	})
	if binaries.err != nil {
		t.Fatal(binaries.err)
	}
	return binaries.authz, binaries.resources
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binaries.dir != "" {
		os.RemoveAll(binaries.dir)
	}
	os.Exit(code)
}

// service is a running example resource server.
type service struct {
	base, resource string
}

// startService runs examples/resource-server for resource (its own URL,
// on the port it listens on) and waits until it listens.
func startService(t testing.TB, issuer string, port int, flags ...string) service {
	t.Helper()
	_, bin := buildBinaries(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	resource := "http://" + addr + "/api"
	args := append([]string{"-issuer", issuer, "-resource", resource, "-addr", addr, "-scope", "read", "-jwks-min-refresh", "100ms"}, flags...)
	cmd := exec.Command(bin, args...)
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	})
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() && strings.Contains(sc.Text(), "listening") {
			ready <- nil
		} else {
			ready <- fmt.Errorf("resource-server did not start: %q", sc.Text())
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("resource-server did not start in time")
	}
	return service{base: "http://" + addr, resource: resource}
}

// call sends GET /api/hello with the Authorization header (if token is
// set) and an optional raw query.
func (s service) call(t testing.TB, token, query string) (int, string, map[string]any) {
	t.Helper()
	target := s.base + "/api/hello"
	if query != "" {
		target += "?" + query
	}
	req, _ := http.NewRequest("GET", target, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	raw, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(raw, &body)
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body
}

// ccToken gets a client_credentials token for resource.
func (e *env) ccToken(t testing.TB, id, secret, resource, scope string) string {
	t.Helper()
	f := url.Values{"grant_type": {"client_credentials"}, "resource": {resource}}
	if scope != "" {
		f.Set("scope", scope)
	}
	tr := e.postToken(f, id, secret)
	mustEqual(t, "client_credentials: "+tr.ErrorDescription, tr.Status, 200)
	return tr.AccessToken
}

func TestMiddlewareEndToEnd(t *testing.T) {
	t.Parallel()
	portA, portB := freePort(t), freePort(t)
	resA, resB := fmt.Sprintf("http://127.0.0.1:%d/api", portA), fmt.Sprintf("http://127.0.0.1:%d/api", portB)
	e := start(t, storeKinds[0].open(t), func(o *provider.Options) {
		o.Resources = []string{resA, resB}
	})
	a := startService(t, e.issuer, portA)
	b := startService(t, e.issuer, portB)
	svc, secret := e.client(store.ClientMetadata{GrantTypes: []string{oauth.GrantClientCredentials}, Scopes: []string{"read", "write"}})
	tokA := e.ccToken(t, svc.ID, secret, resA, "read")

	t.Run("a token for A works at A", func(t *testing.T) {
		status, _, body := a.call(t, tokA, "")
		mustEqual(t, "status", status, 200)
		mustEqual(t, "client_id seen by the handler", body["client_id"], any(svc.ID))
	})
	t.Run("and is rejected at B", func(t *testing.T) {
		status, wa, _ := b.call(t, tokA, "")
		mustEqual(t, "status", status, 401)
		if !strings.Contains(wa, `error="invalid_token"`) || !strings.Contains(wa, "audience") {
			t.Fatalf("WWW-Authenticate %q", wa)
		}
	})
	t.Run("missing scope is 403 naming the scope", func(t *testing.T) {
		status, wa, _ := a.call(t, e.ccToken(t, svc.ID, secret, resA, "write"), "")
		mustEqual(t, "status", status, 403)
		if !strings.Contains(wa, `error="insufficient_scope"`) || !strings.Contains(wa, `scope="read"`) {
			t.Fatalf("WWW-Authenticate %q", wa)
		}
	})
	t.Run("token in the query string is ignored", func(t *testing.T) {
		status, wa, _ := a.call(t, "", "access_token="+url.QueryEscape(tokA))
		mustEqual(t, "status", status, 401)
		if strings.Contains(wa, "error=") || !strings.Contains(wa, "resource_metadata=") {
			t.Fatalf("WWW-Authenticate %q", wa)
		}
	})
	t.Run("expired", func(t *testing.T) {
		// The service runs on the real clock; issue a token whose 15
		// minutes ran out five minutes ago.
		e.clock.Advance(-20 * time.Minute)
		old := e.ccToken(t, svc.ID, secret, resA, "read")
		e.clock.Advance(20 * time.Minute)
		status, wa, _ := a.call(t, old, "")
		mustEqual(t, "status", status, 401)
		if !strings.Contains(wa, `error="invalid_token"`) || !strings.Contains(wa, "expired") {
			t.Fatalf("WWW-Authenticate %q", wa)
		}
	})

	parts := strings.Split(tokA, ".")
	forge := func(header string, sign func(input string) string) string {
		input := base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + parts[1]
		return input + "." + sign(input)
	}
	hdr, _ := decodeSegment(parts[0])
	var h map[string]any
	_ = json.Unmarshal(hdr, &h)
	kid, _ := h["kid"].(string)
	jwks := getJSON(t, e.issuer+provider.PathJWKS)
	pub, _ := json.Marshal(jwks["keys"].([]any)[0])
	raw, _ := decodeSegment(parts[1])
	var cl map[string]any
	_ = json.Unmarshal(raw, &cl)
	cl["scope"] = "read write admin"
	forgedPayload, _ := json.Marshal(cl)

	attacks := []struct{ name, token string }{
		{"tampered payload", parts[0] + "." + base64.RawURLEncoding.EncodeToString(forgedPayload) + "." + parts[2]},
		{"alg none", forge(`{"alg":"none","typ":"at+jwt","kid":"`+kid+`"}`, func(string) string { return "" })},
		{"HS256 keyed with the public key", forge(`{"alg":"HS256","typ":"at+jwt","kid":"`+kid+`"}`, func(in string) string {
			m := hmac.New(sha256.New, pub)
			m.Write([]byte(in))
			return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
		})},
	}
	for _, at := range attacks {
		t.Run(at.name, func(t *testing.T) {
			status, wa, _ := a.call(t, at.token, "")
			mustEqual(t, "status", status, 401)
			if !strings.Contains(wa, `error="invalid_token"`) {
				t.Fatalf("WWW-Authenticate %q", wa)
			}
		})
	}
}

func getJSON(t testing.TB, target string) map[string]any {
	t.Helper()
	resp, err := http.Get(target)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v", target, resp.StatusCode, err)
	}
	return m
}

var resourceMetadataRe = regexp.MustCompile(`resource_metadata="([^"]+)"`)

// TestMCPClientDiscoversFromThe401 walks what an MCP client does: call the
// API, follow resource_metadata to the RFC 9728 document, find the
// authorization server, register, authorize with resource = the API's URL,
// and call again.
func TestMCPClientDiscoversFromThe401(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	res := fmt.Sprintf("http://127.0.0.1:%d/api", port)
	e := start(t, storeKinds[0].open(t), func(o *provider.Options) {
		o.Resources = []string{res}
		o.Now = time.Now
	})
	s := startService(t, e.issuer, port)

	status, wa, _ := s.call(t, "", "")
	mustEqual(t, "status", status, 401)
	m := resourceMetadataRe.FindStringSubmatch(wa)
	if m == nil || !strings.Contains(wa, `scope="read"`) {
		t.Fatalf("WWW-Authenticate %q", wa)
	}
	mustEqual(t, "path-inserted metadata URL", m[1], fmt.Sprintf("http://127.0.0.1:%d/.well-known/oauth-protected-resource/api", port))
	prm := getJSON(t, m[1])
	mustEqual(t, "resource", prm["resource"], any(res))
	// Clients that try the root location first find the same document.
	mustEqual(t, "root document", getJSON(t, fmt.Sprintf("http://127.0.0.1:%d/.well-known/oauth-protected-resource", port))["resource"], any(res))
	as := prm["authorization_servers"].([]any)[0].(string)
	mustEqual(t, "authorization server", as, e.issuer)
	scope := prm["scopes_supported"].([]any)[0].(string)

	meta := getJSON(t, as+"/.well-known/oauth-authorization-server")
	if !strings.Contains(fmt.Sprint(meta["code_challenge_methods_supported"]), "S256") {
		t.Fatalf("metadata %v", meta)
	}
	redirect := fmt.Sprintf("http://127.0.0.1:%d/callback", freePort(t))
	code, reg, _ := jsonCall(t, "POST", meta["registration_endpoint"].(string), "", map[string]any{
		"client_name": "MCP host", "application_type": "native", "token_endpoint_auth_method": "none",
		"redirect_uris": []string{"http://127.0.0.1/callback"}, "grant_types": []string{"authorization_code", "refresh_token"},
	})
	mustEqual(t, "register", code, 201)
	clientID := reg["client_id"].(string)
	user, pw := e.user("mcp-user")
	c := e.codeFor(e.browser(), authRequest{clientID: clientID, redirectURI: redirect, state: "s", verifier: testVerifier, scope: scope, resources: []string{res}}, user, pw)
	tr := postForm(t, meta["token_endpoint"].(string), exchangeForm(c, redirect, testVerifier, url.Values{"client_id": {clientID}, "resource": {res}}), "", "")
	mustEqual(t, "exchange", tr.Status, 200)
	status, _, body := s.call(t, tr.AccessToken, "")
	mustEqual(t, "status with the token", status, 200)
	mustEqual(t, "client", body["client_id"], any(clientID))
}

// TestMiddlewarePicksUpRotatedKey rotates the signing key with the real
// `authz keys rotate` against the server's PostgreSQL: the service accepts
// tokens signed with the new key without a restart.
func TestMiddlewarePicksUpRotatedKey(t *testing.T) {
	t.Parallel()
	authzBin, _ := buildBinaries(t)
	dbURL := pgtest.URL(t)
	pool, err := pgxpool.New(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	encKey := make([]byte, 32)
	_, _ = rand.Read(encKey)
	port := freePort(t)
	res := fmt.Sprintf("http://127.0.0.1:%d/api", port)
	e := start(t, postgres.New(pool), func(o *provider.Options) {
		o.Resources = []string{res}
		o.Now = time.Now
		o.EncryptionKey = encKey
		o.KeyRefreshInterval = 50 * time.Millisecond
	})
	s := startService(t, e.issuer, port)
	svc, secret := e.client(store.ClientMetadata{GrantTypes: []string{oauth.GrantClientCredentials}, Scopes: []string{"read"}})
	before := e.ccToken(t, svc.ID, secret, res, "read")
	if status, _, _ := s.call(t, before, ""); status != 200 {
		t.Fatalf("before rotation: %d", status)
	}

	cmd := exec.Command(authzBin, "keys", "rotate")
	cmd.Env = append(os.Environ(), "AUTHZ_DATABASE_URL="+dbURL, "AUTHZ_ENCRYPTION_KEY="+base64.StdEncoding.EncodeToString(encKey), "AUTHZ_ISSUER="+e.issuer,
		"AUTHZ_KEY_RELOAD_INTERVAL=50ms") // as the server: the new key signs after 2 × 50ms
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("authz keys rotate: %v\n%s", err, out)
	}
	time.Sleep(250 * time.Millisecond) // the key activates after 100ms; the server re-reads every 50ms
	after := e.ccToken(t, svc.ID, secret, res, "read")
	if kidOf(t, after) == kidOf(t, before) {
		t.Fatal("the server did not switch to the new key")
	}
	// The service fetched the key set a moment ago; its rate limit is
	// 100ms here, so wait that out and the unknown kid triggers a fetch.
	time.Sleep(150 * time.Millisecond)
	if status, wa, _ := s.call(t, after, ""); status != 200 {
		t.Fatalf("token signed with the rotated key: %d %s", status, wa)
	}
	// The old key stays published, so its tokens still work.
	if status, _, _ := s.call(t, before, ""); status != 200 {
		t.Fatalf("token signed with the old key: %d", status)
	}
}

func kidOf(t testing.TB, jwt string) string {
	t.Helper()
	raw, err := decodeSegment(strings.Split(jwt, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	_ = json.Unmarshal(raw, &h)
	return h["kid"].(string)
}

// TestMiddlewareIntrospectionSeesRevocation runs the service in
// introspection mode: after the client revokes its token, the service
// refuses it within the introspection cache bound.
func TestMiddlewareIntrospectionSeesRevocation(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	res := fmt.Sprintf("http://127.0.0.1:%d/api", port)
	e := start(t, storeKinds[1].open(t), func(o *provider.Options) {
		o.Resources = []string{res}
		o.Now = time.Now
	})
	rs, rsSecret := e.resourceServer(store.ClientMetadata{Name: "resource server"}, res)
	const bound = time.Second
	s := startService(t, e.issuer, port, "-client-id", rs.ID, "-client-secret", rsSecret, "-check-revocation", "-introspection-cache", bound.String())

	app, appSecret, redirect := e.loopbackClient(false)
	user, pw := e.user("revoker")
	code := e.codeFor(e.browser(), authRequest{clientID: app.ID, redirectURI: redirect, state: "s", verifier: testVerifier, scope: "read", resources: []string{res}}, user, pw)
	tr := e.postToken(exchangeForm(code, redirect, testVerifier, nil), app.ID, appSecret)
	mustEqual(t, "exchange", tr.Status, 200)

	if status, _, _ := s.call(t, tr.AccessToken, ""); status != 200 {
		t.Fatalf("before revocation: %d", status)
	}
	// A refresh token is not an access token, even though it is active.
	if status, wa, _ := s.call(t, tr.RefreshToken, ""); status != 401 || !strings.Contains(wa, "invalid_token") {
		t.Fatalf("refresh token as bearer: %d %s", status, wa)
	}

	rv := postForm(t, e.issuer+provider.PathRevoke, url.Values{"token": {tr.AccessToken}}, app.ID, appSecret)
	mustEqual(t, "revoke", rv.Status, 200)
	revokedAt := time.Now()
	for {
		status, wa, _ := s.call(t, tr.AccessToken, "")
		if status == 401 && strings.Contains(wa, "invalid_token") {
			break
		}
		if status != 200 {
			t.Fatalf("unexpected %d %s", status, wa)
		}
		if time.Since(revokedAt) > bound+500*time.Millisecond {
			t.Fatalf("the revoked token still works %v after revocation (cache bound %v)", time.Since(revokedAt), bound)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
