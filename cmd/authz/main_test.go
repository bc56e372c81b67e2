package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"debug/buildinfo"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/jackc/pgx/v5"

	"github.com/authzd/authz/migrations"
	"github.com/authzd/authz/provider/store"
	"github.com/authzd/authz/provider/store/postgres/pgtest"
)

var (
	binary string
	// coverDir is where a coverage-instrumented binary writes its counters
	// (GOCOVERDIR); empty when the tests do not measure coverage.
	coverDir string
)

// TestMain builds the real binary once; the tests run it as a user would.
//
// Coverage of what only the binary runs (serve.go, the CLI): under
// `go test -cover ./cmd/authz` the binary is built with `go build -cover`
// and every child runs with GOCOVERDIR set to this test's
// -test.gocoverdir, so the counters each child writes when it exits are
// merged into the percentage and the -coverprofile that `go test` reports.
// The go command merges only data whose meta-data hash matches the test
// binary's (golang/go#57924), so the child is instrumented exactly as the
// test binary is: the test's own -covermode, and only this package. (With
// -coverpkg the test binary instruments a different set of packages than
// any build of the command can, so the children's counters are not merged;
// they are still written to GOCOVERDIR for `go tool covdata`.) A child
// writes its counters only when it exits on its own, so servers are
// stopped with SIGTERM, not killed. Without -cover (plain `make test`) this
// is an ordinary go build.
func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "authz-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "authz")
	args := []string{"build", "-o", binary}
	if mode := testing.CoverMode(); mode != "" {
		if f := flag.Lookup("test.gocoverdir"); f != nil {
			coverDir = f.Value.String()
		}
		if coverDir == "" {
			coverDir = os.Getenv("GOCOVERDIR")
		}
		args = append(args, "-cover", "-covermode="+mode, "-coverpkg=github.com/authzd/authz/cmd/authz")
	}
	out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building authz: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const testEncryptionKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" // base64 of 32 bytes

// command prepares the binary with a clean AUTHZ_* environment plus env.
func command(env []string, args ...string) *exec.Cmd {
	cmd := exec.Command(binary, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AUTHZ_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if coverDir != "" {
		cmd.Env = append(cmd.Env, "GOCOVERDIR="+coverDir)
	}
	// Many servers run at once here: no admin listener unless a test asks.
	cmd.Env = append(cmd.Env, "AUTHZ_ADMIN_ADDR=")
	cmd.Env = append(cmd.Env, env...)
	return cmd
}

func runCmd(t *testing.T, env []string, stdin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := command(env, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

func TestBadConfigurationExitsWithOneLine(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		env  []string
		want string
	}{
		{"unparseable database URL", []string{"AUTHZ_DATABASE_URL=postgres://u:p@host:notaport/db", "AUTHZ_ENCRYPTION_KEY=" + testEncryptionKey}, "AUTHZ_DATABASE_URL"},
		{"issuer not absolute", []string{"AUTHZ_ISSUER=auth.example.com"}, "AUTHZ_ISSUER"},
		{"issuer with a fragment", []string{"AUTHZ_ISSUER=https://auth.example.com/#x"}, "AUTHZ_ISSUER"},
		{"bad duration", []string{"AUTHZ_ACCESS_TOKEN_TTL=soon"}, "AUTHZ_ACCESS_TOKEN_TTL"},
		{"postgres without encryption key", []string{"AUTHZ_DATABASE_URL=postgres://localhost/db"}, "openssl rand -base64 32"},
		{"bad encryption key", []string{"AUTHZ_ENCRYPTION_KEY=short"}, "AUTHZ_ENCRYPTION_KEY"},
		{"bad registration policy", []string{"AUTHZ_REGISTRATION=sometimes"}, "registration"},
		{"bad trusted proxy", []string{"AUTHZ_TRUSTED_PROXIES=10.0.0.0/8,not-a-cidr"}, "AUTHZ_TRUSTED_PROXIES"},
		{"unknown proxy headers", []string{"AUTHZ_PROXY_HEADERS=x-forwarded-for"}, `AUTHZ_PROXY_HEADERS="x-forwarded-for"`},
		{"login limit not a number", []string{"AUTHZ_LOGIN_FAILURES_PER_ACCOUNT=many"}, "AUTHZ_LOGIN_FAILURES_PER_ACCOUNT"},
		{"registration limit zero", []string{"AUTHZ_REGISTRATION_LIMIT=0"}, "AUTHZ_REGISTRATION_LIMIT"},
		{"zero database timeout", []string{"AUTHZ_DB_TIMEOUT=0s"}, "AUTHZ_DB_TIMEOUT"},
		// Rules provider checks, reported under the variable's name.
		{"bad registration policy named", []string{"AUTHZ_REGISTRATION=sometimes"}, `AUTHZ_REGISTRATION="sometimes"`},
		{"invalid scope", []string{`AUTHZ_SCOPES=read,wr"ite`}, "AUTHZ_SCOPES"},
		{"resource with a fragment", []string{"AUTHZ_RESOURCES=https://api.example.com/#x"}, "AUTHZ_RESOURCES"},
		{"code lifetime over 10m", []string{"AUTHZ_AUTH_CODE_TTL=11m"}, "AUTHZ_AUTH_CODE_TTL"},
		{"unknown signing algorithm", []string{"AUTHZ_SIGNING_ALG=HS256"}, "AUTHZ_SIGNING_ALG"},
		{"negative access-token lifetime", []string{"AUTHZ_ACCESS_TOKEN_TTL=-1m"}, "AUTHZ_ACCESS_TOKEN_TTL"},
		{"admin scope not offered", []string{"AUTHZ_SCOPES=read", "AUTHZ_ADMIN_SCOPES=write"}, "AUTHZ_ADMIN_SCOPES"},
		{"OS-handler redirect scheme", []string{"AUTHZ_REDIRECT_SCHEMES=javascript"}, "AUTHZ_REDIRECT_SCHEMES"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, stderr, code := runCmd(t, append(tc.env, "AUTHZ_ADDR=127.0.0.1:0"), "", "serve")
			if code == 0 {
				t.Fatal("exited 0")
			}
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
				t.Fatalf("stderr = %q, want one line mentioning %q", stderr, tc.want)
			}
		})
	}
}

