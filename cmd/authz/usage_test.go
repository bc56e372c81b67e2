package main

import (
	"net"
	"regexp"
	"strings"
	"testing"

	"github.com/authzd/authz/provider/store/postgres/pgtest"
)

// ownFlags parses `authz CMD --help` and returns the command's own flags
// (those without an AUTHZ_* variable), each with its value placeholder.
func ownFlags(t *testing.T, help string) map[string]string {
	t.Helper()
	flagLine := regexp.MustCompile(`^  -([a-z0-9-]+)(?: (.*))?$`)
	own := map[string]string{}
	lines := strings.Split(help, "\n")
	for i, l := range lines {
		m := flagLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		usage := ""
		if i+1 < len(lines) {
			usage = lines[i+1]
		}
		if !strings.Contains(usage, "($AUTHZ_") {
			own[m[1]] = m[2]
		}
	}
	return own
}

// TestHelpShowsEveryOwnFlag: a command's synopsis (`authz --help`, `authz
// GROUP --help`, the first lines of `authz COMMAND --help`) names every
// flag of its own, so an operator reading it learns, say, that `user
// create` takes --email and `client create` --post-logout-redirect-uri.
func TestHelpShowsEveryOwnFlag(t *testing.T) {
	t.Parallel()
	var create string
	for _, c := range commands() {
		if c.name == "client create" {
			create = c.args
		}
	}
	for _, c := range commands() {
		if c.run == nil || c.name == "version" {
			continue
		}
		_, stderr, code := runCmd(t, nil, "", append(strings.Fields(c.name), "--help")...)
		if code != 0 {
			t.Fatalf("authz %s --help: exit %d", c.name, code)
		}
		synopsis := c.args
		if c.name == "client update" {
			synopsis += " " + create // "[any of the create flags]"
		}
		for f := range ownFlags(t, stderr) {
			if !regexp.MustCompile(`--` + regexp.QuoteMeta(f) + `\b`).MatchString(synopsis) {
				t.Errorf("authz %s: the synopsis %q does not name its flag --%s", c.name, c.args, f)
			}
		}
	}
}

// TestClientListHelpIsTrue: `client list` shows trust and last use
// always; the summary said only with --self-registered.
func TestClientListHelpIsTrue(t *testing.T) {
	t.Parallel()
	env := []string{"AUTHZ_DATABASE_URL=" + pgtest.URL(t), "AUTHZ_ENCRYPTION_KEY=" + testEncryptionKey}
	out, stderr, code := runCmd(t, env, "", "client", "list")
	if code != 0 || !strings.Contains(out, "TRUST") || !strings.Contains(out, "LAST USED") {
		t.Fatalf("client list: exit %d %s%s", code, out, stderr)
	}
	help, _, _ := runCmd(t, nil, "", "client", "--help")
	if strings.Contains(help, "--self-registered: with trust and last use") {
		t.Errorf("authz client --help says trust and last use need --self-registered:\n%s", help)
	}
}

// TestFlagHelpShowsValueTypes: in `authz serve --help` every flag reads
// "-name" or "-name TYPE". Go's flag package takes a back-quoted word of a
// usage text as the value's name, so a usage mentioning `keys rotate`
// printed "-key-reload-interval keys rotate".
func TestFlagHelpShowsValueTypes(t *testing.T) {
	t.Parallel()
	_, stderr, code := runCmd(t, nil, "", "serve", "--help")
	if code != 0 {
		t.Fatalf("authz serve --help: exit %d", code)
	}
	flagLine := regexp.MustCompile(`^  -[a-z0-9-]+( .*)?$`)
	valueType := regexp.MustCompile(`^  -[a-z0-9-]+( (duration|string|int|value))?$`)
	n := 0
	for _, l := range strings.Split(stderr, "\n") {
		if !flagLine.MatchString(l) {
			continue
		}
		n++
		if !valueType.MatchString(l) {
			t.Errorf("flag line %q: want -name or -name TYPE", l)
		}
	}
	if n < 20 {
		t.Fatalf("only %d flag lines in:\n%s", n, stderr)
	}
	if !strings.Contains(stderr, "  -key-reload-interval duration\n") {
		t.Errorf("authz serve --help lacks %q", "  -key-reload-interval duration")
	}
}

