package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authzd/authz/provider/store"
	"github.com/authzd/authz/provider/store/postgres"
)

// The bound modes run the database work of a refresh (bound) or of a code
// exchange (bound_code) directly through pgx, with no HTTP and no server:
// the database's own limit for that work on this machine, so every run can
// show authz's rate as a ratio of it.
//
// The pipelined shape sends the store's own statements, exported by
// provider/store/postgres (SQL… constants), so a change to the store's SQL
// changes the bound with it. The sequential shape keeps copies of the
// statements the store sent before it took two round trips.
//
// Two shapes (-bound-shape):
//   - pipelined (default): two round trips, as pgx batches inside one
//     transaction. The first begins, takes the transaction's id (what a
//     lost COMMIT acknowledgement is resolved by), locks the grant and
//     then the token or code; the second writes and commits. The grant's
//     last use is written at most once a minute. This is the shape issue
//     13 asks the store for, and the bound it is measured against.
//   - sequential: one round trip per statement, as the store sent them
//     before issue 13 (rotation: BEGIN, 6 statements, COMMIT = 8 round
//     trips), for comparison.
const (
	boundGrantCols   = `id, client_id, user_id, scopes, resources, code_hash, created_at, expires_at, last_used_at, revoked_at, auth_time`
	boundRefreshCols = `hash, id, grant_id, client_id, parent_id, created_at, expires_at, rotated_at`

	sqlRefreshGrantID  = `SELECT grant_id FROM refresh_tokens WHERE hash = $1`
	sqlLockGrant       = `SELECT ` + boundGrantCols + ` FROM grants WHERE id = $1 FOR UPDATE`
	sqlLockGrantByHash = postgres.SQLLockGrantOfRefresh
	sqlLockRefresh     = postgres.SQLLockRefresh
	sqlMarkRotated     = postgres.SQLMarkRotated
	sqlInsertRefresh   = postgres.SQLInsertRefresh
	sqlGrantUsed       = postgres.SQLTouchGrant
	sqlConsumeCode     = postgres.SQLDeleteCode
	sqlCodeGrantUsed   = `UPDATE grants SET last_used_at = $2 WHERE id = $1 AND revoked_at IS NULL AND expires_at > $2`
	sqlInsertAudit     = postgres.SQLInsertAuditEvent
	sqlXactID          = postgres.SQLXactID
	sqlLockGrantOfCode = postgres.SQLLockGrantOfCode
)

type boundGrant struct {
	id, client, user  string
	expires           time.Time
	revoked           *time.Time
	scopes, resources []string
	codeHash          []byte
	created           time.Time
	lastUsed          *time.Time
	authTime          *time.Time
}

func scanBoundGrant(row pgx.Row) (boundGrant, error) {
	var g boundGrant
	err := row.Scan(&g.id, &g.client, &g.user, &g.scopes, &g.resources, &g.codeHash, &g.created, &g.expires, &g.lastUsed, &g.revoked, &g.authTime)
	return g, err
}

type boundRefresh struct {
	hash              []byte
	id, grant, client string
	parent            string
	created, expires  time.Time
	rotated           *time.Time
}

func scanBoundRefresh(row pgx.Row) (boundRefresh, error) {
	var r boundRefresh
	err := row.Scan(&r.hash, &r.id, &r.grant, &r.client, &r.parent, &r.created, &r.expires, &r.rotated)
	return r, err
}

// decide is the part of the store's decision a winning rotation needs:
// an active grant and an unexpired, unrotated token.
func (r boundRefresh) decide(g boundGrant, now time.Time) error {
	switch {
	case g.revoked != nil || !now.Before(g.expires):
		return errors.New("grant revoked")
	case !now.Before(r.expires):
		return errors.New("refresh token expired")
	case r.rotated != nil:
		return errors.New("refresh token already rotated")
	}
	return nil
}

// touchDue: the grant's last use is written at most once a minute (issue
// 13 point 2), so most rotations of a busy chain skip that UPDATE.
func touchDue(last *time.Time, now time.Time) bool {
	return last == nil || now.Sub(*last) >= time.Minute
}

func randomBytes() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return b
}

