package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authzd/authz/provider/store/postgres/pgtest"
)

// hangingProxy stands for a hung database: it accepts connections and
// never answers. With a target it first forwards to that PostgreSQL, and
// hangs every connection (holding what either side sends) from the moment
// a client message contains hangOn: a database that stops answering after
// the connection check, in the middle of start-up.
type hangingProxy struct {
	ln     net.Listener
	target string
	hangOn []byte

	mu   sync.Mutex
	hung bool
}

func newHangingProxy(t *testing.T, target, hangOn string) *hangingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &hangingProxy{ln: ln, target: target, hangOn: []byte(hangOn), hung: target == ""}
	var conns sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	track := func(c net.Conn) {
		mu.Lock()
		defer mu.Unlock()
		open = append(open, c)
	}
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		conns.Wait()
	})
	conns.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			track(c)
			if p.target == "" {
				// Read and discard: the TCP connection works, the
				// database says nothing.
				conns.Go(func() { _, _ = bytes.NewBuffer(nil).ReadFrom(c) })
				continue
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			track(up)
			conns.Go(func() { p.pipe(up, c, true) })
			conns.Go(func() { p.pipe(c, up, false) })
		}
	})
	return p
}

// pipe copies src to dst until the proxy hangs, then reads and drops.
func (p *hangingProxy) pipe(dst, src net.Conn, fromClient bool) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			if fromClient && bytes.Contains(buf[:n], p.hangOn) {
				p.hung = true
			}
			hung := p.hung
			p.mu.Unlock()
			if !hung {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *hangingProxy) addr() string { return p.ln.Addr().String() }

// runBounded runs the binary with a safety timeout that only keeps a
// broken build from hanging the test run; the assertions are about the
// exit and the message, not about how long it took.
func runBounded(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := command(env, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("authz %s still running against a hung database after 3 minutes (it must exit on its own):\n%s", strings.Join(args, " "), errb.String())
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// TestHungDatabaseFailsStartup: against a database that accepts the
// connection and never answers, `authz serve` and the administrative
// commands exit with status 1 and one message naming the database (user,
// host, port, database; never the password) and the step that got no
// answer, instead of hanging (serve fails fast, so that an orchestrator
// restarts it). Every start-up step is bounded: the connection check, the
// schema check, applying migrations, and the first queries (signing keys)
// before serve listens.
func TestHungDatabaseFailsStartup(t *testing.T) {
	t.Parallel()
	const password = "Hung-Db-Pa55word"

	// A database that never answers at all.
	silent := newHangingProxy(t, "", "")
	silentURL := "postgres://authz:" + password + "@" + silent.addr() + "/authz?sslmode=disable"
	silentName := "postgres://authz@" + silent.addr() + "/authz"

	// A real PostgreSQL reached through a proxy that hangs once a query
	// names the table given.
	proxied := func(t *testing.T, hangOn string) (dbURL, name string) {
		u, err := url.Parse(pgtest.URL(t))
		if err != nil {
			t.Fatal(err)
		}
		p := newHangingProxy(t, u.Host, hangOn)
		u.Host = p.addr()
		if _, ok := u.User.Password(); !ok {
			// The test server trusts loopback; a password in the URL is
			// still one the output must not show.
			u.User = url.UserPassword(u.User.Username(), password)
		}
		return u.String(), "postgres://" + u.User.Username() + "@" + p.addr() + strings.TrimSuffix(u.Path, "/")
	}

	for _, tc := range []struct {
		name   string
		hangOn string // "": the database never answers
		env    []string
		args   []string
		want   string
		// from: where the database URL and timeout are given: "" the
		// environment, "file" an AUTHZ_CONFIG file ($FILE in want is its
		// path), "flag" --database-url and --db-timeout. The message names
		// the settings as given.
		from string
	}{
		{"serve, connecting", "", nil, []string{"serve"}, "did not answer within 1s while connecting (the bound is AUTHZ_DB_TIMEOUT)", ""},
		{"migrate, connecting", "", nil, []string{"migrate"}, "did not answer within 1s while connecting", ""},
		{"user list, connecting", "", nil, []string{"user", "list"}, "did not answer within 1s while connecting", ""},
		{"audit list, connecting", "", nil, []string{"audit", "list"}, "did not answer within 1s while connecting", ""},
		{"serve, applying migrations", "schema_migrations", nil, []string{"serve"}, "did not answer within 10s while applying migrations (the bound is 10 times AUTHZ_DB_TIMEOUT)", ""},
		{"client list, checking the schema", "schema_migrations", nil, []string{"client", "list"}, "did not answer within 1s while checking the schema version", ""},
		{"serve, loading signing keys", "signing_keys", []string{"AUTHZ_AUTO_MIGRATE=false"}, []string{"serve"}, "cannot be reached or failed", ""},
		{"keys list, the first query", "signing_keys", nil, []string{"keys", "list"}, "cannot be reached or failed", ""},
		{"serve, connecting, from the file", "", nil, []string{"serve"},
			"(the bound is AUTHZ_CONFIG $FILE: db-timeout): check that PostgreSQL is up and answering at AUTHZ_CONFIG $FILE: database-url", "file"},
		{"serve, connecting, from flags", "", nil, []string{"serve"},
			"(the bound is --db-timeout): check that PostgreSQL is up and answering at --database-url", "flag"},
		{"keys list, the first query, from flags", "signing_keys", nil, []string{"keys", "list"}, "check --database-url and try again", "flag"},
		{"keys list, the first query, from the file", "signing_keys", nil, []string{"keys", "list"}, "check AUTHZ_CONFIG $FILE: database-url and try again", "file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dbURL, name := silentURL, silentName
			if tc.hangOn != "" {
				dbURL, name = proxied(t, tc.hangOn)
			}
			// The URL and the timeout from the environment, the file or flags.
			env := append([]string{"AUTHZ_ENCRYPTION_KEY=" + testEncryptionKey, "AUTHZ_ADDR=127.0.0.1:0"}, tc.env...)
			args, want := tc.args, tc.want
			switch tc.from {
			case "":
				env = append(env, "AUTHZ_DATABASE_URL="+dbURL, "AUTHZ_DB_TIMEOUT=1s")
			case "file":
				file := filepath.Join(t.TempDir(), "authz.yaml")
				if err := os.WriteFile(file, []byte("database-url: "+dbURL+"\ndb-timeout: 1s\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				env = append(env, "AUTHZ_CONFIG="+file)
				want = strings.ReplaceAll(want, "$FILE", file)
			case "flag":
				args = append(slices.Clone(args), "--database-url", dbURL, "--db-timeout", "1s")
			}
			out, stderr, code := runBounded(t, env, args...)
			all := out + stderr
			t.Logf("exit %d: %s", code, stderr)
			if code != 1 {
				t.Errorf("exit status %d, want 1\n%s", code, all)
			}
			if !strings.Contains(stderr, "the database "+name+" ") || !strings.Contains(stderr, want) {
				t.Errorf("stderr does not name the database %s and say %q:\n%s", name, want, stderr)
			}
			if strings.Contains(all, password) {
				t.Errorf("output shows the database password:\n%s", all)
			}
		})
	}
}