// TestCommandsRefuseStrayArguments: a command that takes no arguments
// refuses one (exit 2, its own help) instead of ignoring it and acting:
// `authz keys rotate now` must not rotate. Checked before the database is
// touched.
func TestCommandsRefuseStrayArguments(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	env := []string{"AUTHZ_DATABASE_URL=" + url, "AUTHZ_ENCRYPTION_KEY=" + testEncryptionKey}
	if _, stderr, code := runCmd(t, env, "", "migrate"); code != 0 {
		t.Fatalf("migrate: exit %d %s", code, stderr)
	}
	keysBefore, stderr, code := runCmd(t, env, "", "keys", "list")
	if code != 0 {
		t.Fatalf("keys list: exit %d %s", code, stderr)
	}
	for _, name := range []string{"serve", "migrate", "client create", "client list", "user list", "keys rotate", "keys list", "token initial-access create"} {
		args := append(strings.Fields(name), "stray")
		if name == "client create" {
			args = append(args, "--name", "x", "--redirect-uri", "https://a.example.com/cb")
		}
		env := env
		if name == "serve" {
			// Were the argument ignored, serve would fail (exit 1) on
			// this unreachable database instead of serving.
			env = []string{"AUTHZ_DATABASE_URL=postgres://authz@127.0.0.1:1/none", "AUTHZ_ENCRYPTION_KEY=" + testEncryptionKey,
				"AUTHZ_DB_TIMEOUT=1s", "AUTHZ_ADDR=127.0.0.1:0"}
		}
		out, stderr, code := runCmd(t, env, "", args...)
		if code != 2 || !strings.HasPrefix(stderr, "authz: "+name+" takes no arguments") || !strings.Contains(stderr, "  authz "+name) ||
			strings.Contains(stderr, "  authz version") {
			t.Errorf("authz %s: exit %d\nstdout %s\nstderr %s\nwant exit 2, %q and only its own help", strings.Join(args, " "), code, out, stderr,
				"authz: "+name+" takes no arguments")
		}
	}
	if keysAfter, _, _ := runCmd(t, env, "", "keys", "list"); keysAfter != keysBefore {
		t.Errorf("keys rotate with a stray argument rotated:\nbefore:\n%s\nafter:\n%s", keysBefore, keysAfter)
	}
}

// TestCommandUsageErrorsShowOwnHelp: a command used wrongly shows its own
// synopsis, not every command's.
func TestCommandUsageErrorsShowOwnHelp(t *testing.T) {
	t.Parallel()
	env := []string{"AUTHZ_DATABASE_URL=" + pgtest.URL(t), "AUTHZ_ENCRYPTION_KEY=" + testEncryptionKey}
	for _, args := range [][]string{
		{"client", "create"},
		{"client", "show"},
		{"user", "create"},
		{"token", "initial-access", "create", "--allow-grant", "client_credentials"},
	} {
		name := strings.Join(args[:min(len(args), 3)], " ")
		if args[0] != "token" {
			name = strings.Join(args[:2], " ")
		}
		_, stderr, code := runCmd(t, env, "", args...)
		if code != 2 || !strings.Contains(stderr, "Usage:\n  authz "+name) || strings.Contains(stderr, "  authz version") {
			t.Errorf("authz %v: exit %d, want 2 and only the help of %q:\n%s", args, code, name, stderr)
		}
	}
}

// TestInitialAccessTokenRefusals: a negative --ttl is a mistake, not "never
// expires" (what 0 means), and --scope/--resource allowances are held to
// what the server offers, as `client create` holds them.
func TestInitialAccessTokenRefusals(t *testing.T) {
	t.Parallel()
	env := []string{"AUTHZ_DATABASE_URL=" + pgtest.URL(t), "AUTHZ_ENCRYPTION_KEY=" + testEncryptionKey,
		"AUTHZ_SCOPES=read,write", "AUTHZ_RESOURCES=https://api.example.com"}
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--ttl", "-1h"}, 2, "authz: --ttl -1h0m0s: a lifetime cannot be negative (0: the token never expires)\n"},
		{[]string{"--scope", "admin"}, 1, `authz: --scope "admin": the server does not offer it (AUTHZ_SCOPES="read,write")` + "\n"},
		{[]string{"--allow-grant", "client_credentials", "--scope", "read", "--resource", "https://evil.example.com"}, 1,
			`authz: --resource "https://evil.example.com": the server does not offer it (AUTHZ_RESOURCES="https://api.example.com")` + "\n"},
	} {
		out, stderr, code := runCmd(t, env, "", append([]string{"token", "initial-access", "create"}, tt.args...)...)
		if code != tt.code || !strings.HasPrefix(stderr, tt.want) || out != "" {
			t.Errorf("token initial-access create %v: exit %d, stdout %q, stderr %q; want exit %d, %q and no token", tt.args, code, out, stderr, tt.code, tt.want)
		}
	}
	if out, stderr, code := runCmd(t, env, "", "token", "initial-access", "create", "--ttl", "1h", "--allow-grant", "client_credentials",
		"--scope", "read", "--resource", "https://API.example.com/"); code != 0 || !strings.HasPrefix(out, "authz_iat_") {
		t.Errorf("a good token refused: exit %d %s", code, stderr)
	}
}

