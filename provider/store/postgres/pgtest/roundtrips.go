package pgtest

import (
	"context"
	"net"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
)

// RoundTrips counts round trips on the wire: a round trip begins each time
// the client writes after it has read (or first writes). It counts what
// the network sees, statement preparation included, not what pgx reports.
type RoundTrips struct {
	mu      sync.Mutex
	n       int
	writing bool
}

type countingConn struct {
	net.Conn
	rt *RoundTrips
}

func (c countingConn) Write(b []byte) (int, error) {
	c.rt.mu.Lock()
	if !c.rt.writing {
		c.rt.writing = true
		c.rt.n++
	}
	c.rt.mu.Unlock()
	return c.Conn.Write(b)
}

func (c countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.rt.mu.Lock()
		c.rt.writing = false
		c.rt.mu.Unlock()
	}
	return n, err
}

// Reset starts counting again from zero.
func (r *RoundTrips) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n, r.writing = 0, false
}

// Count is the number of round trips since the last Reset.
func (r *RoundTrips) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// CountingPool is a pool of one connection on a fresh schema (see URL)
// whose round trips the returned counter counts. It never pings on
// acquire: the pool's health check is not part of an operation being
// counted. Closed when the test ends.
func CountingPool(t testing.TB) (*pgxpool.Pool, *RoundTrips) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(URL(t))
	if err != nil {
		t.Fatal(err)
	}
	rt := &RoundTrips{}
	dialer := &net.Dialer{}
	cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return countingConn{Conn: c, rt: rt}, nil
	}
	cfg.MinConns, cfg.MaxConns = 1, 1
	cfg.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return false }
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool, rt
}
