package main

import (
	"net"
	"runtime"
	"strings"
	"testing"

	"github.com/authzd/authz/provider/store/postgres/pgtest"
)

// TestHelpForEveryCommand: `authz --help`, `authz help`, `authz GROUP
// --help` and `authz COMMAND --help` all answer, for every command in the
// table, with its synopsis and (for commands with flags) its flags.
func TestHelpForEveryCommand(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		out, stderr, code := runCmd(t, nil, "", args...)
		if code != 0 || !strings.HasPrefix(out, "authz: an OAuth 2.1 authorization server\n\nUsage:\n") {
			t.Errorf("authz %v: exit %d\n%s%s", args, code, out, stderr)
		}
		for _, c := range commands() {
			if !strings.Contains(out, "  authz "+c.name) {
				t.Errorf("authz %v does not list %q", args, c.name)
			}
		}
	}
	for _, c := range commands() {
		if c.run == nil {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if c.name == "version" {
				return // takes no flags; TestVersion
			}
			args := append(strings.Fields(c.name), "--help")
			out, stderr, code := runCmd(t, nil, "", args...)
			all := out + stderr
			if code != 0 || !strings.Contains(all, "Usage:\n  authz "+c.name) || !strings.Contains(all, c.summary) || !strings.Contains(all, "-issuer") {
				t.Errorf("authz %s --help: exit %d\n%s", c.name, code, all)
			}
		})
	}
	// Groups: their subcommands, on stdout, exit 0; `authz help GROUP` alike.
	for _, g := range []string{"client", "user", "keys", "audit", "token", "token initial-access"} {
		for _, args := range [][]string{append(strings.Fields(g), "--help"), append([]string{"help"}, strings.Fields(g)...)} {
			out, stderr, code := runCmd(t, nil, "", args...)
			if code != 0 || stderr != "" {
				t.Errorf("authz %v: exit %d %s", args, code, stderr)
			}
			for _, c := range commands() {
				listed := strings.Contains(out, "  authz "+c.name+" ") || strings.Contains(out, "  authz "+c.name+"\n")
				if listed != strings.HasPrefix(c.name, g+" ") {
					t.Errorf("authz %v lists %s: %v, want %v:\n%s", args, c.name, listed, !listed, out)
				}
			}
		}
	}
	const userHelp = `authz: an OAuth 2.1 authorization server

Usage:
  authz user create NAME --password-stdin [--name N] [--email E [--email-verified]]
      create a user (password of at least 8 characters on stdin)
  authz user set-password NAME --password-stdin
      set a user's password
  authz user delete NAME
      delete a user and revoke their grants
  authz user list
      list users
  authz user unlock NAME
      clear NAME's failed sign-ins (every client IP)

Every command reads the configuration flags ("authz serve --help" lists
them); each has an AUTHZ_* variable. "authz COMMAND --help" shows a
command's own flags.
`
	if out, _, _ := runCmd(t, nil, "", "user", "--help"); out != userHelp {
		t.Errorf("authz user --help:\n%s\nwant:\n%s", out, userHelp)
	}
}

// TestUsageErrors: mistakes say what is wrong and show the help of the
// command they concern, exit 2.
func TestUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{nil, []string{"authz: no command given\n", "Usage:"}},
		{[]string{"client"}, []string{"authz: client needs a subcommand\n", "  authz client create", "  authz client delete ID"}},
		{[]string{"client", "frobnicate"}, []string{`authz: unknown client subcommand "frobnicate"`, "  authz client list"}},
		{[]string{"token", "initial-access"}, []string{"authz: token initial-access needs a subcommand", "  authz token initial-access create"}},
		{[]string{"frobnicate"}, []string{`authz: unknown command "frobnicate"`, "  authz serve"}},
		{[]string{"help", "frobnicate"}, []string{`authz: unknown command "frobnicate"`}},
		{[]string{"version", "extra"}, []string{"authz: version takes no arguments", "  authz version"}},
	} {
		_, stderr, code := runCmd(t, nil, "", tt.args...)
		if code != 2 {
			t.Errorf("authz %v: exit %d, want 2", tt.args, code)
		}
		for _, w := range tt.want {
			if !strings.Contains(stderr, w) {
				t.Errorf("authz %v: stderr lacks %q:\n%s", tt.args, w, stderr)
			}
		}
		if tt.args != nil && tt.args[0] == "client" && strings.Contains(stderr, "authz user create") {
			t.Errorf("authz %v shows every command's help, want the client group's", tt.args)
		}
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	out, stderr, code := runCmd(t, nil, "", "version")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "authz ") || !strings.HasPrefix(lines[1], "commit ") ||
		lines[2] != runtime.Version()+" "+runtime.GOOS+"/"+runtime.GOARCH {
		t.Errorf("authz version: exit %d\n%s%s", code, out, stderr)
	}
}