func randomID() string {
	b := randomBytes()
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func sqlResult(err error) result {
	if err != nil {
		msg := strings.ReplaceAll(err.Error(), `"`, `'`)
		if len(msg) > 60 {
			msg = msg[:60]
		}
		return result{status: 500, body: []byte(`{"error":"sql: ` + msg + `"}`), err: err}
	}
	return result{status: 200}
}

// rotateBound rotates the token whose digest is hash and returns its
// successor's digest.
func rotateBound(ctx context.Context, pool *pgxpool.Pool, hash []byte, pipelined bool) ([]byte, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()
	now := time.Now().UTC().Truncate(time.Microsecond)
	succ := boundRefresh{hash: randomBytes(), id: randomID(), created: now}
	var g boundGrant
	var old boundRefresh
	fail := func(err error) ([]byte, error) {
		_, _ = conn.Exec(ctx, "ROLLBACK")
		return nil, err
	}
	if pipelined {
		// Round trip 1: begin, lock the grant, then the token.
		var err error
		g, err = beginLockingGrant(ctx, conn, sqlLockGrantByHash, sqlLockRefresh, hash, func(row pgx.Row) (err error) {
			old, err = scanBoundRefresh(row)
			return err
		})
		if err == nil {
			err = old.decide(g, now)
		}
		if err != nil {
			return fail(err)
		}
		// Round trip 2: mark rotated, insert the successor, touch the
		// grant, commit.
		b := &pgx.Batch{}
		b.Queue(sqlMarkRotated, hash, now)
		b.Queue(sqlInsertRefresh, succ.hash, succ.id, old.grant, old.client, old.id, now, old.expires, nil)
		if touchDue(g.lastUsed, now) {
			b.Queue(sqlGrantUsed, g.id, now)
		}
		b.Queue("COMMIT")
		if err := conn.SendBatch(ctx, b).Close(); err != nil {
			return fail(err)
		}
		return succ.hash, nil
	}
	if _, err := conn.Exec(ctx, "BEGIN"); err != nil {
		return fail(err)
	}
	var gid string
	if err := conn.QueryRow(ctx, sqlRefreshGrantID, hash).Scan(&gid); err != nil {
		return fail(err)
	}
	if g, err = scanBoundGrant(conn.QueryRow(ctx, sqlLockGrant, gid)); err != nil {
		return fail(err)
	}
	if old, err = scanBoundRefresh(conn.QueryRow(ctx, sqlLockRefresh, hash)); err != nil {
		return fail(err)
	}
	if err := old.decide(g, now); err != nil {
		return fail(err)
	}
	for _, st := range []struct {
		sql  string
		args []any
	}{
		{sqlMarkRotated, []any{hash, now}},
		{sqlInsertRefresh, []any{succ.hash, succ.id, old.grant, old.client, old.id, now, old.expires, nil}},
		{sqlGrantUsed, []any{g.id, now}},
		{"COMMIT", nil},
	} {
		if _, err := conn.Exec(ctx, st.sql, st.args...); err != nil {
			return fail(err)
		}
	}
	return succ.hash, nil
}

// boundCodeFixture creates, untimed, a grant and its unredeemed code for
// the owner of an existing grant with the store's own statement
// (postgres.SQLCreateAuthCode, one round trip), and returns the code's
// digest.
func boundCodeFixture(ctx context.Context, pool *pgxpool.Pool, client, user string) ([]byte, error) {
	now := time.Now().UTC().Truncate(time.Microsecond)
	h := sha256.Sum256(randomBytes())
	gid := randomID()
	code := store.AuthCode{Hash: h[:], ClientID: client, UserID: user, GrantID: gid, RedirectURI: "http://127.0.0.1/callback",
		CodeChallenge: "challenge", Scopes: []string{"read"}, CreatedAt: now, ExpiresAt: now.Add(time.Minute)}
	g := store.Grant{ID: gid, ClientID: client, UserID: user, Scopes: []string{"read"}, CodeHash: h[:],
		CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour), AuthTime: now}
	_, err := pool.Exec(ctx, postgres.SQLCreateAuthCode, postgres.CreateAuthCodeArgs(code, g)...)
	return h[:], err
}

