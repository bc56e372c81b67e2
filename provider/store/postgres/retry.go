package postgres

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Dead pooled connections. pgxpool pings a connection that has been idle
// for more than a second before handing it out, but one used a moment ago
// can be dead too (the server restarted, a proxy or firewall dropped it, an
// administrator or idle_session_timeout ended it): the first query on it
// fails although the database is fine. A read is then run once more, on a
// new connection; a write is never retried, since the first attempt may
// have reached the server and a second could apply it twice. A read that
// finds a dead connection also resets the pool: what killed one connection
// (a restart, a network change) usually killed its siblings, and the retry
// must not land on one of them.

// read runs f, which only reads, and runs it once more if its first attempt
// met a dead connection.
func (s *Store) read(ctx context.Context, f func() error) error {
	err := f()
	if err != nil && s.deadConn(ctx, err) {
		err = f()
	}
	return err
}

// readRow is pool.QueryRow for a read: its Scan retries as read does.
func (s *Store) readRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return retryRow{s: s, ctx: ctx, sql: sql, args: args}
}

type retryRow struct {
	s    *Store
	ctx  context.Context
	sql  string
	args []any
}

func (r retryRow) Scan(dest ...any) error {
	return r.s.read(r.ctx, func() error { return r.s.pool.QueryRow(r.ctx, r.sql, r.args...).Scan(dest...) })
}

// readRows runs a query that only reads and scans every row with
// pgx.CollectRows, retrying as read does (before any row is returned to the
// caller). scan wraps its own errors; only the query's are wrapped here.
func readRows[T any](s *Store, ctx context.Context, scan func(pgx.Row) (T, error), sql string, args ...any) ([]T, error) {
	var out []T
	err := s.read(ctx, func() error {
		rows, err := s.pool.Query(ctx, sql, args...)
		if err != nil {
			return wrap(err)
		}
		var scanErr error
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (T, error) {
			v, err := scan(r)
			scanErr = err
			return v, err
		})
		if scanErr != nil {
			return scanErr
		}
		return wrap(err)
	})
	if err != nil || len(out) == 0 {
		return nil, err // nil for no rows, as before CollectRows
	}
	return out, nil
}

// deadConn reports whether err says the connection used was dead, and if so
// resets the pool. A passed deadline or a cancelled request is not a dead
// connection (retrying would only wait again), nor is a failure to connect
// at all (the database itself is unreachable).
func (s *Store) deadConn(ctx context.Context, err error) bool {
	if ctx.Err() != nil || pgconn.Timeout(err) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return false
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return false
	}
	dead := false
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "57P01", "57P02", "57P05": // admin_shutdown, crash_shutdown, idle_session_timeout
			dead = true
		}
	} else {
		dead = pgconn.SafeToRetry(err) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
			errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
	}
	if dead {
		s.pool.Reset()
	}
	return dead
}
