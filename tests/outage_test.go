package tests

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/store"
	"github.com/authzd/authz/provider/store/postgres"
	"github.com/authzd/authz/provider/store/postgres/pgtest"
)

// tcpProxy forwards loopback connections to a real PostgreSQL, and can cut
// them to simulate an outage without touching the database itself.
type tcpProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]bool
}

func newProxy(t testing.TB, target string) *tcpProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { ln.Close(); p.setDown(true) })
	go p.serve()
	return p
}

func (p *tcpProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c], p.conns[up] = true, true
		p.mu.Unlock()
		go func() { _, _ = io.Copy(up, c); up.Close() }()
		go func() { _, _ = io.Copy(c, up); c.Close() }()
	}
}

// proxiedPostgres opens a store on a fresh test schema through a proxy the
// test can cut.
func proxiedPostgres(t *testing.T) (*postgres.Store, *tcpProxy) {
	t.Helper()
	u, err := url.Parse(pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy := newProxy(t, u.Host)
	u.Host = proxy.ln.Addr().String()
	st, err := postgres.Open(context.Background(), u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st, proxy
}

// setDown cuts every connection and refuses new ones, or lets them through again.
func (p *tcpProxy) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		for c := range p.conns {
			c.Close()
		}
		p.conns = map[net.Conn]bool{}
	}
}

// TestDatabaseOutageIsNotInvalidGrant: while the database is unreachable the
// token endpoint answers 503 temporarily_unavailable with Retry-After (never
// invalid_grant, which clients treat as "log in again"), and the same
// refresh token works once the database is back.
func TestDatabaseOutageIsNotInvalidGrant(t *testing.T) {
	t.Parallel()
	st, proxy := proxiedPostgres(t)
	e := start(t, st, nil)
	user, pw := e.user("olga")
	c, secret, redirect := e.loopbackClient(false)
	code := e.codeFor(e.browser(), authRequest{clientID: c.ID, redirectURI: redirect, state: "o", verifier: testVerifier}, user, pw)
	tr := e.postToken(exchangeForm(code, redirect, testVerifier, nil), c.ID, secret)
	mustEqual(t, "status", tr.Status, 200)
	code2 := e.codeFor(e.browser(), authRequest{clientID: c.ID, redirectURI: redirect, state: "o2", verifier: testVerifier}, user, pw)

	proxy.setDown(true)
	refresh := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}}
	for _, tc := range []struct {
		name string
		form url.Values
	}{
		{"refresh", refresh},
		{"code exchange", exchangeForm(code2, redirect, testVerifier, nil)},
	} {
		r := e.postToken(tc.form, c.ID, secret)
		mustEqual(t, tc.name+" status", r.Status, http.StatusServiceUnavailable)
		mustEqual(t, tc.name+" error", r.Error, "temporarily_unavailable")
		if r.Header.Get("Retry-After") == "" {
			t.Fatalf("%s: no Retry-After", tc.name)
		}
	}
	resp, err := http.Get(e.issuer + provider.PathReadyz)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	mustEqual(t, "readyz while down", resp.StatusCode, http.StatusServiceUnavailable)

	proxy.setDown(false)
	r := e.postToken(refresh, c.ID, secret)
	mustEqual(t, "refresh after the outage", r.Status, 200)
	r = e.postToken(exchangeForm(code2, redirect, testVerifier, nil), c.ID, secret)
	mustEqual(t, "code after the outage", r.Status, 200)
	resp, err = http.Get(e.issuer + provider.PathReadyz)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	mustEqual(t, "readyz after", resp.StatusCode, 200)
}

// cutMidRedeem cuts the database connection inside the code-consume
// transaction, after the code's row was deleted and before the refresh
// token is stored: the worst moment for a non-atomic exchange.
type cutMidRedeem struct {
	*postgres.Store
	proxy *tcpProxy
	armed atomic.Bool
}

func (s *cutMidRedeem) ConsumeAuthCode(ctx context.Context, h []byte, now time.Time, redeem store.RedeemFunc) (store.AuthCode, error) {
	if redeem == nil || !s.armed.CompareAndSwap(true, false) {
		return s.Store.ConsumeAuthCode(ctx, h, now, redeem)
	}
	return s.Store.ConsumeAuthCode(ctx, h, now, func(c store.AuthCode) (*store.RefreshToken, error) {
		rt, err := redeem(c)
		s.proxy.setDown(true)
		return rt, err
	})
}

// TestOutageDuringCodeExchangeKeepsTheCode: the connection drops in the
// middle of redeeming a code. The client gets 503, not invalid_grant, and
// its retry with the same code succeeds: the code was not spent without
// its refresh token, and the retry is not taken for a replay.
func TestOutageDuringCodeExchangeKeepsTheCode(t *testing.T) {
	t.Parallel()
	pg, proxy := proxiedPostgres(t)
	st := &cutMidRedeem{Store: pg, proxy: proxy}
	e := start(t, st, nil)
	user, pw := e.user("petra")
	c, secret, redirect := e.loopbackClient(false)
	code := e.codeFor(e.browser(), authRequest{clientID: c.ID, redirectURI: redirect, state: "p", verifier: testVerifier}, user, pw)

	st.armed.Store(true)
	r := e.postToken(exchangeForm(code, redirect, testVerifier, nil), c.ID, secret)
	mustEqual(t, "status during the cut", r.Status, http.StatusServiceUnavailable)
	mustEqual(t, "error during the cut", r.Error, "temporarily_unavailable")
	if st.armed.Load() {
		t.Fatal("the cut never happened")
	}

	proxy.setDown(false)
	r = e.postToken(exchangeForm(code, redirect, testVerifier, nil), c.ID, secret)
	mustEqual(t, "retry with the same code", r.Status, 200)
	r = e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r.RefreshToken}}, c.ID, secret)
	mustEqual(t, "its refresh token", r.Status, 200)
}