// grantCreated is the arguments of the grant.created audit event the
// server stores with each redemption (same columns, same sizes).
func grantCreated(now time.Time, client, user, gid string, scopes []string) []any {
	args, err := postgres.AuditEventArgs(store.AuditEvent{Time: now, Name: "grant.created", Actor: "user", Subject: user,
		ClientID: client, ClientIP: "127.0.0.1", RequestID: fmt.Sprintf("%x", randomBytes()[:16]), Outcome: "ok",
		Details: map[string]string{"grant_id": gid, "scope": strings.Join(scopes, " ")}})
	if err != nil {
		panic(err) // a map of strings always marshals
	}
	return args
}

// consumeBound redeems a code as ConsumeAuthCode does for a valid code:
// delete it, mark its grant used, insert the first refresh token and the
// grant.created audit event (postgres.SQLInsertAuditEvent, in the write
// round trip, as the store does; the sequential shape sends it after the
// commit, as the exchange did before), commit.
func consumeBound(ctx context.Context, pool *pgxpool.Pool, hash []byte, pipelined bool) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	now := time.Now().UTC().Truncate(time.Microsecond)
	fail := func(err error) error {
		_, _ = conn.Exec(ctx, "ROLLBACK")
		return err
	}
	var (
		hh                                     []byte
		client, user, gid, redirect, challenge string
		scopes, resources                      []string
		created, expires                       time.Time
		nonce                                  string
		authTime                               *time.Time
	)
	scan := func(row pgx.Row) error {
		return row.Scan(&hh, &client, &user, &gid, &redirect, &challenge, &scopes, &resources, &created, &expires, &nonce, &authTime)
	}
	if pipelined {
		// Round trip 1: begin, take the transaction id, lock the code's
		// grant, delete the code (the single-use gate).
		g, err := beginLockingGrant(ctx, conn, sqlLockGrantOfCode, sqlConsumeCode, hash, scan)
		switch {
		case err != nil:
		case g.revoked != nil || !now.Before(g.expires):
			err = errors.New("grant revoked")
		case !now.Before(expires):
			err = errors.New("code expired")
		}
		if err != nil {
			return fail(err)
		}
		// Round trip 2: mark the grant used, store the first refresh
		// token and the audit event, commit.
		b := &pgx.Batch{}
		b.Queue(sqlGrantUsed, gid, now)
		b.Queue(sqlInsertRefresh, randomBytes(), randomID(), gid, client, "", now, now.Add(24*time.Hour), nil)
		b.Queue(sqlInsertAudit, grantCreated(now, client, user, gid, scopes)...)
		b.Queue("COMMIT")
		if err := conn.SendBatch(ctx, b).Close(); err != nil {
			return fail(err)
		}
		return nil
	}
	if _, err := conn.Exec(ctx, "BEGIN"); err != nil {
		return fail(err)
	}
	if err := scan(conn.QueryRow(ctx, sqlConsumeCode, hash)); err != nil {
		return fail(err)
	}
	if !now.Before(expires) {
		return fail(errors.New("code expired"))
	}
	tag, err := conn.Exec(ctx, sqlCodeGrantUsed, gid, now)
	if err == nil && tag.RowsAffected() != 1 {
		err = errors.New("grant revoked")
	}
	if err != nil {
		return fail(err)
	}
	if _, err := conn.Exec(ctx, sqlInsertRefresh, randomBytes(), randomID(), gid, client, "", now, now.Add(24*time.Hour), nil); err != nil {
		return fail(err)
	}
	if _, err := conn.Exec(ctx, "COMMIT"); err != nil {
		return fail(err)
	}
	// The event after the commit, in a transaction of its own, as the
	// exchange recorded it before it rode in the redemption's.
	_, err = conn.Exec(ctx, sqlInsertAudit, grantCreated(now, client, user, gid, scopes)...)
	return err
}

