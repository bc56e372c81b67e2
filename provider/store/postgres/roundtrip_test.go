package postgres_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/store"
	"github.com/authzd/authz/provider/store/postgres"
	"github.com/authzd/authz/provider/store/postgres/pgtest"
)

// roundTrips counts round trips on the wire: a round trip begins each time
// the client writes after it has read (or first writes). It counts what
// the network sees, statement preparation included, not what pgx reports.
type roundTrips struct {
	mu      sync.Mutex
	n       int
	writing bool
}

type countingConn struct {
	net.Conn
	rt *roundTrips
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

func (r *roundTrips) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n, r.writing = 0, false
}

func (r *roundTrips) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// TestGrantOperationsTakeTwoRoundTrips pins issue 13's shape: rotation and
// code redemption, in every outcome, cost at most two round trips to
// PostgreSQL once the statements are prepared. A count, never a time.
func TestGrantOperationsTakeTwoRoundTrips(t *testing.T) {
	t.Parallel()
	cfg, err := pgxpool.ParseConfig(pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	rt := &roundTrips{}
	dialer := &net.Dialer{}
	cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return countingConn{Conn: c, rt: rt}, nil
	}
	// One connection, and no liveness ping on acquire: the pool's health
	// check is not part of the operation being counted.
	cfg.MinConns, cfg.MaxConns = 1, 1
	cfg.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return false }
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	st := postgres.New(pool)
	ctx := t.Context()
	base := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(st.CreateClient(ctx, store.Client{ID: "c", Metadata: store.ClientMetadata{TokenEndpointAuthMethod: oauth.AuthNone}, CreatedAt: base, UpdatedAt: base}))
	must(st.CreateUser(ctx, store.User{ID: "u", Username: "u", PasswordHash: "x", CreatedAt: base}))

	hash := func(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }
	next := func(now time.Time) store.NextRefreshFunc {
		return func(old store.RefreshToken, g store.Grant) (store.RefreshToken, error) {
			return store.RefreshToken{ID: old.ID + "'", Hash: hash("next " + string(old.Hash)), GrantID: g.ID, ClientID: old.ClientID,
				ParentID: old.ID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}, nil
		}
	}
	grant := func(name string) (code []byte) {
		code = hash("code " + name)
		must(st.CreateAuthCode(ctx,
			store.AuthCode{Hash: code, ClientID: "c", UserID: "u", GrantID: name, CreatedAt: base, ExpiresAt: base.Add(time.Minute)},
			store.Grant{ID: name, ClientID: "c", UserID: "u", CodeHash: code, CreatedAt: base, ExpiresAt: base.Add(24 * time.Hour)}))
		return code
	}
	first := func(name string) store.RedeemFunc {
		// As the server's exchange: the first refresh token and the
		// grant.created event, stored by the redemption itself.
		return func(store.AuthCode) (store.Redemption, error) {
			return store.Redemption{
				Refresh: &store.RefreshToken{ID: name + "-rt", Hash: hash("rt " + name), GrantID: name, ClientID: "c",
					CreatedAt: base, ExpiresAt: base.Add(time.Hour)},
				Events: []store.AuditEvent{{Time: base, Name: "grant.created", Actor: "user", Subject: "u", ClientID: "c",
					ClientIP: "192.0.2.1", RequestID: "req-" + name, Outcome: "ok", Details: map[string]string{"grant_id": name, "scope": "read"}}},
			}, nil
		}
	}
	const grace = 30 * time.Second
	t1 := base.Add(time.Second)
	steps := func(name string) []struct {
		what string
		run  func() error
	} {
		code := grant(name)
		return []struct {
			what string
			run  func() error
		}{
			{"ConsumeAuthCode (win, with its refresh token)", func() error {
				_, err := st.ConsumeAuthCode(ctx, code, base, first(name))
				return err
			}},
			{"RotateRefreshToken (win)", func() error {
				_, err := st.RotateRefreshToken(ctx, hash("rt "+name), t1, grace, next(t1))
				return err
			}},
			{"RotateRefreshToken (inside grace)", func() error {
				_, err := st.RotateRefreshToken(ctx, hash("rt "+name), t1.Add(time.Second), grace, next(t1))
				return err
			}},
			{"RotateRefreshToken (unknown token)", func() error {
				_, err := st.RotateRefreshToken(ctx, hash("nothing"), t1, grace, next(t1))
				return ignore(err, store.ErrNotFound)
			}},
			{"RotateRefreshToken (reuse)", func() error {
				_, err := st.RotateRefreshToken(ctx, hash("rt "+name), t1.Add(grace), grace, next(t1))
				return ignore(err, store.ErrRefreshReused)
			}},
			{"ConsumeAuthCode (replay)", func() error {
				_, err := st.ConsumeAuthCode(ctx, code, base, first(name))
				return ignore(err, store.ErrCodeReused)
			}},
		}
	}
	// Warm up: the first use of each statement prepares it. Only the
	// statements matter here; the counted run checks the outcomes.
	for _, s := range steps("warm") {
		_ = s.run()
	}
	for _, s := range steps("counted") {
		rt.reset()
		err := s.run()
		n := rt.count()
		t.Logf("%s: %d round trips", s.what, n)
		if n > 2 {
			t.Errorf("%s: %d round trips, want at most 2", s.what, n)
		}
		must(err)
	}
	// One commit: an exchange's audit event is written by the transaction
	// that spends the code and stores the refresh token (the rows share
	// xmin), in its two round trips, not by a second transaction.
	code := grant("single")
	rt.reset()
	_, err = st.ConsumeAuthCode(ctx, code, base, first("single"))
	if n := rt.count(); n > 2 {
		t.Errorf("ConsumeAuthCode with its audit event: %d round trips, want at most 2", n)
	}
	must(err)
	var rows, txns int
	must(pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT xmin::text) FROM (
		SELECT xmin FROM audit_events WHERE request_id = 'req-single'
		UNION ALL SELECT xmin FROM refresh_tokens WHERE hash = $1) AS r`, hash("rt single")).Scan(&rows, &txns))
	if rows != 2 || txns != 1 {
		t.Errorf("the exchange's event and refresh token are %d rows written by %d transactions, want 2 rows by 1", rows, txns)
	}

	// The counter counts: a plain transaction is three (begin, statement,
	// commit).
	rt.reset()
	must(pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { _, err := tx.Exec(ctx, `SELECT 1`); return err }))
	if n := rt.count(); n != 3 {
		t.Errorf("the counter saw %d round trips for begin, select, commit; want 3", n)
	}
}

// ignore maps the expected refusal to nil.
func ignore(err, want error) error {
	if errors.Is(err, want) {
		return nil
	}
	return err
}