// TestAuditListRefusesNegativeLimit: --limit -1 is a mistake, not "no limit".
func TestAuditListRefusesNegativeLimit(t *testing.T) {
	t.Parallel()
	env := []string{"AUTHZ_DATABASE_URL=" + pgtest.URL(t), "AUTHZ_ENCRYPTION_KEY=" + testEncryptionKey}
	out, stderr, code := runCmd(t, env, "", "audit", "list", "--limit", "-1")
	if code != 2 || !strings.HasPrefix(stderr, "authz: --limit -1: ") {
		t.Errorf("audit list --limit -1: exit %d\n%s%s", code, out, stderr)
	}
}

// TestAuditListRefusesUnknownEvent: an unknown --event name is a usage
// error listing the names, not an empty table that reads as "nothing
// happened".
func TestAuditListRefusesUnknownEvent(t *testing.T) {
	t.Parallel()
	env := []string{"AUTHZ_DATABASE_URL=" + pgtest.URL(t), "AUTHZ_ENCRYPTION_KEY=" + testEncryptionKey}
	out, stderr, code := runCmd(t, env, "", "audit", "list", "--event", "login.fail")
	if code != 2 || out != "" || !strings.HasPrefix(stderr, `authz: --event "login.fail": no such event; the events are login.succeeded, login.failed,`) ||
		!strings.Contains(stderr, "code.replayed") || !strings.Contains(stderr, "user.deleted") || !strings.Contains(stderr, "authz audit list") {
		t.Errorf("audit list --event login.fail: exit %d\n%s%s", code, out, stderr)
	}
	if out, stderr, code := runCmd(t, env, "", "audit", "list", "--event", "login.failed"); code != 0 || !strings.HasPrefix(out, "TIME") {
		t.Errorf("audit list --event login.failed: exit %d\n%s%s", code, out, stderr)
	}
}

// TestClientMetadataErrorsNameTheFlag: a refused client create or update
// names the flag the operator typed, not the RFC 7591 field behind it
// under an OAuth error code ("invalid_redirect_uri: redirect_uris: …").
func TestClientMetadataErrorsNameTheFlag(t *testing.T) {
	t.Parallel()
	env := []string{"AUTHZ_DATABASE_URL=" + pgtest.URL(t), "AUTHZ_ENCRYPTION_KEY=" + testEncryptionKey}
	create := []string{"client", "create", "--name", "x"}
	out, stderr, code := runCmd(t, env, "", "client", "create", "--name", "pub", "--public", "--redirect-uri", "http://127.0.0.1/cb", "--json")
	if code != 0 {
		t.Fatalf("client create --public: exit %d %s", code, stderr)
	}
	public := strings.Split(strings.Split(out, `"client_id":"`)[1], `"`)[0]
	for _, tt := range []struct {
		args []string
		want string
	}{
		{append(create, "--redirect-uri", "foo"), `authz: --redirect-uri: "foo" is not an absolute URI` + "\n"},
		{create, "authz: --redirect-uri: at least one is required for the authorization_code grant\n"},
		{append(create, "--redirect-uri", "https://a.example.com/cb", "--grant-type", "password"), "authz: --grant-type: no supported grant type"},
		{append(create, "--redirect-uri", "https://a.example.com/cb", "--id-token-alg", "HS256"), `authz: --id-token-alg: unsupported value "HS256"`},
		{append(create, "--redirect-uri", "https://a.example.com/cb", "--post-logout-redirect-uri", "javascript:x"), "authz: --post-logout-redirect-uri: "},
		{append(create, "--redirect-uri", "https://a.example.com/cb", "--application-type", "tv"), "authz: --application-type: "},
		{[]string{"client", "update", public, "--rotate-secret"}, "authz: --rotate-secret: the client is public (token_endpoint_auth_method none): it has no secret\n"},
		{[]string{"client", "update", public, "--auth-method", "client_secret_basic"}, "authz: --auth-method: a client cannot switch between public and confidential\n"},
	} {
		_, stderr, code := runCmd(t, env, "", tt.args...)
		if code != 1 || !strings.HasPrefix(stderr, tt.want) {
			t.Errorf("authz %v: exit %d, stderr %q; want exit 1 and %q", tt.args, code, stderr, tt.want)
		}
	}
}