func init() {
	// bound: each worker rotates its own chain's tokens in SQL. The chain
	// is started through the server (login, consent, exchange), so the
	// rows are exactly what authz writes.
	flows["bound"] = func(l *loader, _, _ int) (func(context.Context, *recorder), error) {
		if l.pool == nil {
			return nil, errors.New("bound mode needs -database-url")
		}
		if err := l.needCodeClient(); err != nil {
			return nil, err
		}
		rec0 := newRecorder()
		rt, ok := l.newChain(rec0)
		if !ok {
			return nil, fmt.Errorf("starting a refresh chain: %s", kv(rec0.errors))
		}
		h := sha256.Sum256([]byte(rt))
		hash := h[:]
		pipelined := l.cfg.boundShape == "pipelined"
		return func(ctx context.Context, rec *recorder) {
			for ctx.Err() == nil {
				rec.timed(func() result {
					next, err := rotateBound(context.Background(), l.pool, hash, pipelined)
					if err == nil {
						hash = next
					}
					return sqlResult(err)
				})
			}
		}, nil
	}
	// bound_code: each request redeems a code created just before
	// (untimed) for the user and client a real exchange used.
	flows["bound_code"] = func(l *loader, _, _ int) (func(context.Context, *recorder), error) {
		if l.pool == nil {
			return nil, errors.New("bound_code mode needs -database-url")
		}
		if err := l.needCodeClient(); err != nil {
			return nil, err
		}
		rec0 := newRecorder()
		rt, ok := l.newChain(rec0)
		if !ok {
			return nil, fmt.Errorf("starting a grant: %s", kv(rec0.errors))
		}
		h := sha256.Sum256([]byte(rt))
		var client, user string
		if err := l.pool.QueryRow(context.Background(), `SELECT client_id, user_id FROM grants WHERE id = (`+sqlRefreshGrantID+`)`, h[:]).Scan(&client, &user); err != nil {
			return nil, err
		}
		pipelined := l.cfg.boundShape == "pipelined"
		return func(ctx context.Context, rec *recorder) {
			for ctx.Err() == nil {
				code, err := boundCodeFixture(context.Background(), l.pool, client, user)
				if !rec.untimed(sqlResult(err)) {
					continue
				}
				rec.timed(func() result { return sqlResult(consumeBound(context.Background(), l.pool, code, pipelined)) })
			}
		}, nil
	}
}

// pgSettings says what PostgreSQL the numbers were measured on.
func pgSettings(ctx context.Context, pool *pgxpool.Pool) (string, error) {
	names := []string{"server_version", "fsync", "synchronous_commit", "full_page_writes", "wal_level", "shared_buffers", "max_connections"}
	vals := map[string]string{}
	for _, n := range names {
		var v string
		if err := pool.QueryRow(ctx, "SHOW "+n).Scan(&v); err != nil {
			return "", err
		}
		vals[n] = v
	}
	durable := "DURABLE"
	if vals["fsync"] != "on" || vals["synchronous_commit"] == "off" || vals["full_page_writes"] != "on" {
		durable = "NOT DURABLE (figures are not comparable with a production server)"
	}
	parts := make([]string, 0, len(names))
	for _, n := range names {
		parts = append(parts, n+"="+vals[n])
	}
	return "postgres: " + strings.Join(parts, " ") + " → " + durable, nil
}

// beginLockingGrant is the first round trip of both pipelined shapes, as
// the store sends it: BEGIN, the transaction id, the grant locked by
// lockGrant, then the row of rowSQL (the refresh token or the consumed
// code), read by scanRow.
func beginLockingGrant(ctx context.Context, conn batchSender, lockGrant, rowSQL string, hash []byte, scanRow func(pgx.Row) error) (boundGrant, error) {
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(sqlXactID)
	b.Queue(lockGrant, hash)
	b.Queue(rowSQL, hash)
	br := conn.SendBatch(ctx, b)
	var xid string
	var g boundGrant
	_, err := br.Exec()
	if err == nil {
		err = br.QueryRow().Scan(&xid)
	}
	if err == nil {
		g, err = scanBoundGrant(br.QueryRow())
	}
	if err == nil {
		err = scanRow(br.QueryRow())
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return g, err
}

// batchSender is the one method beginLockingGrant needs of a connection.
type batchSender interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}