// server is a running `authz serve`.
type server struct {
	cmd    *exec.Cmd
	addr   string
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan error
}

// syncBuffer is a bytes.Buffer the child's output goroutine and the test
// can use at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func startServer(t *testing.T, env []string, args ...string) *server {
	t.Helper()
	s := launchServer(t, env, args...)
	s.waitHealthy(t)
	return s
}

// launchServer starts `authz serve` without waiting for it.
func launchServer(t *testing.T, env []string, args ...string) *server {
	t.Helper()
	addr := freeAddr(t)
	cmd := command(append(env, "AUTHZ_ADDR="+addr, "AUTHZ_ISSUER=http://"+addr), append([]string{"serve"}, args...)...)
	s := &server{cmd: cmd, addr: addr, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stdout = s.stdout
	cmd.Stderr = s.stderr
	if testing.Verbose() {
		cmd.Stderr = io.MultiWriter(s.stderr, os.Stderr)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState != nil {
			return
		}
		// SIGTERM first: a server that exits on its own writes its
		// coverage counters (see TestMain); kill only one that hangs.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-s.done
		}
	})
	return s
}

// waitHealthy waits until the server answers /healthz.
func (s *server) waitHealthy(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + s.addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		select {
		case err := <-s.done:
			t.Fatalf("server exited early: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatal("server did not become healthy")
}

// stop sends SIGTERM and returns the exit code.
func (s *server) stop(t *testing.T) int {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.done:
	case <-time.After(40 * time.Second):
		t.Fatal("server did not stop")
	}
	return s.cmd.ProcessState.ExitCode()
}

func TestServeDevPrintsDemoAndAnswersHealth(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil, "--dev")
	for _, path := range []string{"/healthz", "/readyz", "/.well-known/oauth-authorization-server"} {
		resp, err := http.Get("http://" + s.addr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
	}
	out := s.stdout.String()
	for _, want := range []string{"demo user:", "password:", "demo-client", "/oauth2/authorize?", "code_challenge="} {
		if !strings.Contains(out, want) {
			t.Fatalf("dev output lacks %q:\n%s", want, out)
		}
	}
	if code := s.stop(t); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

// TestGracefulShutdown: SIGTERM during a slow request lets it complete,
// then the process exits 0.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)
	conn, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := "grant_type=client_credentials&client_id=nobody"
	// Send the headers and half the body, so the request is in flight.
	fmt.Fprintf(conn, "POST /oauth2/token HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s", s.addr, len(body), body[:10])
	time.Sleep(200 * time.Millisecond)
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	select {
	case <-s.done:
		t.Fatal("the server exited while a request was in flight")
	default:
	}
	if _, err := io.WriteString(conn, body[10:]); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("in-flight request got no response: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401 invalid_client", resp.StatusCode)
	}
	select {
	case <-s.done:
	case <-time.After(40 * time.Second):
		t.Fatal("server did not exit")
	}
	if code := s.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

// TestClientPersistsOnPostgres: a client made with the CLI survives a
// server restart, and the database holds no plaintext secret.
func TestClientPersistsOnPostgres(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.URL(t)
	env := []string{"AUTHZ_DATABASE_URL=" + dbURL, "AUTHZ_ENCRYPTION_KEY=" + testEncryptionKey, "AUTHZ_SCOPES=read"}

	out, stderr, code := runCmd(t, env, "", "client", "create", "--name", "IDE plugin", "--redirect-uri", "https://app.example.com/cb", "--redirect-uri", "jetbrains://gateway/cb", "--scope", "read", "--json")
	if code != 0 {
		t.Fatalf("client create: %d %s", code, stderr)
	}
	var created struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	if err := json.Unmarshal([]byte(out), &created); err != nil || created.ClientID == "" || created.ClientSecret == "" {
		t.Fatalf("client create --json printed %q (%v)", out, err)
	}
	if _, stderr, code := runCmd(t, env, "hunter2-password\n", "user", "create", "alice", "--password-stdin"); code != 0 {
		t.Fatalf("user create: %s", stderr)
	}
	_, stderr, code = runCmd(t, env, "", "client", "create", "--name", "bad", "--redirect-uri", "javascript:alert(1)")
	if code == 0 || !strings.Contains(stderr, "redirect") {
		t.Fatalf("dangerous redirect accepted: %d %s", code, stderr)
	}

	s := startServer(t, env)
	if code := s.stop(t); code != 0 {
		t.Fatalf("first run exit %d", code)
	}
	s = startServer(t, env)
	defer s.stop(t)
	out, _, code = runCmd(t, env, "", "client", "list")
	if code != 0 || !strings.Contains(out, created.ClientID) || !strings.Contains(out, "IDE plugin") {
		t.Fatalf("client list after restart: %q", out)
	}
	out, _, _ = runCmd(t, env, "", "user", "list")
	if !strings.Contains(out, "alice") {
		t.Fatalf("user list: %q", out)
	}

	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for _, secret := range []string{created.ClientSecret, "hunter2-password"} {
		rows, err := conn.Query(context.Background(), `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()`)
		if err != nil {
			t.Fatal(err)
		}
		tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		if len(tables) < 5 {
			t.Fatalf("only %d tables in the schema", len(tables))
		}
		for _, table := range tables {
			var n int
			q := fmt.Sprintf(`SELECT count(*) FROM %s t WHERE position($1 in t::text) > 0 OR position(encode(convert_to($1, 'UTF8'), 'hex') in t::text) > 0`, pgx.Identifier{table}.Sanitize())
			if err := conn.QueryRow(context.Background(), q, secret).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 0 {
				t.Fatalf("table %s holds a plaintext secret", table)
			}
		}
	}

	// keys rotate works against the same database.
	if out, stderr, code := runCmd(t, env, "", "keys", "rotate"); code != 0 || !strings.Contains(out, "published") {
		t.Fatalf("keys rotate: %d %s %s", code, out, stderr)
	}
	if _, _, code := runCmd(t, env, "", "client", "delete", created.ClientID); code != 0 {
		t.Fatal("client delete failed")
	}
	if _, _, code := runCmd(t, env, "", "client", "show", created.ClientID); code == 0 {
		t.Fatal("deleted client still shown")
	}
}

func TestAdminCommandsRefuseMemoryStore(t *testing.T) {
	t.Parallel()
	_, stderr, code := runCmd(t, nil, "", "client", "list")
	if code == 0 || !strings.Contains(stderr, "AUTHZ_DATABASE_URL") {
		t.Fatalf("client list without a database: %d %q", code, stderr)
	}
	_, stderr, code = runCmd(t, nil, "", "frobnicate")
	if code != 2 || !strings.Contains(stderr, "unknown command") {
		t.Fatalf("unknown command: %d %q", code, stderr)
	}
}

// TestClientAdministration: `authz client` covers what registration does,
// plus allowances; `authz token initial-access create` feeds the "token"
// registration policy. Checked against a running server on PostgreSQL.
func TestClientAdministration(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.URL(t)
	env := []string{"AUTHZ_DATABASE_URL=" + dbURL, "AUTHZ_ENCRYPTION_KEY=" + testEncryptionKey,
		"AUTHZ_RESOURCES=https://api.example.com,https://mcp.example.com/mcp", "AUTHZ_SCOPES=read,write", "AUTHZ_REGISTRATION=token"}
	type view struct {
		ClientID     string               `json:"client_id"`
		ClientSecret string               `json:"client_secret"`
		Metadata     store.ClientMetadata `json:"metadata"`
	}
	run := func(stdin string, args ...string) view {
		t.Helper()
		out, stderr, code := runCmd(t, env, stdin, args...)
		if code != 0 {
			t.Fatalf("authz %s: %d %s", strings.Join(args, " "), code, stderr)
		}
		var v view
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatalf("authz %s printed %q", strings.Join(args, " "), out)
		}
		return v
	}

	full := run("", "client", "create", "--name", "Full", "--redirect-uri", "https://app.example.com/cb",
		"--scope", "read", "--resource", "https://mcp.example.com/mcp", "--auth-method", "client_secret_post",
		"--client-uri", "https://app.example.com", "--logo-uri", "https://app.example.com/logo.png",
		"--tos-uri", "https://app.example.com/tos", "--policy-uri", "https://app.example.com/privacy",
		"--contact", "ops@example.com", "--software-id", "sw-1", "--software-version", "1.2", "--json")
	m := full.Metadata
	if m.TokenEndpointAuthMethod != "client_secret_post" || m.ClientURI != "https://app.example.com" || m.LogoURI == "" || m.TOSURI == "" ||
		m.PolicyURI == "" || len(m.Contacts) != 1 || m.SoftwareID != "sw-1" || m.SoftwareVersion != "1.2" ||
		len(m.Resources) != 1 || len(m.Scopes) != 1 || m.ApplicationType != "web" || full.ClientSecret == "" {
		t.Fatalf("created %+v", full)
	}

	native := run("", "client", "create", "--name", "IDE", "--public", "--redirect-uri", "jetbrains://gateway/cb", "--json")
	if native.ClientSecret != "" || native.Metadata.TokenEndpointAuthMethod != "none" || native.Metadata.ApplicationType != "native" {
		t.Fatalf("public client %+v", native)
	}
	if _, stderr, code := runCmd(t, env, "", "client", "create", "--name", "x", "--application-type", "web", "--redirect-uri", "jetbrains://x/cb"); code == 0 || !strings.Contains(stderr, "native") {
		t.Fatalf("web client with a private-use scheme: %d %s", code, stderr)
	}

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	jwksFile := t.TempDir() + "/jwks.json"
	if err := os.WriteFile(jwksFile, jwks, 0o600); err != nil {
		t.Fatal(err)
	}
	signed := run("", "client", "create", "--name", "Signed", "--grant-type", "client_credentials", "--auth-method", "private_key_jwt", "--jwks", "@"+jwksFile, "--json")
	if signed.ClientSecret != "" || len(signed.Metadata.JWKS) == 0 {
		t.Fatalf("private_key_jwt client %+v", signed)
	}

	svc := run("", "client", "create", "--name", "svc", "--grant-type", "client_credentials", "--scope", "read", "--json")
	s := startServer(t, env)
	defer s.stop(t)
	issuer := "http://" + s.addr
	cc := func(id, secret, resource string) (int, string) {
		form := url.Values{"grant_type": {"client_credentials"}}
		if resource != "" {
			form.Set("resource", resource)
		}
		req, _ := http.NewRequest("POST", issuer+"/oauth2/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(id, secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct {
			Error string `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body.Error
	}
	if status, _ := cc(svc.ClientID, svc.ClientSecret, "https://api.example.com"); status != 200 {
		t.Fatalf("client_credentials: %d", status)
	}

	// update: narrow the resources, rotate the secret.
	upd := run("", "client", "update", svc.ClientID, "--resource", "https://mcp.example.com/mcp", "--name", "svc v2", "--rotate-secret", "--json")
	if upd.Metadata.Name != "svc v2" || len(upd.Metadata.Resources) != 1 || upd.ClientSecret == "" || upd.ClientSecret == svc.ClientSecret {
		t.Fatalf("update %+v", upd)
	}
	if len(upd.Metadata.Scopes) != 1 || upd.Metadata.Scopes[0] != "read" {
		t.Fatalf("update dropped flags it was not given: %+v", upd.Metadata)
	}
	// The command is another process: the server's per-process client
	// cache (README "Scaling out": 2 s) may accept the old secret until its
	// entry is stale. Polled, with a generous bound for a loaded machine.
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		status, code := cc(svc.ClientID, svc.ClientSecret, "")
		if status == 401 && code == "invalid_client" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("old secret after rotation: %d %s", status, code)
		}
	}
	if status, code := cc(upd.ClientID, upd.ClientSecret, "https://api.example.com"); code != "invalid_target" {
		t.Fatalf("resource removed by update: %d %s", status, code)
	}
	if status, _ := cc(upd.ClientID, upd.ClientSecret, "https://mcp.example.com/mcp"); status != 200 {
		t.Fatalf("allowed resource after update: %d", status)
	}
	if _, stderr, code := runCmd(t, env, "", "client", "update", native.ClientID, "--auth-method", "client_secret_basic"); code == 0 || !strings.Contains(stderr, "public and confidential") {
		t.Fatalf("public to confidential: %d %s", code, stderr)
	}

	// token initial-access create feeds the "token" registration policy.
	out, stderr, code := runCmd(t, env, "", "token", "initial-access", "create", "--ttl", "1h")
	iat := strings.TrimSpace(out)
	if code != 0 || !strings.HasPrefix(iat, "authz_iat_") {
		t.Fatalf("initial-access create: %d %q %s", code, out, stderr)
	}
	register := func(bearer string) int {
		req, _ := http.NewRequest("POST", issuer+"/oauth2/register", strings.NewReader(`{"redirect_uris":["https://a.example.com/cb"]}`))
		req.Header.Set("Content-Type", "application/json")
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := register(""); got != 401 {
		t.Fatalf("registration without the initial access token: %d", got)
	}
	if got := register(iat); got != 201 {
		t.Fatalf("registration with the initial access token: %d", got)
	}

	// A token's policy: client_credentials within its allowances (issue 11).
	if _, stderr, code := runCmd(t, env, "", "token", "initial-access", "create", "--allow-grant", "client_credentials"); code == 0 || !strings.Contains(stderr, "--scope and --resource") {
		t.Fatalf("--allow-grant without allowances: %d %s", code, stderr)
	}
	out, stderr, code = runCmd(t, env, "", "token", "initial-access", "create", "--allow-grant", "client_credentials",
		"--scope", "read", "--resource", "https://mcp.example.com/mcp")
	svcIAT := strings.TrimSpace(out)
	if code != 0 || !strings.HasPrefix(svcIAT, "authz_iat_") {
		t.Fatalf("initial-access create with a policy: %d %q %s", code, out, stderr)
	}
	registerCC := func(bearer string) (int, map[string]any) {
		req, _ := http.NewRequest("POST", issuer+"/oauth2/register", strings.NewReader(`{"grant_types":["client_credentials"],"client_name":"robot"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+bearer)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	if status, m := registerCC(iat); status != 400 || m["error"] != "invalid_client_metadata" || !strings.Contains(m["error_description"].(string), "grant_types") {
		t.Fatalf("client_credentials with a token whose policy does not allow it: %d %v", status, m)
	}
	status, robot := registerCC(svcIAT)
	if status != 201 || robot["scope"] != "read" {
		t.Fatalf("client_credentials with a policy token: %d %v", status, robot)
	}
	robotID, robotSecret := robot["client_id"].(string), robot["client_secret"].(string)
	if status, code := cc(robotID, robotSecret, "https://api.example.com"); status != 400 || code != "invalid_target" {
		t.Fatalf("policy client outside its resources: %d %s", status, code)
	}
	if status, code := cc(robotID, robotSecret, "https://mcp.example.com/mcp"); status != 200 {
		t.Fatalf("policy client inside its resources: %d %s", status, code)
	}

	// --self-registered lists only what came through registration.
	out, _, code = runCmd(t, env, "", "client", "list", "--self-registered")
	if code != 0 || !strings.Contains(out, robotID) || strings.Contains(out, svc.ClientID) || !strings.Contains(out, "registered") {
		t.Fatalf("client list --self-registered: %q", out)
	}
	out, _, _ = runCmd(t, env, "", "client", "list")
	if !strings.Contains(out, robotID) || !strings.Contains(out, svc.ClientID) || !strings.Contains(out, "admin") {
		t.Fatalf("client list: %q", out)
	}

	// --introspect marks a resource server; it needs --resource.
	if _, stderr, code := runCmd(t, env, "", "client", "create", "--name", "rs", "--grant-type", "client_credentials", "--introspect"); code == 0 || !strings.Contains(stderr, "--resource") {
		t.Fatalf("--introspect without --resource: %d %s", code, stderr)
	}
	rs := run("", "client", "create", "--name", "rs", "--grant-type", "client_credentials", "--introspect", "--resource", "https://mcp.example.com/mcp", "--json")
	if !rs.Metadata.Introspect {
		t.Fatalf("--introspect not kept: %+v", rs.Metadata)
	}
	if v := run("", "client", "update", rs.ClientID, "--introspect=false", "--json"); v.Metadata.Introspect {
		t.Fatalf("--introspect=false did not remove it: %+v", v.Metadata)
	}
}

// TestServeSurvivesJanitorTicks runs the real binary with a short janitor
// interval on both stores and serves requests across at least three ticks:
// the background jobs must neither crash the process nor log a panic.
func TestServeSurvivesJanitorTicks(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"memory", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			env := []string{"AUTHZ_JANITOR_INTERVAL=100ms", "AUTHZ_LOG_LEVEL=debug"}
			if kind == "postgres" {
				env = append(env, "AUTHZ_DATABASE_URL="+pgtest.URL(t), "AUTHZ_ENCRYPTION_KEY="+testEncryptionKey)
			}
			s := startServer(t, env)
			deadline := time.Now().Add(60 * time.Second)
			for strings.Count(s.stderr.String(), "janitor: periodic jobs done") < 3 {
				select {
				case err := <-s.done:
					t.Fatalf("the server exited while its janitor ran: %v\n%s", err, s.stderr.String())
				default:
				}
				if time.Now().After(deadline) {
					t.Fatalf("fewer than three janitor ticks logged:\n%s", s.stderr.String())
				}
				for _, path := range []string{"/healthz", "/oauth2/jwks"} {
					resp, err := http.Get("http://" + s.addr + path)
					if err != nil {
						t.Fatalf("GET %s while the janitor runs: %v", path, err)
					}
					resp.Body.Close()
					if resp.StatusCode != 200 {
						t.Fatalf("GET %s: %d", path, resp.StatusCode)
					}
				}
				time.Sleep(20 * time.Millisecond)
			}
			if log := s.stderr.String(); strings.Contains(log, "panic") || strings.Contains(log, "level=ERROR") {
				t.Fatalf("the janitor logged an error or a panic:\n%s", log)
			}
			if code := s.stop(t); code != 0 {
				t.Fatalf("exit code %d", code)
			}
		})
	}
}

