package tests

// The two JavaScript clients real users run against authz, run for real:
// the MCP TypeScript SDK (its Streamable HTTP client and auth(), what MCP
// hosts use) and oauth4webapi.
// Their scripts are in tests/js (exact versions pinned in package.json and
// package-lock.json); scripts/ensure-node-deps.sh installs them, and `make
// test` requires them (AUTHZ_TEST_REQUIRE_NODE=1). Each script talks to
// its test over a line protocol (tests/js/lib.mjs): JSON events on stdout,
// and for each authorization the test signs in and answers in the browser
// (browser.authorize) and hands the redirect back on stdin.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authzd/authz/middleware"
	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/store"
)

// jsDir holds the client scripts and their node_modules, relative to this
// package (go test runs in it).
const jsDir = "js"

// jsScriptTimeout bounds one script run; the node process is killed then.
const jsScriptTimeout = 45 * time.Second

// requireNode returns the node binary, or skips (fails, with
// AUTHZ_TEST_REQUIRE_NODE=1 as under make test) when node or the pinned
// packages are not installed.
func requireNode(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	missing := ""
	if err != nil {
		missing = "node is not on PATH"
	} else if _, err := os.Stat(filepath.Join(jsDir, "node_modules", ".package-lock.json")); err != nil {
		missing = "tests/js/node_modules is not installed"
	}
	if missing != "" {
		if os.Getenv("AUTHZ_TEST_REQUIRE_NODE") == "1" {
			t.Fatalf("%s (AUTHZ_TEST_REQUIRE_NODE=1): run scripts/ensure-node-deps.sh (npm ci in tests/js; as root it installs Debian's nodejs and npm when node is missing)", missing)
		}
		t.Skipf("%s; scripts/ensure-node-deps.sh installs it, and `make test` requires it", missing)
	}
	return node
}

// jsWorld is an authorization server and an MCP server it issues tokens
// for, at http://127.0.0.1:PORT/mcp, protected by middleware/ the way a
// downstream service uses it: RFC 9728 metadata at the path-inserted and
// root locations, Require("read"), and revocation checked by introspection
// (no cache, so a revoked token is refused at once).
type jsWorld struct {
	*env
	iss       string // the issuer (the env's issuer is its origin)
	resource  string
	validator *middleware.Validator
	docs      *docServer
	username  string
	password  string
}

