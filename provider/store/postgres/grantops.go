package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authzd/authz/provider/store"
)

// The two grant operations on the hot path, refresh rotation and code
// redemption, each take exactly two round trips to the database on one
// connection (issue 13: a refresh used to be 8-9 sequential statements,
// and the round trips, not the SQL, were the cost):
//
//  1. BEGIN; lock the grant FOR UPDATE; lock (or delete) the token or code;
//     read the transaction's id, all as one pipelined batch.
//  2. the writes the decision calls for, then COMMIT (or a lone ROLLBACK),
//     as one pipelined batch.
//
// Between them the store decides with store.DecideRotation /
// store.DecideRedemption and runs the caller's check (client binding,
// scope and resource narrowing, PKCE), which needs no database. The lock
// order is always the grant first, as RevokeGrant's and the cascading
// deletes' is, so concurrent operations on one grant serialise on its row
// and none can deadlock with another.
//
// The statements are exported so cmd/authz-load's bound mode sends the very
// same SQL in the same shape, and the run shows authz's rate against the
// database's own limit for this work.
const (
	// SQLBegin opens round trip 1.
	SQLBegin = `begin`
	// SQLXactID assigns the transaction its id and returns it, so that a
	// lost COMMIT acknowledgement can be resolved (see resolveCommit).
	SQLXactID = `SELECT pg_current_xact_id()::text`
	// SQLCommit closes round trip 2.
	SQLCommit = `commit`

	// SQLLockGrantOfRefresh locks the grant of the refresh token $1.
	SQLLockGrantOfRefresh = `SELECT ` + grantCols + ` FROM grants WHERE id = (SELECT grant_id FROM refresh_tokens WHERE hash = $1) FOR UPDATE`
	// SQLLockRefresh locks the refresh token $1 (after its grant). Read
	// committed gives this statement a snapshot taken after the grant's
	// lock was granted, so it sees any rotation committed before.
	SQLLockRefresh = `SELECT ` + refreshCols + ` FROM refresh_tokens WHERE hash = $1 FOR UPDATE`
	// SQLMarkRotated records the first rotation of token $1 at $2.
	SQLMarkRotated = `UPDATE refresh_tokens SET rotated_at = $2 WHERE hash = $1`
	// SQLInsertRefresh stores a successor (or a code's first token).
	SQLInsertRefresh = `INSERT INTO refresh_tokens (` + refreshCols + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`
	// SQLInsertRefreshIfAbsent stores a grace replay's successor only when
	// the first rotation's is missing; SQLGetRefresh then reads the one
	// stored under that hash.
	SQLInsertRefreshIfAbsent = SQLInsertRefresh + ` ON CONFLICT (hash) DO NOTHING`
	SQLGetRefresh            = `SELECT ` + refreshCols + ` FROM refresh_tokens WHERE hash = $1`
	// SQLTouchGrant moves LastUsedAt (at most once a minute, store.TouchDue).
	SQLTouchGrant = `UPDATE grants SET last_used_at = $2 WHERE id = $1`
	// SQLRevokeGrant keeps the first revocation instant.
	SQLRevokeGrant = `UPDATE grants SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1`

	// SQLLockGrantOfCode locks the grant the code $1 started. The grant
	// outlives its code, so a replayed code still finds it.
	SQLLockGrantOfCode = `SELECT ` + grantCols + ` FROM grants WHERE code_hash = $1 FOR UPDATE`
	// SQLDeleteCode is the single-use gate: of concurrent callers, the
	// first to hold the grant's lock gets the row, the others find it gone.
	SQLDeleteCode = `DELETE FROM auth_codes WHERE hash = $1 RETURNING ` + codeCols
)

// commitCheckTimeout bounds resolveCommit: past it the outcome stays
// unknown and the caller answers 503, as for any outage.
const commitCheckTimeout = 2 * time.Second

// RefreshArgs are SQLInsertRefresh's arguments for r.
func RefreshArgs(r store.RefreshToken) []any {
	return []any{r.Hash, r.ID, r.GrantID, r.ClientID, r.ParentID, tsArg(r.CreatedAt), tsArg(r.ExpiresAt), nullTSArg(r.RotatedAt)}
}

// grantOp is one two-round-trip grant operation on one connection.
type grantOp struct {
	s    *Store
	c    *pgxpool.Conn
	xid  string // the transaction's id, from round trip 1
	done bool   // the transaction has ended (committed or rolled back)

	// Each round trip's batch is built in b, its queue backed by q, so
	// that neither is allocated per round trip: round trip 1 has ended
	// before round trip 2 is built.
	b pgx.Batch
	q [6]*pgx.QueuedQuery
}

// batch is op's empty batch for the next round trip.
func (op *grantOp) batch() *pgx.Batch {
	op.b.QueuedQueries = op.q[:0]
	return &op.b
}

// begin acquires a connection and sends round trip 1: BEGIN, then lock
// (queued by the caller, grant first), then the transaction id.
func (s *Store) begin(ctx context.Context, lock func(b *pgx.Batch)) (*grantOp, error) {
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, wrap(err)
	}
	op := &grantOp{s: s, c: c}
	b := op.batch()
	b.Queue(SQLBegin)
	lock(b)
	b.Queue(SQLXactID).QueryRow(func(row pgx.Row) error { return row.Scan(&op.xid) })
	if err := c.SendBatch(ctx, b).Close(); err != nil {
		op.release(ctx)
		return nil, wrap(err)
	}
	return op, nil
}

// release rolls back what is still open (one more round trip, on refusal
// and error paths only) and returns the connection. A connection whose
// rollback fails is closed rather than reused.
func (op *grantOp) release(ctx context.Context) {
	if !op.done && op.c.Conn().PgConn().TxStatus() != 'I' {
		if _, err := op.c.Exec(ctx, "rollback"); err != nil {
			_ = op.c.Conn().Close(ctx)
		}
	}
	op.done = true
	op.c.Release()
}

// commit sends round trip 2: the writes queued by the caller, then COMMIT.
// grantID names the grant locked in round trip 1. When the answer does
// not come back (the connection broke, the deadline passed), the outcome
// is not known from here; resolveCommit asks the database on a fresh
// connection whether this transaction committed (issue 10: a lost COMMIT
// acknowledgement is not a replay).
func (op *grantOp) commit(ctx context.Context, grantID string, b *pgx.Batch) error {
	var tag pgconn.CommandTag
	b.Queue(SQLCommit).Exec(func(ct pgconn.CommandTag) error { tag = ct; return nil })
	err := op.c.SendBatch(ctx, b).Close()
	if err == nil {
		op.done = op.c.Conn().PgConn().TxStatus() == 'I'
		op.release(ctx)
		if tag.String() != "COMMIT" {
			return fmt.Errorf("%w: commit answered %q", store.ErrUnavailable, tag.String())
		}
		return nil
	}
	if tag.String() == "COMMIT" {
		// The commit was acknowledged; what failed came after it (the
		// server going away before its next ReadyForQuery).
		_ = op.c.Conn().Close(context.WithoutCancel(ctx))
		op.done = true
		op.c.Release()
		return nil
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Severity != "FATAL" && pe.Severity != "PANIC" {
		// The server answered a statement with an error: the pipeline
		// stopped there and COMMIT never ran. Nothing was written.
		op.release(ctx)
		return wrap(err)
	}
	// No answer: the connection is not reusable, and the transaction may
	// or may not have committed.
	_ = op.c.Conn().Close(context.WithoutCancel(ctx))
	op.done = true
	op.c.Release()
	committed, rerr := op.s.resolveCommit(ctx, op.xid, grantID)
	if rerr != nil {
		return fmt.Errorf("%w: commit outcome unknown (%v) after %w", store.ErrUnavailable, rerr, err)
	}
	if committed {
		return nil
	}
	return wrap(err)
}

// resolveCommit reports whether the transaction xid committed. It first
// waits for the grant's row lock, which the transaction holds until it
// ends, so "in progress" becomes "committed" or "aborted"; a server that
// never got the COMMIT keeps the lock until it notices the connection is
// gone, and the timeout turns that into "unknown".
func (s *Store) resolveCommit(ctx context.Context, xid, grantID string) (bool, error) {
	if xid == "" {
		return false, errors.New("no transaction id")
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitCheckTimeout)
	defer cancel()
	var status *string
	b := &pgx.Batch{}
	b.Queue(`SELECT 1 FROM grants WHERE id = $1 FOR KEY SHARE`, grantID).Exec(func(pgconn.CommandTag) error { return nil })
	b.Queue(`SELECT pg_xact_status($1::xid8)`, xid).QueryRow(func(row pgx.Row) error { return row.Scan(&status) })
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return false, err
	}
	switch {
	case status == nil:
		return false, errors.New("transaction status unknown")
	case *status == "committed":
		return true, nil
	case *status == "aborted":
		return false, nil
	default:
		return false, fmt.Errorf("transaction still %s", *status)
	}
}

// scanOptional scans one row into *dst, leaving it nil when there is none.
func scanOptional[T any](dst **T, scan func(pgx.Row) (T, error)) func(pgx.Row) error {
	return func(row pgx.Row) error {
		v, err := scan(row)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		*dst = &v
		return nil
	}
}

// ConsumeAuthCode redeems a code in two round trips; the rule is
// store.DecideRedemption's. A refused code's deletion and a replay's
// revocation are committed even though the call fails.
func (s *Store) ConsumeAuthCode(ctx context.Context, hash []byte, now time.Time, redeem store.RedeemFunc) (store.AuthCode, error) {
	now = ts(now)
	var g *store.Grant
	var code *store.AuthCode
	op, err := s.begin(ctx, func(b *pgx.Batch) {
		b.Queue(SQLLockGrantOfCode, hash).QueryRow(scanOptional(&g, scanGrant))
		b.Queue(SQLDeleteCode, hash).QueryRow(scanOptional(&code, scanCode))
	})
	if err != nil {
		return store.AuthCode{}, err
	}
	defer op.release(ctx)

	outcome, derr := store.DecideRedemption(code, g, now)
	b := op.batch()
	switch outcome {
	case store.RedeemReplay:
		b.Queue(SQLRevokeGrant, g.ID, tsArg(now))
		if err := op.commit(ctx, g.ID, b); err != nil {
			return store.AuthCode{}, err
		}
		return store.ReplayedCode(*g), derr
	case store.RedeemSpent:
		// Nothing to write: release rolls the locks back.
		return store.ReplayedCode(*g), derr
	case store.RedeemRefuse:
		grantID := ""
		if g != nil {
			grantID = g.ID
		}
		return store.AuthCode{}, cmp(op.commit(ctx, grantID, b), derr) // the deletion sticks
	case store.RedeemOK:
	default:
		return store.AuthCode{}, derr
	}
	var red store.Redemption
	if redeem != nil {
		if red, err = redeem(*code); err != nil {
			// A code that fails its checks is spent, and so is its grant.
			b.Queue(SQLRevokeGrant, g.ID, tsArg(now))
			return store.AuthCode{}, cmp(op.commit(ctx, g.ID, b), err)
		}
	}
	b.Queue(SQLTouchGrant, g.ID, tsArg(now))
	if red.Refresh != nil {
		b.Queue(SQLInsertRefresh, RefreshArgs(*red.Refresh)...)
	}
	// The events ride in the same round trip and commit: no extra WAL
	// flush, and no event for a redemption that did not commit.
	for _, e := range red.Events {
		args, err := AuditEventArgs(e)
		if err != nil {
			return store.AuthCode{}, err // nothing sent: release rolls back
		}
		b.Queue(SQLInsertAuditEvent, args...)
	}
	// Either the code is spent and the token and events exist, or none.
	if err := op.commit(ctx, g.ID, b); err != nil {
		return store.AuthCode{}, err
	}
	return *code, nil
}

// cmp returns the commit's error if it failed, else the decided outcome.
func cmp(commitErr, outcome error) error {
	if commitErr != nil {
		return commitErr
	}
	return outcome
}

// RotateRefreshToken rotates in two round trips; the rule is
// store.DecideRotation's, taken with the grant's row locked, which
// serialises every rotation of one grant (siblings within grace included)
// and orders them against RevokeGrant and the cascading deletes, so two
// requests can never both see "never rotated". Nothing is marked rotated
// unless its successor commits with it.
func (s *Store) RotateRefreshToken(ctx context.Context, hash []byte, now time.Time, grace time.Duration, next store.NextRefreshFunc) (store.Rotation, error) {
	now = ts(now)
	var g *store.Grant
	var old *store.RefreshToken
	op, err := s.begin(ctx, func(b *pgx.Batch) {
		b.Queue(SQLLockGrantOfRefresh, hash).QueryRow(scanOptional(&g, scanGrant))
		b.Queue(SQLLockRefresh, hash).QueryRow(scanOptional(&old, scanRefresh))
	})
	if err != nil {
		return store.Rotation{}, err
	}
	defer op.release(ctx)

	outcome, derr := store.DecideRotation(old, g, now, grace)
	if errors.Is(derr, store.ErrRefreshReused) {
		b := op.batch()
		b.Queue(SQLRevokeGrant, g.ID, tsArg(now))
		return store.Rotation{}, cmp(op.commit(ctx, g.ID, b), derr)
	}
	if derr != nil {
		return store.Rotation{}, derr
	}
	succ, err := next(*old, *g)
	if err != nil {
		return store.Rotation{}, err
	}
	if err := store.CheckSuccessor(*old, succ); err != nil {
		return store.Rotation{}, err
	}
	succ.CreatedAt, succ.ExpiresAt, succ.RotatedAt = ts(succ.CreatedAt), ts(succ.ExpiresAt), fromNull(nil)

	b := op.batch()
	var stored *store.RefreshToken
	if outcome == store.RotateWin {
		b.Queue(SQLMarkRotated, hash, tsArg(now))
		b.Queue(SQLInsertRefresh, RefreshArgs(succ)...)
		stored = &succ
	} else {
		// One successor per token: the first rotation's, stored again
		// only if it is missing.
		b.Queue(SQLInsertRefreshIfAbsent, RefreshArgs(succ)...)
		b.Queue(SQLGetRefresh, succ.Hash).QueryRow(scanOptional(&stored, scanRefresh))
	}
	grant := *g
	if store.TouchDue(grant.LastUsedAt, now) {
		b.Queue(SQLTouchGrant, grant.ID, tsArg(now))
		grant.LastUsedAt = now
	}
	if err := op.commit(ctx, grant.ID, b); err != nil {
		return store.Rotation{}, err
	}
	if stored == nil {
		// Committed, but the answer with the stored successor was lost
		// with the acknowledgement: read it again.
		st, err := scanRefresh(s.pool.QueryRow(ctx, SQLGetRefresh, succ.Hash))
		if err != nil {
			return store.Rotation{}, err
		}
		stored = &st
	}
	if outcome == store.RotateWithinGrace {
		if err := store.SameSuccessor(*old, *stored); err != nil {
			return store.Rotation{}, err
		}
	}
	return store.Rotation{Old: *old, Grant: grant, New: *stored, WithinGrace: outcome == store.RotateWithinGrace}, nil
}