// TestBinaryCoverageFollowsTheTest: the binary the other tests run is
// instrumented exactly when the tests measure coverage, and then every run
// of it (a server or a one-shot command) leaves its counters in the test's
// coverage directory, which is what makes serve.go count in
// `go test -cover ./cmd/authz` (see TestMain). Without -cover it is a
// plain build, so `make test` pays nothing for it.
func TestBinaryCoverageFollowsTheTest(t *testing.T) {
	t.Parallel()
	info, err := buildinfo.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	instrumented := false
	for _, s := range info.Settings {
		if s.Key == "-cover" && s.Value == "true" {
			instrumented = true
		}
	}
	measuring := testing.CoverMode() != ""
	if instrumented != measuring {
		t.Fatalf("binary built with -cover = %v, but the tests measure coverage = %v", instrumented, measuring)
	}
	cmd := command(nil, "serve", "--help")
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Run(); err != nil {
		t.Fatalf("authz serve --help: %v", err)
	}
	if !measuring {
		return
	}
	// Counter files are named covcounters.<meta hash>.<pid>.<time>.
	want := fmt.Sprintf(".%d.", cmd.Process.Pid)
	files, err := filepath.Glob(filepath.Join(coverDir, "covcounters.*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.Contains(filepath.Base(f), want) {
			return
		}
	}
	t.Fatalf("the binary (pid %d) left no coverage counters in GOCOVERDIR %q: %v", cmd.Process.Pid, coverDir, files)
}