// TestServeOnBusyAddressPrintsNoBanner: `make run` while something else
// holds the port printed "authz is running in development mode (listening
// on …)" with a new demo password and a URL, and only then failed; the
// URL led to whatever held the port. Now the listeners open first, and the
// error names AUTHZ_ADDR.
func TestServeOnBusyAddressPrintsNoBanner(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	addr := busy.Addr().String()
	out, stderr, code := runCmd(t, []string{"AUTHZ_ADDR=" + addr, "AUTHZ_ISSUER=http://" + addr}, "", "serve", "--dev")
	if code != 1 || strings.Contains(out, "running") || strings.Contains(out, "password") ||
		!strings.Contains(stderr, "authz: AUTHZ_ADDR: listen tcp "+addr) {
		t.Errorf("serve --dev on a busy address: exit %d\nstdout:\n%s\nstderr:\n%s\nwant exit 1, no banner, an error naming AUTHZ_ADDR", code, out, stderr)
	}
}

// TestAuditListFindsDeletedUsers: `audit list --user NAME` after `user
// delete NAME` (the usual order after an incident) listed nothing, not
// even the deletion: the name no longer resolved to the user's ID. It now
// resolves through the user.deleted event, and the USER column names the
// deleted user.
func TestAuditListFindsDeletedUsers(t *testing.T) {
	t.Parallel()
	env := []string{"AUTHZ_DATABASE_URL=" + pgtest.URL(t), "AUTHZ_ENCRYPTION_KEY=" + testEncryptionKey}
	for _, args := range [][]string{{"user", "create", "dora", "--password-stdin"}, {"user", "unlock", "dora"}, {"user", "delete", "dora"},
		{"user", "create", "dora", "--password-stdin"}, {"user", "unlock", "dora"}} {
		if _, stderr, code := runCmd(t, env, "a-long-enough-password\n", args...); code != 0 {
			t.Fatalf("authz %v: exit %d %s", args, code, stderr)
		}
	}
	// The live dora: only her own event.
	out, stderr, code := runCmd(t, env, "", "audit", "list", "--user", "dora", "--json")
	if code != 0 || strings.Count(out, "\n") != 1 || !strings.Contains(out, `"event":"lockout.cleared"`) {
		t.Errorf("audit list --user dora (the live one): exit %d\n%s%s", code, out, stderr)
	}
	if _, stderr, code := runCmd(t, env, "", "user", "delete", "dora"); code != 0 {
		t.Fatalf("user delete: %s", stderr)
	}
	// Both deleted doras: each one's unlock and deletion, oldest first.
	out, stderr, code = runCmd(t, env, "", "audit", "list", "--user", "dora")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 5 {
		t.Fatalf("audit list --user dora after deleting her: exit %d, want a header and 4 events:\n%s%s", code, out, stderr)
	}
	for i, want := range []string{"lockout.cleared", "user.deleted", "lockout.cleared", "user.deleted"} {
		if f := strings.Fields(lines[i+1]); f[1] != want || f[3] != "dora(deleted)" {
			t.Errorf("event %d: %q, want %s by dora(deleted)", i, lines[i+1], want)
		}
	}
	out, _, _ = runCmd(t, env, "", "audit", "list", "--user", "dora", "--limit", "1")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 || !strings.Contains(lines[1], "user.deleted") {
		t.Errorf("audit list --user dora --limit 1: want the newest event only:\n%s", out)
	}
}