// TestConfigErrorsNameTheSetting: each bad setting is reported by its
// AUTHZ_* name, in one line, exit 1.
func TestConfigErrorsNameTheSetting(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() })
	for _, tt := range []struct{ env, want string }{
		{"AUTHZ_LOG_LEVEL=loud", `AUTHZ_LOG_LEVEL="loud"`},
		{"AUTHZ_LOG_FORMAT=xml", `AUTHZ_LOG_FORMAT="xml"`},
		{"AUTHZ_SIGNING_ALG=HS256", `AUTHZ_SIGNING_ALG="HS256"`},
		{`AUTHZ_SCOPES=read,bad"scope`, "AUTHZ_SCOPES"},
		{"AUTHZ_RESOURCES=not-a-url", "AUTHZ_RESOURCES"},
		{"AUTHZ_AUDIT_RETENTION=0s", "AUTHZ_AUDIT_RETENTION must be positive"},
		{"AUTHZ_AUDIT_RETENTION=soon", `AUTHZ_AUDIT_RETENTION="soon"`},
		{"AUTHZ_ACCESS_LOG=maybe", `AUTHZ_ACCESS_LOG="maybe"`},
		{"AUTHZ_ADMIN_ADDR=" + busy.Addr().String(), "AUTHZ_ADMIN_ADDR"},
	} {
		t.Run(tt.env, func(t *testing.T) {
			t.Parallel()
			_, stderr, code := runCmd(t, []string{tt.env, "AUTHZ_ADDR=127.0.0.1:0"}, "", "serve")
			if code != 1 || !strings.Contains(stderr, tt.want) || strings.Count(strings.TrimSpace(stderr), "\n") > 0 && !strings.Contains(stderr, "level=") {
				t.Errorf("%s: exit %d, stderr %q; want exit 1 naming %s", tt.env, code, stderr, tt.want)
			}
		})
	}
}

// TestAdminRefusals: short passwords, scopes and resources the server does
// not offer, and unknown records, each with a plain message (no internal
// "store: " prefix).
func TestAdminRefusals(t *testing.T) {
	t.Parallel()
	env := []string{"AUTHZ_DATABASE_URL=" + pgtest.URL(t), "AUTHZ_ENCRYPTION_KEY=" + testEncryptionKey,
		"AUTHZ_SCOPES=read,write", "AUTHZ_RESOURCES=https://api.example.com,https://mcp.example.com/mcp"}
	if _, stderr, code := runCmd(t, env, "eight-ch\n", "user", "create", "erin", "--password-stdin"); code != 0 {
		t.Fatalf("an 8-character password: %s", stderr)
	}
	for _, tt := range []struct {
		name  string
		stdin string
		args  []string
		want  string
	}{
		{"7-character password", "seven-c\n", []string{"user", "create", "frank", "--password-stdin"}, "authz: the password must be at least 8 characters long (NIST SP 800-63B)\n"},
		{"7-character new password", "1234567\n", []string{"user", "set-password", "erin", "--password-stdin"}, "authz: the password must be at least 8 characters long (NIST SP 800-63B)\n"},
		{"scope not offered", "", []string{"client", "create", "--name", "x", "--redirect-uri", "https://a.example.com/cb", "--scope", "read", "--scope", "admin"},
			`authz: --scope "admin": the server does not offer it (AUTHZ_SCOPES="read,write")` + "\n"},
		{"resource not offered", "", []string{"client", "create", "--name", "x", "--redirect-uri", "https://a.example.com/cb", "--resource", "https://evil.example.com"},
			`authz: --resource "https://evil.example.com": the server does not offer it (AUTHZ_RESOURCES="https://api.example.com,https://mcp.example.com/mcp")` + "\n"},
		{"unknown client", "", []string{"client", "show", "nosuch"}, "authz: client nosuch: not found\n"},
		{"unknown client to delete", "", []string{"client", "delete", "nosuch"}, "authz: client nosuch: not found\n"},
		{"unknown user", "", []string{"user", "delete", "nosuch"}, "authz: user \"nosuch\": not found\n"},
		{"duplicate user", "a-long-enough-password\n", []string{"user", "create", "erin", "--password-stdin"}, "authz: user \"erin\" already exists\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, code := runCmd(t, env, tt.stdin, tt.args...)
			if code != 1 || stderr != tt.want {
				t.Errorf("exit %d, stderr %q; want exit 1, %q", code, stderr, tt.want)
			}
		})
	}
	// An offered scope and a resource written differently but equal after
	// normalisation are accepted.
	if _, stderr, code := runCmd(t, env, "", "client", "create", "--name", "ok", "--redirect-uri", "https://a.example.com/cb",
		"--scope", "read", "--resource", "https://MCP.example.com:443/mcp/"); code != 0 {
		t.Errorf("offered scope and resource refused: %s", stderr)
	}
}