// TestKeysCommands: two real binaries started at once on an empty database
// make one signing key; `keys rotate` adds a pending access-token key and a
// pending key for each ID-token algorithm in use (refusing an encryption
// key that cannot decrypt the existing ones); `keys list` shows each key's
// id, what it signs, algorithm, state and dates.
func TestKeysCommands(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.URL(t)
	env := []string{"AUTHZ_DATABASE_URL=" + dbURL, "AUTHZ_ENCRYPTION_KEY=" + testEncryptionKey}
	s1, s2 := launchServer(t, env), launchServer(t, env)
	s1.waitHealthy(t)
	s2.waitHealthy(t)
	kidsOf := func(s *server) []string {
		resp, err := http.Get("http://" + s.addr + "/oauth2/jwks")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var set jose.JSONWebKeySet
		if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, k := range set.Keys {
			out = append(out, k.KeyID)
		}
		return out
	}
	k1, k2 := kidsOf(s1), kidsOf(s2)
	if len(k1) != 1 || len(k2) != 1 || k1[0] != k2[0] {
		t.Fatalf("two servers started at once publish %v and %v, want one shared key", k1, k2)
	}
	first := k1[0]

	out, stderr, code := runCmd(t, env, "", "keys", "list")
	if code != 0 || !strings.Contains(out, first) || !strings.Contains(out, "ES256") || !strings.Contains(out, "signing") || strings.Count(out, "\n") != 2 {
		t.Fatalf("keys list: %d %q %s", code, out, stderr)
	}

	// The first RS256 ID token made that algorithm's key: listed, and
	// rotated with the others.
	idKey := storeFirstIDTokenKey(t, dbURL, "RS256", testEncryptionKey)
	out, stderr, code = runCmd(t, env, "", "keys", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 || !strings.Contains(lines[1], first) || !strings.Contains(lines[1], "access tokens") ||
		!strings.Contains(lines[2], idKey) || !strings.Contains(lines[2], "ID tokens") || !strings.Contains(lines[2], "RS256") || !strings.Contains(lines[2], "signing") {
		t.Fatalf("keys list with an ID-token key: %d %q %s", code, out, stderr)
	}

	_, stderr, code = runCmd(t, []string{"AUTHZ_DATABASE_URL=" + dbURL, "AUTHZ_ENCRYPTION_KEY=" + wrongEncryptionKey}, "", "keys", "rotate")
	if code == 0 || !strings.Contains(stderr, "AUTHZ_ENCRYPTION_KEY") {
		t.Fatalf("keys rotate with the wrong encryption key: %d %s", code, stderr)
	}
	if out, _, _ := runCmd(t, env, "", "keys", "list"); strings.Count(out, "\n") != 3 {
		t.Fatalf("a refused rotation added a key:\n%s", out)
	}

	out, stderr, code = runCmd(t, env, "", "keys", "rotate")
	if code != 0 || !strings.Contains(out, "access tokens: new key") || !strings.Contains(out, "ID tokens (RS256): new key") || !strings.Contains(out, "published") {
		t.Fatalf("keys rotate: %d %q %s", code, out, stderr)
	}
	out, _, _ = runCmd(t, env, "", "keys", "list")
	lines = strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || !strings.Contains(lines[0], "STATE") ||
		!strings.Contains(lines[1], "access tokens") || !strings.Contains(lines[1], "pending") ||
		!strings.Contains(lines[2], first) || !strings.Contains(lines[2], "signing") ||
		!strings.Contains(lines[3], "ID tokens") || !strings.Contains(lines[3], "pending") ||
		!strings.Contains(lines[4], idKey) || !strings.Contains(lines[4], "signing") {
		t.Fatalf("keys list after a rotation:\n%s", out)
	}
	s1.stop(t)
	s2.stop(t)
}

// TestAdminCommandsNeverMigrate: against a database an older authz made
// (only the first migration, recorded the old way), admin commands and
// `serve` with AUTHZ_AUTO_MIGRATE=false refuse with "run authz migrate"
// and change nothing; `authz migrate` brings it up to date.
func TestAdminCommandsNeverMigrate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := pgtest.URL(t)
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	first := migrations.All()[0]
	if _, err := conn.Exec(ctx, `DO $$ DECLARE r record; BEGIN
		FOR r IN SELECT tablename FROM pg_tables WHERE schemaname = current_schema() LOOP
			EXECUTE 'DROP TABLE ' || quote_ident(r.tablename) || ' CASCADE';
		END LOOP; END $$`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, first.SQL); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT clock_timestamp());
		INSERT INTO schema_migrations (version, name) VALUES (1, '`+first.Name+`')`); err != nil {
		t.Fatal(err)
	}
	schema := func() string {
		var out string
		if err := conn.QueryRow(ctx, `SELECT string_agg(table_name || '.' || column_name, ',' ORDER BY table_name, column_name)
			FROM information_schema.columns WHERE table_schema = current_schema()`).Scan(&out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	before := schema()
	env := []string{"AUTHZ_DATABASE_URL=" + dbURL, "AUTHZ_ENCRYPTION_KEY=" + testEncryptionKey}

	for _, args := range [][]string{{"user", "list"}, {"client", "list"}, {"keys", "list"}, {"keys", "rotate"}, {"token", "initial-access", "create"}} {
		_, stderr, code := runCmd(t, env, "", args...)
		if code == 0 || !strings.Contains(stderr, "run authz migrate") {
			t.Fatalf("authz %s on an older schema: %d %q", strings.Join(args, " "), code, stderr)
		}
	}
	_, stderr, code := runCmd(t, append(env, "AUTHZ_AUTO_MIGRATE=false", "AUTHZ_ADDR=127.0.0.1:0"), "", "serve")
	if code == 0 || !strings.Contains(stderr, "run authz migrate") {
		t.Fatalf("serve without auto-migrate on an older schema: %d %q", code, stderr)
	}
	if after := schema(); after != before {
		t.Fatalf("a command other than migrate changed the schema:\nbefore %s\nafter  %s", before, after)
	}

	out, stderr, code := runCmd(t, env, "", "migrate")
	if code != 0 || !strings.Contains(out, "applied") {
		t.Fatalf("migrate: %d %q %s", code, out, stderr)
	}
	if _, stderr, code := runCmd(t, env, "", "user", "list"); code != 0 {
		t.Fatalf("user list after migrate: %d %s", code, stderr)
	}
}

// Issue 11 point 8: help and usage errors never print a secret setting's
// value, whether it came from the environment or the command line.
func TestSecretsNeverPrinted(t *testing.T) {
	t.Parallel()
	const dbPassword, keyValue = "Pa55w0rdInTheURL", testEncryptionKey
	env := []string{"AUTHZ_DATABASE_URL=postgres://authz:" + dbPassword + "@db.internal:5432/authz", "AUTHZ_ENCRYPTION_KEY=" + keyValue}
	for _, tc := range []struct {
		name string
		env  []string
		args []string
	}{
		{"serve -h", env, []string{"serve", "-h"}},
		{"serve --help", env, []string{"serve", "--help"}},
		{"a mistyped flag", env, []string{"serve", "--databse-url", "x"}},
		{"a bad flag value", env, []string{"serve", "--login-window", "soon"}},
		{"secrets on the command line, then a mistyped flag", nil, []string{"serve", "--database-url", "postgres://authz:" + dbPassword + "@db/authz",
			"--encryption-key", keyValue, "--bogus"}},
		{"an unparseable database URL", []string{"AUTHZ_DATABASE_URL=postgres://authz:" + dbPassword + "@db.internal:notaport/authz", "AUTHZ_ENCRYPTION_KEY=" + keyValue}, []string{"serve"}},
		{"client create -h", env, []string{"client", "create", "-h"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, stderr, _ := runCmd(t, tc.env, "", tc.args...)
			all := out + stderr
			if !strings.Contains(all, "database-url") && !strings.Contains(all, "AUTHZ_DATABASE_URL") {
				t.Fatalf("output does not look like help or an error: %q", all)
			}
			for _, secret := range []string{dbPassword, keyValue} {
				if strings.Contains(all, secret) {
					t.Fatalf("output shows a secret value:\n%s", all)
				}
			}
		})
	}
}

// authz user unlock clears a lockout that a running server (on the same
// PostgreSQL) counted, and the server honours it at once.
func TestUserUnlock(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.URL(t)
	env := []string{"AUTHZ_DATABASE_URL=" + dbURL, "AUTHZ_ENCRYPTION_KEY=" + testEncryptionKey, "AUTHZ_LOGIN_FAILURES_PER_ACCOUNT=2"}
	if _, stderr, code := runCmd(t, env, "a-long-enough-password\n", "user", "create", "carol", "--password-stdin"); code != 0 {
		t.Fatalf("user create: %s", stderr)
	}
	s := startServer(t, env)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	base := "http://" + s.addr
	csrfRe := regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)
	login := func(password string) int {
		t.Helper()
		resp, err := c.Get(base + "/login")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m := csrfRe.FindSubmatch(body)
		if m == nil {
			t.Fatalf("no CSRF field on the login page: %s", body)
		}
		resp, err = c.PostForm(base+"/login", url.Values{"csrf_token": {string(m[1])}, "username": {"carol"}, "password": {password}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for range 2 {
		if got := login("wrong"); got != http.StatusUnauthorized {
			t.Fatalf("failed login = %d", got)
		}
	}
	if got := login("a-long-enough-password"); got != http.StatusTooManyRequests {
		t.Fatalf("locked login = %d, want 429", got)
	}
	out, stderr, code := runCmd(t, env, "", "user", "unlock", "carol")
	if code != 0 || !strings.Contains(out, "unlocked user carol") {
		t.Fatalf("user unlock: %d %q %q", code, out, stderr)
	}
	if got := login("a-long-enough-password"); got != http.StatusSeeOther {
		t.Fatalf("login after unlock = %d, want 303", got)
	}
	if _, stderr, code := runCmd(t, env, "", "user", "unlock", "nobody"); code == 0 || !strings.Contains(stderr, "nobody") {
		t.Fatalf("unlocking an unknown user: %d %q", code, stderr)
	}
}