func startJSWorld(t *testing.T, st store.Store, issuerPath string) *jsWorld {
	t.Helper()
	mcp := httptest.NewUnstartedServer(nil)
	resource := "http://" + mcp.Listener.Addr().String() + "/mcp"
	docs := newDocServer(t)
	e := startWithDocs(t, st, docs, func(o *provider.Options) {
		o.Resources = append(o.Resources, resource)
		o.Issuer += issuerPath
	})

	rs, rsSecret := e.resourceServer(store.ClientMetadata{Name: "MCP server"}, resource)
	v, err := middleware.New(middleware.Config{
		Issuer: e.srv.Options().Issuer, Resource: resource, ScopesSupported: []string{"read"},
		ClientID: rs.ID, ClientSecret: rsSecret, CheckRevocation: true, CacheSize: -1,
		Now: e.clock.Now,
		// The middleware's log is not what these tests check (its
		// own tests do: a client that hangs up mid-introspection, as the
		// SDK's Client.close does, is a DEBUG line, not a WARN).
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	for _, p := range v.MetadataPaths() {
		mux.Handle(p, v.ProtectedResourceMetadata())
	}
	mux.Handle("/mcp", v.Require("read")(http.HandlerFunc(serveMCP)))
	mcp.Config.Handler = mux
	mcp.Start()
	t.Cleanup(mcp.Close)
	user, pw := e.user("js-user")
	return &jsWorld{env: e, iss: e.srv.Options().Issuer, resource: resource, validator: v, docs: docs, username: user, password: pw}
}

// serveMCP is the MCP server behind the middleware: just enough of the
// Streamable HTTP transport (MCP 2025-11-25) for the SDK's Client to
// connect and call one tool, whoami, which answers what the middleware
// found in the token. A GET asking for an event stream (the optional SSE
// stream) is 405, as the transport allows; any other GET (oauth4webapi's
// protected resource request) gets whoami's answer as JSON.
func serveMCP(w http.ResponseWriter, r *http.Request) {
	tok, _ := middleware.TokenFromContext(r.Context())
	whoami := map[string]any{"sub": tok.Subject, "client_id": tok.ClientID, "aud": tok.Audience, "scope": tok.Scopes}
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method == http.MethodGet && !strings.Contains(r.Header.Get("Accept"), "text/event-stream"):
		_ = json.NewEncoder(w).Encode(whoami)
		return
	case r.Method != http.MethodPost:
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	var req struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
		Params struct {
			ProtocolVersion string `json:"protocolVersion"`
			Name            string `json:"name"`
		} `json:"params"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if req.ID == nil { // a notification
		w.WriteHeader(http.StatusAccepted)
		return
	}
	reply := map[string]any{"jsonrpc": "2.0", "id": req.ID}
	switch {
	case req.Method == "initialize":
		reply["result"] = map[string]any{"protocolVersion": req.Params.ProtocolVersion, "capabilities": map[string]any{"tools": map[string]any{}},
			"serverInfo": map[string]any{"name": "authz-test-mcp", "version": "1"}}
	case req.Method == "tools/list":
		reply["result"] = map[string]any{"tools": []any{map[string]any{"name": "whoami", "inputSchema": map[string]any{"type": "object"}}}}
	case req.Method == "tools/call" && req.Params.Name == "whoami":
		text, _ := json.Marshal(whoami)
		reply["result"] = map[string]any{"content": []any{map[string]any{"type": "text", "text": string(text)}}}
	default:
		reply["error"] = map[string]any{"code": -32601, "message": "method not found"}
	}
	_ = json.NewEncoder(w).Encode(reply)
}

// answer plays the user for one authorization a script asks for: "allow"
// signs in and allows, "deny" signs in and denies on the consent page,
// anything else signs in and returns wherever the server redirects.
func (w *jsWorld) answer(t *testing.T, step, authURL string) *url.URL {
	t.Helper()
	b := w.browser()
	b.t = t
	if step != "deny" {
		return b.authorize(authURL, w.username, w.password)
	}
	p := b.consentPage(authURL, w.username, w.password)
	f := formFields(p.body)
	if !strings.Contains(p.body, `name="decision"`) {
		t.Fatalf("deny: no consent page (status %d): %.400s", p.status, p.body)
	}
	f.Set("decision", "deny")
	p = b.do("POST", w.issuerPath()+provider.PathAuthorize, f)
	mustEqual(t, "deny: status", p.status, http.StatusFound)
	u, err := url.Parse(p.location)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// jsRun is what one script run emitted, by event name, and the
// authorization URLs it sent the browser to, by step.
type jsRun struct {
	t      *testing.T
	events map[string][]map[string]any
	auth   map[string]*url.URL
}

// one is the only event called name.
func (r jsRun) one(name string) map[string]any {
	r.t.Helper()
	if n := len(r.events[name]); n != 1 {
		r.t.Fatalf("script emitted %d %q events, want 1: %v", n, name, r.events)
	}
	return r.events[name][0]
}

// str is field k of event ev as a string ("" when absent or not a string).
func str(ev map[string]any, k string) string {
	s, _ := ev[k].(string)
	return s
}

// runJS runs tests/js/<script> with cfg, answering its authorizations in
// the browser, and fails the test when it does not exit 0 within
// jsScriptTimeout. The process is always killed and waited for.
func (w *jsWorld) runJS(t *testing.T, node, script string, cfg map[string]any) jsRun {
	t.Helper()
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), jsScriptTimeout)
	cmd := exec.CommandContext(ctx, node, script, string(raw))
	cmd.Dir = jsDir
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", script, err)
	}
	var once sync.Once
	var waitErr error
	wait := func() error {
		once.Do(func() { waitErr = cmd.Wait() })
		return waitErr
	}
	t.Cleanup(func() { cancel(); _ = wait() })

	run := jsRun{t: t, events: map[string][]map[string]any{}, auth: map[string]*url.URL{}}
	var transcript strings.Builder
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		transcript.WriteString(line + "\n")
		var ev map[string]any
		if json.Unmarshal([]byte(line), &ev) != nil || str(ev, "event") == "" {
			continue // not ours: a library printing to stdout
		}
		name := str(ev, "event")
		if name != "authorize" {
			run.events[name] = append(run.events[name], ev)
			continue
		}
		step := str(ev, "step")
		u, err := url.Parse(str(ev, "url"))
		if err != nil {
			t.Fatalf("%s: authorization URL %q: %v", script, str(ev, "url"), err)
		}
		run.auth[step] = u
		if _, err := io.WriteString(stdin, w.answer(t, step, u.String()).String()+"\n"); err != nil {
			t.Fatalf("%s: answering step %s: %v\nstderr:\n%s", script, step, err, stderr.String())
		}
	}
	_ = stdin.Close()
	if err := wait(); err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Fatalf("%s did not finish within %v\nstdout:\n%s\nstderr:\n%s", script, jsScriptTimeout, transcript.String(), stderr.String())
		}
		t.Fatalf("%s failed: %v\nstdout:\n%s\nstderr:\n%s", script, err, transcript.String(), stderr.String())
	}
	if stderr.Len() > 0 {
		t.Logf("%s stderr (warnings):\n%s", script, stderr.String())
	}
	return run
}

// TestMCPSDKClient runs the MCP TypeScript SDK as an MCP host does: its
// Client and Streamable HTTP transport meet the MCP server's 401, whose
// RFC 9728 resource_metadata leads the SDK's own auth() (with an in-memory
// OAuthClientProvider) to authz's RFC 8414 metadata; it registers (RFC
// 7591: public, client_secret_post or client_secret_basic) or presents a
// Client ID Metadata Document URL, authorizes with PKCE S256 and resource
// = the MCP URL; finishAuth() exchanges the code, a second auth()
// refreshes, and both tokens call a tool through the middleware.
func TestMCPSDKClient(t *testing.T) {
	t.Parallel()
	node := requireNode(t)
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		worlds := map[string]*jsWorld{}
		for _, tc := range []struct {
			name, method string
			document     bool
			issuerPath   string
		}{
			{"registered public client", oauth.AuthNone, false, ""},
			{"registered client_secret_post", oauth.AuthClientSecretPost, false, ""},
			{"registered client_secret_basic", oauth.AuthClientSecretBasic, false, ""},
			{"client ID metadata document", oauth.AuthNone, true, ""},
			// A tenant's issuer: the SDK finds its metadata from the
			// path (RFC 8414 §3.1 path-inserted, or OpenID's locations).
			{"issuer with a path", oauth.AuthNone, false, "/tenant"},
		} {
			if worlds[tc.issuerPath] == nil {
				worlds[tc.issuerPath] = startJSWorld(t, open(t), tc.issuerPath)
			}
			w := worlds[tc.issuerPath]
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				redirect := fmt.Sprintf("http://127.0.0.1:%d/callback", freePort(t))
				cfg := map[string]any{"resource": w.resource, "redirect": redirect, "auth_method": tc.method}
				docPath := "/hosts/" + strings.ReplaceAll(tc.name, " ", "-") + ".json"
				if tc.document {
					// As Claude Code publishes it: a port-less loopback
					// redirect, used with whatever port the host listens on.
					cfg["client_metadata_url"] = w.docs.publish(docPath, 200, nil, map[string]any{
						"client_id": w.docs.url(docPath), "client_name": "authz test host (MCP SDK)",
						"redirect_uris": []string{"http://127.0.0.1/callback"}, "token_endpoint_auth_method": "none",
						"grant_types": []string{"authorization_code", "refresh_token"}, "response_types": []string{"code"},
					})
				}
				run := w.runJS(t, node, "mcp-client.mjs", cfg)

				ch := run.one("challenge")
				mustEqual(t, "401 without a token", ch["status"], any(float64(401)))
				mustEqual(t, "resource_metadata in the challenge", str(ch, "resource_metadata"), w.validator.MetadataURL())
				mustEqual(t, "scope in the challenge", str(ch, "scope"), "read")

				d := run.one("discovered")
				mustEqual(t, "authorization server found from the resource", str(d, "authorization_server"), w.iss)
				mustEqual(t, "issuer in RFC 8414 metadata", str(d, "issuer"), w.iss)
				clientID := str(d, "client_id")
				c, err := w.store.GetClient(t.Context(), clientID)
				if err != nil {
					t.Fatalf("client %q the SDK uses is not in the store: %v", clientID, err)
				}
				if tc.document {
					mustEqual(t, "client_id", clientID, w.docs.url(docPath))
					mustEqual(t, "trust", c.Trust, store.TrustMetadataDocument)
					if w.docs.fetches(docPath) == 0 {
						t.Fatal("the metadata document was never fetched")
					}
				} else {
					mustEqual(t, "trust", c.Trust, store.TrustRegistered)
				}
				mustEqual(t, "registered auth method", c.Metadata.TokenEndpointAuthMethod, tc.method)
				mustEqual(t, "client secret issued", d["client_secret_issued"], any(tc.method != oauth.AuthNone && !tc.document))

				q := run.auth["allow"].Query()
				mustEqual(t, "resource sent", q.Get("resource"), w.resource)
				mustEqual(t, "code_challenge_method", q.Get("code_challenge_method"), "S256")
				mustEqual(t, "client_id sent", q.Get("client_id"), clientID)
				mustEqual(t, "iss in the redirect (RFC 9207)", str(run.one("callback"), "iss"), w.iss)

				first, next := run.one("tokens"), run.one("refreshed")
				for what, tok := range map[string]map[string]any{"first": first, "refreshed": next} {
					at := str(tok, "access_token")
					if aud := audience(t, at); !slices.Equal(aud, []string{w.resource}) {
						t.Fatalf("%s access token aud = %v, want [%s]", what, aud, w.resource)
					}
					mustEqual(t, what+" access token client_id", claims(t, at)["client_id"], any(clientID))
					if _, err := w.validator.Validate(t.Context(), at); err != nil {
						t.Fatalf("the MCP server's middleware refuses the %s access token: %v", what, err)
					}
				}
				if str(first, "refresh_token") == "" || str(next, "refresh_token") == "" || str(next, "refresh_token") == str(first, "refresh_token") {
					t.Fatalf("refresh tokens %q then %q: want one, rotated", str(first, "refresh_token"), str(next, "refresh_token"))
				}
				if str(next, "access_token") == str(first, "access_token") {
					t.Fatal("the second auth() did not get a new access token")
				}

				for _, ev := range []string{"resource", "resource_after_refresh"} {
					who, _ := run.one(ev)["whoami"].(map[string]any)
					mustEqual(t, ev+": client_id the MCP server saw", who["client_id"], any(clientID))
					if aud := anyOrStrings(who["aud"]); !slices.Equal(aud, []string{w.resource}) {
						t.Fatalf("%s: audience the MCP server saw %v", ev, aud)
					}
				}
			})
		}
	})
}

// TestOAuth4WebAPIClient runs oauth4webapi, a certified OAuth client
// library, through everything a web app does with authz: discovery from
// the resource (RFC 9728) and of authz (RFC 8414), registration of a
// confidential client (RFC 7591), the user's Deny and an unknown scope as
// error redirects that validateAuthResponse checks for iss (RFC 9207) and
// state, the code flow with PKCE and resource (RFC 8707), the access token
// validated as an RFC 9068 JWT by the library, refresh, introspection
// (RFC 7662) and revocation (RFC 7009), after which the MCP server's
// middleware, introspection and the token endpoint all refuse the tokens;
// then an OpenID Connect sign-in, whose ID token (nonce included) and
// UserInfo answer the library validates.
func TestOAuth4WebAPIClient(t *testing.T) {
	t.Parallel()
	node := requireNode(t)
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		w := startJSWorld(t, open(t), "")
		redirect := fmt.Sprintf("http://127.0.0.1:%d/cb", freePort(t))
		run := w.runJS(t, node, "oauth4webapi-client.mjs", map[string]any{"resource": w.resource, "redirect": redirect})

		rm := run.one("resource_metadata")
		mustEqual(t, "resource", str(rm, "resource"), w.resource)
		if as := anyStrings(rm["authorization_servers"]); !slices.Equal(as, []string{w.iss}) {
			t.Fatalf("authorization_servers %v", as)
		}
		d := run.one("discovery")
		mustEqual(t, "issuer", str(d, "issuer"), w.iss)
		mustEqual(t, "authorization_response_iss_parameter_supported", d["authorization_response_iss_parameter_supported"], any(true))

		reg := run.one("registered")
		clientID := str(reg, "client_id")
		c, err := w.store.GetClient(t.Context(), clientID)
		if err != nil {
			t.Fatalf("registered client %q: %v", clientID, err)
		}
		mustEqual(t, "trust", c.Trust, store.TrustRegistered)
		mustEqual(t, "auth method", c.Metadata.TokenEndpointAuthMethod, oauth.AuthClientSecretBasic)

		want := map[string]string{"deny": "access_denied", "invalid_scope": "invalid_scope"}
		errs := run.events["error_redirect"]
		if len(errs) != len(want) {
			t.Fatalf("error redirects %v", errs)
		}
		for _, ev := range errs {
			step := str(ev, "step")
			mustEqual(t, step+": error", str(ev, "error"), want[step])
			mustEqual(t, step+": state intact", ev["state_intact"], any(true))
		}

		tok := run.one("tokens")
		at := str(tok, "access_token")
		mustEqual(t, "token_type", strings.ToLower(str(tok, "token_type")), "bearer")
		if aud := audience(t, at); !slices.Equal(aud, []string{w.resource}) {
			t.Fatalf("aud = %v, want [%s]", aud, w.resource)
		}
		jsClaims, _ := tok["claims"].(map[string]any)
		mustEqual(t, "client_id claim the library validated", jsClaims["client_id"], any(clientID))
		mustEqual(t, "resource request", run.one("resource")["status"], any(float64(200)))
		mustEqual(t, "authorization request's resource", run.auth["allow"].Query().Get("resource"), w.resource)

		next := run.one("refreshed")
		if str(next, "refresh_token") == "" || str(next, "refresh_token") == str(tok, "refresh_token") {
			t.Fatalf("refresh did not rotate: %q then %q", str(tok, "refresh_token"), str(next, "refresh_token"))
		}
		in := run.one("introspection")
		mustEqual(t, "introspection active", in["active"], any(true))
		mustEqual(t, "introspection client_id", in["client_id"], any(clientID))
		if aud := in["aud"]; !slices.Contains(anyOrStrings(aud), w.resource) {
			t.Fatalf("introspection aud %v, want %s", aud, w.resource)
		}

		rv := run.one("revoked")
		if in, _ := rv["introspection"].(map[string]any); len(in) != 1 || in["active"] != false {
			t.Fatalf("introspection of the access token after revoking the refresh token: %v, want {active: false}", in)
		}
		res, _ := rv["resource"].(map[string]any)
		mustEqual(t, "resource request after revocation", res["status"], any(float64(401)))
		chal, _ := res["challenge"].(map[string]any)
		mustEqual(t, "challenge error", chal["error"], any("invalid_token"))
		mustEqual(t, "refresh after revocation", str(rv, "refresh_error"), "invalid_grant")
		for what, tokens := range map[string]string{"first": at, "refreshed": str(next, "access_token")} {
			if _, err := w.validator.Validate(t.Context(), tokens); !errors.Is(err, middleware.ErrInvalidToken) {
				t.Fatalf("the middleware on the %s access token after revocation: %v, want invalid_token", what, err)
			}
		}

		u, err := w.store.GetUserByUsername(t.Context(), w.username)
		if err != nil {
			t.Fatal(err)
		}
		oidc := run.one("openid")
		id, _ := oidc["id_token"].(map[string]any)
		userinfo, _ := oidc["userinfo"].(map[string]any)
		mustEqual(t, "ID token iss", id["iss"], any(w.iss))
		mustEqual(t, "ID token sub", id["sub"], any(u.ID))
		if aud := anyOrStrings(id["aud"]); !slices.Equal(aud, []string{clientID}) {
			t.Fatalf("ID token aud %v, want [%s]", aud, clientID)
		}
		mustEqual(t, "UserInfo sub", userinfo["sub"], any(u.ID))
	})
}

// anyOrStrings is v as a list of strings: a JSON string or array.
func anyOrStrings(v any) []string {
	if s, ok := v.(string); ok {
		return []string{s}
	}
	l, _ := v.([]any)
	var out []string
	for _, x := range l {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}
