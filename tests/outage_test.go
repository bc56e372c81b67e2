package tests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/store"
	"github.com/authzd/authz/provider/store/postgres"
	"github.com/authzd/authz/provider/store/postgres/pgtest"
)

// tcpProxy forwards loopback connections to a real PostgreSQL, and can cut
// them (a refusing database) or stall them (a hung one: connections are
// accepted and kept open, nothing is forwarded) without touching the
// database itself.
type tcpProxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	down    bool
	hung    bool
	resumed *sync.Cond // broadcast when hung turns false
	conns   map[net.Conn]bool

	// dropCommitAck, when set, makes the proxy forward the next COMMIT to
	// the server and drop the server's answer, cutting that connection:
	// the transaction committed, the client never hears it. dropped
	// records that it happened.
	dropCommitAck, dropped atomic.Bool
}

func newProxy(t testing.TB, target string) *tcpProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	p.resumed = sync.NewCond(&p.mu)
	t.Cleanup(func() { ln.Close(); p.setHung(false); p.setDown(true) })
	go p.serve()
	return p
}

// commitComplete is PostgreSQL's CommandComplete message for COMMIT: 'C',
// the length 11, "COMMIT\0". The server sends it only once the commit is
// durable (or as durable as the server is configured to make it).
var commitComplete = []byte("C\x00\x00\x00\x0bCOMMIT\x00")

// pipe copies src to dst, holding each chunk while the proxy is hung.
// answers is the server-to-client direction: there, while dropCommitAck is
// armed, the answer to a COMMIT is dropped and both sides are cut, as a
// network that fails at the worst moment would.
func (p *tcpProxy) pipe(dst, src net.Conn, answers bool) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			for p.hung {
				p.resumed.Wait()
			}
			p.mu.Unlock()
			if answers && bytes.Contains(buf[:n], commitComplete) && p.dropCommitAck.CompareAndSwap(true, false) {
				p.dropped.Store(true)
				src.Close()
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// setHung stalls every connection, open and new (the database hangs), or
// lets what was held through.
func (p *tcpProxy) setHung(hung bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hung = hung
	if !hung {
		p.resumed.Broadcast()
	}
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
		go p.pipe(up, c, false)
		go p.pipe(c, up, true)
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
	// Cleanups run last-in first-out: let held traffic through before the
	// pool closes, so a test that fails while the proxy is hung ends quickly.
	t.Cleanup(func() { proxy.setHung(false) })
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
	pending := prepareTokenRequests(e, "olga")

	proxy.setDown(true)
	pending.mustBeUnavailable(t)
	mustEqual(t, "readyz while down", e.ready(), http.StatusServiceUnavailable)

	proxy.setDown(false)
	pending.mustSucceed(t)
	mustEqual(t, "readyz after", e.ready(), http.StatusOK)
}

// tokenRequests are a refresh and a code exchange prepared while the
// database is up, to be sent during an outage and again after it.
type tokenRequests struct {
	e              *env
	client, secret string
	names          []string
	forms          []url.Values
}

func prepareTokenRequests(e *env, username string) tokenRequests {
	e.t.Helper()
	user, pw := e.user(username)
	c, secret, redirect := e.loopbackClient(false)
	code := e.codeFor(e.browser(), authRequest{clientID: c.ID, redirectURI: redirect, state: "s1", verifier: testVerifier}, user, pw)
	tr := e.postToken(exchangeForm(code, redirect, testVerifier, nil), c.ID, secret)
	mustEqual(e.t, "first exchange", tr.Status, 200)
	code2 := e.codeFor(e.browser(), authRequest{clientID: c.ID, redirectURI: redirect, state: "s2", verifier: testVerifier}, user, pw)
	return tokenRequests{e: e, client: c.ID, secret: secret,
		names: []string{"refresh", "code exchange"},
		forms: []url.Values{
			{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}},
			exchangeForm(code2, redirect, testVerifier, nil),
		}}
}

