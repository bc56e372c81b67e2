package tests

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/store"
	"github.com/authzd/authz/provider/store/memory"
)

// The hot-path benchmarks measure authz's own work per token request: the
// whole handler chain (observe, recoverer, limitBody, the router, cors,
// jsonEndpoint, client authentication, the grant, signing, the access log)
// served in process on the memory store, one request at a time. No
// network, no database and no concurrency, so allocs/op and B/op are
// deterministic and an instruction count under callgrind is repeatable
// (README, Benchmarks: "Per-request work"). The Postgres benchmarks in
// bench_test.go measure throughput; these measure cost.

// hotServe serves one token request in process and returns the body.
func hotServe(b *testing.B, h http.Handler, body, id, secret string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, provider.PathToken, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, secret)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusOK {
		b.Fatalf("status %d: %s", w.Code, w.Body)
	}
	return w
}

// BenchmarkRefreshHandler rotates one chain of refresh tokens.
func BenchmarkRefreshHandler(b *testing.B) {
	e := start(b, memory.New(), nil)
	c, secret, redirect := e.loopbackClient(false)
	code := e.codes(1, c, redirect)[0]
	rt := e.postToken(exchangeForm(code, redirect, testVerifier, nil), c.ID, secret).RefreshToken
	h := e.srv.Handler()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		w := hotServe(b, h, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}.Encode(), c.ID, secret)
		rt = jsonField(w.Body.Bytes(), "refresh_token")
	}
}

// BenchmarkCodeExchangeHandler redeems authorization codes minted before
// the timer starts.
func BenchmarkCodeExchangeHandler(b *testing.B) {
	e := start(b, memory.New(), nil)
	c, secret, redirect := e.loopbackClient(false)
	codes := e.codes(b.N, c, redirect)
	h := e.srv.Handler()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		hotServe(b, h, exchangeForm(codes[i], redirect, testVerifier, nil).Encode(), c.ID, secret)
	}
}

// BenchmarkClientCredentialsHandler issues client_credentials tokens.
func BenchmarkClientCredentialsHandler(b *testing.B) {
	e := start(b, memory.New(), nil)
	svc, secret := e.client(store.ClientMetadata{GrantTypes: []string{oauth.GrantClientCredentials}, Scopes: []string{"read"}})
	body := url.Values{"grant_type": {"client_credentials"}, "resource": {"https://mcp.example.com/mcp"}}.Encode()
	h := e.srv.Handler()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		hotServe(b, h, body, svc.ID, secret)
	}
}
