package tests

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/store"
	"github.com/authzd/authz/provider/store/postgres"
	"github.com/authzd/authz/provider/store/postgres/pgtest"
)

// The benchmarks run the real server over loopback HTTP against PostgreSQL.
// Their numbers go in README; nothing asserts on them.

var benchClient = &http.Client{Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256}}

// benchPost posts a form and fails the benchmark on an unexpected status.
func benchPost(b *testing.B, target string, form url.Values, id, secret string, want int) []byte {
	req, _ := http.NewRequest("POST", target, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id != "" {
		req.SetBasicAuth(id, secret)
	}
	resp, err := benchClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		b.Fatalf("status %d: %s", resp.StatusCode, raw)
	}
	return raw
}

func benchEnv(b *testing.B) *env {
	b.Helper()
	pool := pgtest.Pool(b)
	logPostgresSettings(b, pool)
	return start(b, postgres.New(pool), nil)
}

// logPostgresSettings states what the figures were measured on: a
// benchmark's log is always printed. Durable (fsync, synchronous_commit and
// full_page_writes on) is what production runs; `make bench` starts such a
// server unless told otherwise (README, Benchmarks).
func logPostgresSettings(b *testing.B, pool *pgxpool.Pool) {
	b.Helper()
	var parts []string
	durable := true
	for _, name := range []string{"server_version", "fsync", "synchronous_commit", "full_page_writes", "shared_buffers"} {
		var v string
		if err := pool.QueryRow(context.Background(), "SHOW "+name).Scan(&v); err != nil {
			b.Fatal(err)
		}
		if name != "server_version" && name != "shared_buffers" && v == "off" {
			durable = false
		}
		parts = append(parts, name+"="+v)
	}
	verdict := "durable"
	if !durable {
		verdict = "NOT durable"
	}
	b.Logf("PostgreSQL %s: %s", verdict, strings.Join(parts, " "))
}

// codes makes n authorization codes for one signed-in browser (consent is
// remembered after the first, so each is one GET /authorize).
func (e *env) codes(n int, c store.Client, redirect string) []string {
	user, pw := e.user("bench")
	b := e.browser()
	req := authRequest{clientID: c.ID, redirectURI: redirect, state: "b", verifier: testVerifier}
	first := e.codeFor(b, req, user, pw)
	out := []string{first}
	var mu sync.Mutex
	var wg sync.WaitGroup
	per := (n + 7) / 8
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				p := b.do("GET", req.url(e.issuer), nil)
				u, _ := url.Parse(p.location)
				mu.Lock()
				out = append(out, u.Query().Get("code"))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return out[:n]
}

func BenchmarkCodeExchangePostgres(b *testing.B) {
	e := benchEnv(b)
	c, secret, redirect := e.loopbackClient(false)
	codes := e.codes(b.N, c, redirect)
	var next sync.Mutex
	i := 0
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			next.Lock()
			code := codes[i]
			i++
			next.Unlock()
			benchPost(b, e.issuer+provider.PathToken, exchangeForm(code, redirect, testVerifier, nil), c.ID, secret, 200)
		}
	})
}

// BenchmarkRefreshPostgres: 16 clients (2 cores × parallelism 8), each
// refreshing its own grant's chain, as many devices would.
func BenchmarkRefreshPostgres(b *testing.B) {
	e := benchEnv(b)
	c, secret, redirect := e.loopbackClient(false)
	// Each round of RunParallel starts 8×GOMAXPROCS clients, one code each;
	// the benchmark framework runs a handful of rounds.
	codes := e.codes(8*runtime.GOMAXPROCS(0)*10, c, redirect)
	var mu sync.Mutex
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		mu.Lock()
		if len(codes) == 0 {
			mu.Unlock()
			b.Error("out of authorization codes: raise the count above")
			return
		}
		code := codes[0]
		codes = codes[1:]
		mu.Unlock()
		tr := e.postToken(exchangeForm(code, redirect, testVerifier, nil), c.ID, secret)
		rt := tr.RefreshToken
		for pb.Next() {
			raw := benchPost(b, e.issuer+provider.PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, c.ID, secret, 200)
			rt = jsonField(raw, "refresh_token")
		}
	})
}

