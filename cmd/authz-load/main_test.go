package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authzd/authz/middleware"
	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/store"
	"github.com/authzd/authz/provider/store/postgres"
	"github.com/authzd/authz/provider/store/postgres/pgtest"
)

// testbed is two authz replicas on one PostgreSQL schema, sharing an
// issuer as production replicas do, and the example resource server's
// middleware in front of a handler.
type testbed struct {
	replicas []string
	resource string // the protected URL
	dsn      string
	args     []string // the flags every run needs
}

func newTestbed(t *testing.T) testbed {
	t.Helper()
	dsn := pgtest.URL(t)
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	st := postgres.New(pool)

	rs := httptest.NewUnstartedServer(nil)
	resURL := "http://" + rs.Listener.Addr().String() + "/api"
	a := httptest.NewUnstartedServer(nil)
	b := httptest.NewUnstartedServer(nil)
	issuer := "http://" + a.Listener.Addr().String()
	key := make([]byte, 32) // replicas share the key that encrypts the signing keys
	_, _ = rand.Read(key)
	for _, ts := range []*httptest.Server{a, b} {
		srv, err := provider.New(context.Background(), provider.Options{
			Issuer: issuer, Store: st, Scopes: []string{"read"}, Resources: []string{resURL}, EncryptionKey: key,
			RefreshGrace: provider.DefaultRefreshGrace, // as authz serve has it; zero is "no grace window"
			Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		ts.Config.Handler = srv.Handler()
		ts.Start()
		t.Cleanup(ts.Close)
	}
	v, err := middleware.New(middleware.Config{Issuer: issuer, Resource: resURL, ScopesSupported: []string{"read"}})
	if err != nil {
		t.Fatal(err)
	}
	rs.Config.Handler = v.Require("read")(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("hello")) }))
	rs.Start()
	t.Cleanup(rs.Close)

	ctx, now := context.Background(), time.Now()
	u, err := provider.NewUser("load", "load-password", provider.UserProfile{}, now, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	mk := func(m store.ClientMetadata) (string, string) {
		m.Name, m.TokenEndpointAuthMethod, m.Scopes = "load", oauth.AuthClientSecretBasic, []string{"read"}
		m.ApplicationType = provider.ApplicationTypeFor(m.RedirectURIs)
		c, secret, err := provider.NewClient(m, now, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.CreateClient(ctx, c); err != nil {
			t.Fatal(err)
		}
		return c.ID, secret
	}
	ccID, ccSecret := mk(store.ClientMetadata{GrantTypes: []string{oauth.GrantClientCredentials}})
	codeID, codeSecret := mk(store.ClientMetadata{RedirectURIs: []string{"http://127.0.0.1/callback"},
		GrantTypes: []string{oauth.GrantAuthorizationCode, oauth.GrantRefreshToken}})
	return testbed{
		replicas: []string{issuer, "http://" + b.Listener.Addr().String()},
		resource: resURL + "/hello", dsn: dsn,
		args: []string{"-issuer", issuer, "-client-id", ccID, "-client-secret", ccSecret,
			"-code-client-id", codeID, "-code-client-secret", codeSecret,
			"-username", "load", "-password", "load-password", "-database-url", dsn,
			"-server-pid", strconv.Itoa(os.Getpid())},
	}
}

// TestEveryModeRuns runs each mode for a moment at two concurrency levels
// against two real replicas over HTTP and PostgreSQL: every level completes
// requests and none fails. It asserts counts, never speed.
func TestEveryModeRuns(t *testing.T) {
	tb := newTestbed(t)
	for _, mode := range modes {
		for _, shape := range []string{"pipelined", "sequential"} {
			if shape == "sequential" && !strings.HasPrefix(mode, "bound") {
				continue
			}
			t.Run(mode+"/"+shape, func(t *testing.T) {
				var out bytes.Buffer
				args := append(tb.args, "-mode", mode, "-concurrency", "1,2", "-duration", "250ms",
					"-target", tb.resource, "-replicas", strings.Join(tb.replicas, ","), "-bound-shape", shape)
				levels, err := run(context.Background(), args, &out)
				if err != nil {
					t.Fatalf("run: %v\n%s", err, out.String())
				}
				if len(levels) != 2 {
					t.Fatalf("%d levels reported, want 2:\n%s", len(levels), out.String())
				}
				for _, lv := range levels {
					if lv.OK == 0 || len(lv.Errors) != 0 {
						t.Fatalf("level %d: ok=%d errors=%v\n%s", lv.Concurrency, lv.OK, lv.Errors, out.String())
					}
					if lv.ServerCPU < 0 || lv.LoadCPU < 0 || len(lv.RSS) != 1 {
						t.Fatalf("level %d: server CPU, load program CPU and RSS not measured\n%s", lv.Concurrency, out.String())
					}
				}
				if !strings.Contains(out.String(), "load program CPU: ") {
					t.Fatalf("the load program's own CPU not printed:\n%s", out.String())
				}
				if !strings.Contains(out.String(), "postgres: server_version=") {
					t.Fatalf("PostgreSQL settings not printed:\n%s", out.String())
				}
				if mode == "refresh_shared" && levels[1].Notes["pair rounds"] == 0 {
					t.Fatalf("no pair of concurrent refreshes ran:\n%s", out.String())
				}
			})
		}
	}
}

// TestBoundCodeStoresTheAuditEvent: bound_code does the store's work for a
// code exchange, the grant.created audit event included, in both shapes:
// every grant it redeemed has exactly one grant.created naming it.
func TestBoundCodeStoresTheAuditEvent(t *testing.T) {
	for _, shape := range []string{"pipelined", "sequential"} {
		t.Run(shape, func(t *testing.T) {
			tb := newTestbed(t)
			var out bytes.Buffer
			args := append(tb.args, "-mode", "bound_code", "-concurrency", "2", "-duration", "250ms", "-bound-shape", shape)
			levels, err := run(context.Background(), args, &out)
			if err != nil {
				t.Fatalf("run: %v\n%s", err, out.String())
			}
			if len(levels) != 1 || levels[0].OK == 0 {
				t.Fatalf("bound_code redeemed nothing:\n%s", out.String())
			}
			pool, err := pgxpool.New(context.Background(), tb.dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer pool.Close()
			var redeemed, without int
			if err := pool.QueryRow(context.Background(), `SELECT count(*),
				count(*) FILTER (WHERE (SELECT count(*) FROM audit_events a WHERE a.event = 'grant.created' AND a.details->>'grant_id' = g.id) <> 1)
				FROM grants g WHERE g.last_used_at IS NOT NULL`).Scan(&redeemed, &without); err != nil {
				t.Fatal(err)
			}
			if redeemed < levels[0].OK || without != 0 {
				t.Fatalf("%d grants redeemed (%d timed), %d of them without exactly one grant.created", redeemed, levels[0].OK, without)
			}
		})
	}
}

// TestMixedSoakRuns is the soak (make soak) in miniature: every flow at
// once across both replicas, and a verdict with no 5xx and no grant lost.
func TestMixedSoakRuns(t *testing.T) {
	tb := newTestbed(t)
	var out bytes.Buffer
	args := append(tb.args, "-mode", "mixed", "-concurrency", "6", "-duration", "1s", "-replicas", strings.Join(tb.replicas, ","))
	levels, err := run(context.Background(), args, &out)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	for _, want := range []string{"mode=authorization_code", "mode=refresh_shared", "mode=mixed_revoke", "mode=mixed_introspect",
		"soak: 5xx: 0, no answer: 0, failed checks: 0, other errors: 0", "grants revoked that should not have been: 0", "soak: OK"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("output lacks %q:\n%s", want, out.String())
		}
	}
	t.Log(out.String())
	if levels[0].OK == 0 || levels[0].Notes["grants revoked on purpose"] == 0 {
		t.Fatalf("ok=%d, grants revoked on purpose=%d\n%s", levels[0].OK, levels[0].Notes["grants revoked on purpose"], out.String())
	}
}

// TestRefusesNonLoopback: the program only ever sends traffic to this
// machine.
func TestRefusesNonLoopback(t *testing.T) {
	for _, args := range [][]string{
		{"-issuer", "http://example.com"},
		{"-replicas", "http://127.0.0.1:1,http://10.0.0.1:8080"},
		{"-target", "http://192.0.2.1/api"},
	} {
		if _, err := run(context.Background(), args, io.Discard); err == nil || !strings.Contains(err.Error(), "loopback") {
			t.Fatalf("%v: err = %v, want a loopback refusal", args, err)
		}
	}
}

// TestMixedSoakFailsOnADeadReplica: the verdict is a failure, with the
// unanswered requests counted, when a replica stops answering mid-run (as
// when it crashed at a janitor tick).
func TestMixedSoakFailsOnADeadReplica(t *testing.T) {
	tb := newTestbed(t)
	target, _ := url.Parse(tb.replicas[1])
	proxy := httputil.NewSingleHostReverseProxy(target)
	var dead atomic.Bool
	// Setup (sign-in, first grants) uses the authorize and token endpoints
	// only; the first introspection or revocation is mid-run, and from then
	// on this replica drops every connection without an answer.
	gate := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, pathIntrospect) || strings.HasSuffix(r.URL.Path, pathRevoke) {
			dead.Store(true)
		}
		if dead.Load() {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(gate.Close)
	var out bytes.Buffer
	args := append(tb.args, "-mode", "mixed", "-concurrency", "6", "-duration", "500ms", "-replicas", tb.replicas[0]+","+gate.URL)
	_, err := run(context.Background(), args, &out)
	if err == nil || !strings.Contains(err.Error(), "soak failed") {
		t.Fatalf("err = %v, want the soak to fail\n%s", err, out.String())
	}
	if strings.Contains(out.String(), "no answer: 0,") || !strings.Contains(out.String(), "soak: requests by status: 0: ") {
		t.Fatalf("unanswered requests not reported:\n%s", out.String())
	}
}