// mustBeUnavailable: each request is 503 temporarily_unavailable with
// Retry-After, never invalid_grant (which clients treat as "log in again").
func (p tokenRequests) mustBeUnavailable(t *testing.T) {
	t.Helper()
	for i, form := range p.forms {
		r := p.e.postToken(form, p.client, p.secret)
		mustEqual(t, p.names[i]+" status", r.Status, http.StatusServiceUnavailable)
		mustEqual(t, p.names[i]+" error", r.Error, "temporarily_unavailable")
		if r.Header.Get("Retry-After") == "" {
			t.Fatalf("%s: no Retry-After", p.names[i])
		}
	}
}

// mustSucceed: the same requests work once the database answers: the
// outage spent neither the refresh token nor the code.
func (p tokenRequests) mustSucceed(t *testing.T) {
	t.Helper()
	for i, form := range p.forms {
		mustEqual(t, p.names[i]+" after the outage", p.e.postToken(form, p.client, p.secret).Status, 200)
	}
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
	return s.Store.ConsumeAuthCode(ctx, h, now, func(c store.AuthCode) (store.Redemption, error) {
		red, err := redeem(c)
		s.proxy.setDown(true)
		return red, err
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
	// The cut transaction rolled back with its grant.created; the retry's
	// committed with it.
	mustEqual(t, "grant.created events after the cut and the retry", auditCount(t, e.store, provider.EventGrantCreated), 1)
}

// auditCount is the number of stored events named name.
func auditCount(t *testing.T, st store.Store, name string) int {
	t.Helper()
	evs, err := st.ListAuditEvents(context.Background(), store.AuditFilter{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	return len(evs)
}

// ready returns the status of /readyz.
func (e *env) ready() int {
	e.t.Helper()
	resp, err := testClient.Get(e.issuer + provider.PathReadyz)
	if err != nil {
		e.t.Fatalf("GET %s: %v", provider.PathReadyz, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestHungDatabaseAnswers503: a database that accepts connections and then
// never answers costs a token request StoreTimeout (AUTHZ_DB_TIMEOUT), after
// which it is answered 503 temporarily_unavailable with Retry-After, never
// invalid_grant; /readyz answers 503 on its own short deadline even when
// StoreTimeout is long. Once the database answers again, so does everything.
func TestHungDatabaseAnswers503(t *testing.T) {
	t.Parallel()
	st, proxy := proxiedPostgres(t)
	key := make([]byte, 32) // both servers read the signing keys the first one made
	e := start(t, st, func(o *provider.Options) { o.StoreTimeout, o.EncryptionKey = 300*time.Millisecond, key })
	// A second server on the same store whose store deadline is far longer
	// than /readyz's: readiness must not wait for it.
	patient := start(t, st, func(o *provider.Options) { o.StoreTimeout, o.EncryptionKey = 10*time.Minute, key })
	pending := prepareTokenRequests(e, "quinn")

	proxy.setHung(true)
	// testClient's timeout bounds each request: without a store deadline it
	// would wait as long as the database hangs.
	pending.mustBeUnavailable(t)
	mustEqual(t, "readyz while hung", e.ready(), http.StatusServiceUnavailable)
	mustEqual(t, "readyz while hung, long store deadline", patient.ready(), http.StatusServiceUnavailable)

	proxy.setHung(false)
	pending.mustSucceed(t)
	mustEqual(t, "readyz once the database answers", e.ready(), http.StatusOK)
}

// TestStoreDeadlineOnEveryMethod: every method of store.WithDeadline, on a
// PostgreSQL that hangs, returns ErrUnavailable once the deadline passes
// (so no store call can hold a request longer). A caller that cancels its
// own context gets its cancellation back, not ErrUnavailable: a client that
// went away is not an outage.
func TestStoreDeadlineOnEveryMethod(t *testing.T) {
	t.Parallel()
	pg, proxy := proxiedPostgres(t)
	proxy.setHung(true)

	st := reflect.ValueOf(store.WithDeadline(pg, 200*time.Millisecond))
	iface := reflect.TypeFor[store.Store]()
	errType := reflect.TypeFor[error]()
	var wg sync.WaitGroup
	for i := range iface.NumMethod() {
		m := iface.Method(i)
		if m.Type.NumIn() == 0 || m.Type.In(0) != reflect.TypeFor[context.Context]() {
			continue // Close
		}
		if m.Name == "DeleteExpired" || m.Name == "DeleteStaleClients" {
			continue // bounded by max(d, 1m): checked below with a shorter caller deadline
		}
		wg.Go(func() {
			args := []reflect.Value{reflect.ValueOf(context.Background())}
			for j := 1; j < m.Type.NumIn(); j++ {
				args = append(args, reflect.Zero(m.Type.In(j)))
			}
			out := st.MethodByName(m.Name).Call(args)
			last := out[len(out)-1]
			if last.Type() != errType {
				t.Errorf("%s: last result is %s, not error", m.Name, last.Type())
				return
			}
			err, _ := last.Interface().(error)
			if !errors.Is(err, store.ErrUnavailable) {
				t.Errorf("%s on a hung database: %v, want ErrUnavailable", m.Name, err)
			}
		})
	}
	wg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		if _, err := st.Interface().(store.Store).DeleteExpired(ctx, time.Now()); !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("DeleteExpired under the caller's deadline on a hung database: %v, want ErrUnavailable", err)
		}
	})
	wg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		if _, err := st.Interface().(store.Store).DeleteStaleClients(ctx, time.Now(), time.Hour, time.Hour); !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("DeleteStaleClients under the caller's deadline on a hung database: %v, want ErrUnavailable", err)
		}
	})
	wg.Go(func() {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		_, err := store.WithDeadline(pg, 10*time.Minute).GetClient(ctx, "c")
		if !errors.Is(err, context.Canceled) || errors.Is(err, store.ErrUnavailable) {
			t.Errorf("GetClient cancelled by its caller: %v, want context.Canceled and not ErrUnavailable", err)
		}
	})
	wg.Wait()
}

// TestDeadConnectionRetriedForReads: when the pool's connections have died
// (a restart, a dropped network path) a read is run again on a new
// connection and succeeds; a write is not retried, since it may have
// reached the database, and answers ErrUnavailable (503) instead.
func TestDeadConnectionRetriedForReads(t *testing.T) {
	t.Parallel()
	u, err := url.Parse(pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy := newProxy(t, u.Host)
	u.Host = proxy.ln.Addr().String()
	cfg, err := pgxpool.ParseConfig(u.String())
	if err != nil {
		t.Fatal(err)
	}
	// pgxpool pings a connection idle for over a second before handing it
	// out; switch that off so the test meets the dead connection however
	// slowly it runs, as a busy server would.
	cfg.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return false }
	ctx := context.Background()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	st := postgres.New(pool)
	client := store.Client{ID: "c1", Metadata: store.ClientMetadata{RedirectURIs: []string{"https://app.example.com/cb"}, TokenEndpointAuthMethod: oauth.AuthNone}, CreatedAt: time.Now(), UpdatedAt: time.Now()}
	if err := st.CreateClient(ctx, client); err != nil {
		t.Fatal(err)
	}
	// killAll fills the pool with several fresh connections, then cuts them
	// all while the database itself stays up.
	killAll := func() {
		t.Helper()
		pool.Reset()
		var held []*pgxpool.Conn
		defer func() {
			for _, c := range held {
				c.Release()
			}
		}()
		for range 3 {
			c, err := pool.Acquire(ctx)
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, c)
			if err := c.Ping(ctx); err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range held {
			c.Release()
		}
		held = nil
		proxy.setDown(true)
		proxy.setDown(false)
	}

	for _, tc := range []struct {
		name string
		read func() error
	}{
		{"GetClient", func() error { _, err := st.GetClient(ctx, client.ID); return err }},
		{"ListClients", func() error {
			cs, err := st.ListClients(ctx)
			if err == nil && len(cs) != 1 {
				return fmt.Errorf("listed %d clients, want 1", len(cs))
			}
			return err
		}},
		{"Ping", func() error { return st.Ping(ctx) }},
		{"AccessTokenStatus (a client)", func() error {
			s, err := st.AccessTokenStatus(ctx, "jti", "", client.ID, time.Now())
			if err == nil && !s.Found {
				return errors.New("the client was not found")
			}
			return err
		}},
		{"AccessTokenStatus (a grant, batched)", func() error {
			_, err := st.AccessTokenStatus(ctx, "jti", "no-such-grant", client.ID, time.Now())
			return err
		}},
	} {
		killAll()
		if err := tc.read(); err != nil {
			t.Errorf("%s after the pool's connections died: %v, want it retried on a new connection", tc.name, err)
		}
	}

	killAll()
	c2 := client
	c2.ID = "c2"
	if err := st.CreateClient(ctx, c2); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("CreateClient on a dead connection: %v, want ErrUnavailable (a write is never retried)", err)
	}
}