func BenchmarkClientCredentialsPostgres(b *testing.B) {
	e := benchEnv(b)
	svc, secret := e.client(store.ClientMetadata{GrantTypes: []string{oauth.GrantClientCredentials}, Scopes: []string{"read"}})
	form := url.Values{"grant_type": {"client_credentials"}, "resource": {"https://mcp.example.com/mcp"}}
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			benchPost(b, e.issuer+provider.PathToken, form, svc.ID, secret, 200)
		}
	})
}

func BenchmarkIntrospectionPostgres(b *testing.B) {
	e := benchEnv(b)
	svc, secret := e.resourceServer(store.ClientMetadata{Scopes: []string{"read"}})
	user, pw := e.user("intro")
	c, csecret, redirect := e.loopbackClient(false)
	code := e.codeFor(e.browser(), authRequest{clientID: c.ID, redirectURI: redirect, state: "i", verifier: testVerifier}, user, pw)
	tr := e.postToken(exchangeForm(code, redirect, testVerifier, nil), c.ID, csecret)
	benchIntrospect(b, e, tr.AccessToken, svc.ID, secret)
}

// BenchmarkIntrospectionClientCredentialsPostgres introspects a token
// without a grant, as `make load`'s introspect mode does: the store's
// answer is one statement (revoked? client still there?), where
// BenchmarkIntrospectionPostgres's token of a grant takes one batch.
func BenchmarkIntrospectionClientCredentialsPostgres(b *testing.B) {
	e := benchEnv(b)
	svc, secret := e.resourceServer(store.ClientMetadata{Scopes: []string{"read"}})
	tr := e.postToken(url.Values{"grant_type": {"client_credentials"}}, svc.ID, secret)
	if tr.Status != 200 {
		b.Fatalf("client_credentials: %d %s", tr.Status, tr.Error)
	}
	benchIntrospect(b, e, tr.AccessToken, svc.ID, secret)
}

// benchIntrospect introspects token as the resource server svcID, from 8
// goroutines per core; every answer must be active.
func benchIntrospect(b *testing.B, e *env, token, svcID, secret string) {
	form := url.Values{"token": {token}}
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			raw := benchPost(b, e.issuer+provider.PathIntrospect, form, svcID, secret, 200)
			if !strings.Contains(string(raw), `"active":true`) {
				b.Fatalf("inactive: %s", raw)
			}
		}
	})
}

// jsonField extracts a string field from a small JSON object without the
// cost of a full decode showing up in the numbers.
func jsonField(raw []byte, name string) string {
	s := string(raw)
	k := `"` + name + `":"`
	i := strings.Index(s, k)
	if i < 0 {
		return ""
	}
	s = s[i+len(k):]
	return s[:strings.IndexByte(s, '"')]
}

// BenchmarkExampleServiceHTTP is examples/resource-server (a separate
// process) answering GET /api/hello over loopback with one JWT, i.e. the
// middleware's cached path plus Go's HTTP stack. The benchmark's client
// shares the machine's cores with the service.
func BenchmarkExampleServiceHTTP(b *testing.B) {
	port := freePort(b)
	res := fmt.Sprintf("http://127.0.0.1:%d/api", port)
	e := start(b, storeKinds[0].open(b), func(o *provider.Options) { o.Resources = []string{res} })
	s := startService(b, e.issuer, port)
	svc, secret := e.client(store.ClientMetadata{GrantTypes: []string{oauth.GrantClientCredentials}, Scopes: []string{"read"}})
	tok := e.ccToken(b, svc.ID, secret, res, "read")
	target := s.base + "/api/hello"
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest("GET", target, nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := benchClient.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}