// TestLostCommitAcknowledgementIsNotAReplay (issue 10 point 3): the
// database commits a code exchange or a refresh but the acknowledgement
// never reaches the server. The server asks the database, on a fresh
// connection, whether that transaction committed, and since it did,
// answers 200 with the response it prepared; the tokens in it work. Before,
// the client got 503, retried, and its retry was a replay: the code's
// grant was revoked, and the refresh token's retry forked or, after the
// window, killed the grant.
func TestLostCommitAcknowledgementIsNotAReplay(t *testing.T) {
	t.Parallel()
	setup := func(t *testing.T) (*env, *tcpProxy, string, string, string, string) {
		st, proxy := proxiedPostgres(t)
		e := start(t, st, nil)
		user, pw := e.user("quinn")
		c, secret, redirect := e.loopbackClient(false)
		code := e.codeFor(e.browser(), authRequest{clientID: c.ID, redirectURI: redirect, state: "q", verifier: testVerifier}, user, pw)
		return e, proxy, c.ID, secret, redirect, code
	}
	t.Run("code exchange", func(t *testing.T) {
		t.Parallel()
		e, proxy, id, secret, redirect, code := setup(t)
		proxy.dropCommitAck.Store(true)
		tr := e.postToken(exchangeForm(code, redirect, testVerifier, nil), id, secret)
		if !proxy.dropped.Load() {
			t.Fatal("the proxy dropped no COMMIT acknowledgement")
		}
		mustEqual(t, "code exchange whose COMMIT answer was lost", tr.Status, 200)
		if tr.RefreshToken == "" || tr.AccessToken == "" {
			t.Fatalf("code exchange answered without tokens: %+v", tr)
		}
		// What it answered was committed: the refresh token works.
		r := e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}}, id, secret)
		mustEqual(t, "its refresh token", r.Status, 200)
		replay := e.postToken(exchangeForm(code, redirect, testVerifier, nil), id, secret)
		mustEqual(t, "the code again (it was spent)", replay.Error, "invalid_grant")
		// The event committed with the exchange, once.
		mustEqual(t, "grant.created events after the resolved lost commit", auditCount(t, e.store, provider.EventGrantCreated), 1)
	})
	t.Run("refresh", func(t *testing.T) {
		t.Parallel()
		e, proxy, id, secret, redirect, code := setup(t)
		tr := e.postToken(exchangeForm(code, redirect, testVerifier, nil), id, secret)
		mustEqual(t, "code exchange", tr.Status, 200)
		proxy.dropCommitAck.Store(true)
		r := e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}}, id, secret)
		if !proxy.dropped.Load() {
			t.Fatal("the proxy dropped no COMMIT acknowledgement")
		}
		mustEqual(t, "refresh whose COMMIT answer was lost", r.Status, 200)
		if r.RefreshToken == "" || r.RefreshToken == tr.RefreshToken {
			t.Fatalf("refresh answered without a new refresh token: %+v", r)
		}
		// What it answered was committed: the successor works.
		next := e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r.RefreshToken}}, id, secret)
		mustEqual(t, "the successor from the lost-acknowledgement refresh", next.Status, 200)
	})
}
