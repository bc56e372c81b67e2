package postgres

import (
	"encoding/binary"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// Rows of the grant operations decoded directly from the wire (issue 13,
// "no avoidable work on the hot path"). pgx's Scan plans every column anew
// for each row a QueryRow returns (pgtype.Map.PlanScan, a wrapped plan per
// *time.Time and **time.Time, an element plan per array): about 30
// allocations for a rotation's two rows, spent deciding what the schema
// already says. The grants, refresh_tokens and auth_codes columns are
// text, bytea, text[] and timestamptz; in binary format (which pgx asks
// for whenever it knows the statement's columns, as in its default cached
// statement mode) each is a few lines to decode, per the type's send
// function in PostgreSQL's sources. A row in any other shape (a text
// result, as default_query_exec_mode=simple_protocol in the URL gives, or
// an unexpected type) takes pgx's own Scan, so the decoding here is never
// the only way a row can be read.

// scanRow reads one row with fast when every column is as fast expects,
// and otherwise with slow, which scans with pgx and so also reports
// whatever is wrong with the row. No row is store.ErrNotFound.
func scanRow[T any](row pgx.Row, fast func(*binRow) T, slow func(pgx.Rows) (T, error)) (T, error) {
	var v T
	err := row.Scan(rowScanner(func(rows pgx.Rows) (err error) {
		r := binRow{fds: rows.FieldDescriptions(), vals: rows.RawValues()}
		r.ok = len(r.fds) == len(r.vals)
		if v = fast(&r); r.ok && r.i == len(r.vals) {
			return nil
		}
		v, err = slow(rows)
		return err
	}))
	if err != nil {
		var zero T
		return zero, wrap(err)
	}
	return v, nil
}

// rowScanner is a pgx.RowScanner: Scan hands it the row undecoded.
type rowScanner func(pgx.Rows) error

func (f rowScanner) ScanRow(rows pgx.Rows) error { return f(rows) }

// binRow reads a row's columns in order. Anything it does not expect (a
// type, a text format, a NULL where the column has none, an infinite
// time, an array not one-dimensional) clears ok, and every later read
// returns a zero value.
type binRow struct {
	fds  []pgconn.FieldDescription
	vals [][]byte
	i    int
	ok   bool
}

// col returns the next column's raw value if it has type oid in binary
// format (a text column reads the same in either format).
func (r *binRow) col(oid uint32, null bool) []byte {
	if !r.ok || r.i >= len(r.vals) || r.fds[r.i].DataTypeOID != oid ||
		(r.fds[r.i].Format != pgtype.BinaryFormatCode && oid != pgtype.TextOID) ||
		(r.vals[r.i] == nil && !null) {
		r.ok = false
		return nil
	}
	r.i++
	return r.vals[r.i-1]
}

func (r *binRow) text() string { return string(r.col(pgtype.TextOID, false)) }

func (r *binRow) bytes() []byte {
	v := r.col(pgtype.ByteaOID, false)
	if !r.ok {
		return nil
	}
	return append([]byte{}, v...)
}

// pgEpoch is timestamptz's zero, 2000-01-01 00:00:00 UTC, in Unix
// microseconds; timestamptz_send writes microseconds since then.
const pgEpoch = 946_684_800 * 1_000_000

func (r *binRow) time() time.Time { return r.decodeTime(r.col(pgtype.TimestamptzOID, false)) }

// nullTime is NULL as the zero time, as fromNull makes it.
func (r *binRow) nullTime() time.Time { return r.decodeTime(r.col(pgtype.TimestamptzOID, true)) }

func (r *binRow) decodeTime(v []byte) time.Time {
	if !r.ok || v == nil {
		return time.Time{}
	}
	if len(v) != 8 {
		r.ok = false
		return time.Time{}
	}
	us := int64(binary.BigEndian.Uint64(v))
	if us == math.MaxInt64 || us == math.MinInt64 { // ±infinity: no time.Time holds it
		r.ok = false
		return time.Time{}
	}
	return time.Unix(pgEpoch/1e6+us/1e6, us%1e6*1e3).UTC() // not pgEpoch+us, which can overflow
}

// texts is a NOT NULL text[] of one dimension or none (array_send: the
// number of dimensions, a has-nulls flag, the element type, each
// dimension's length and lower bound, then each element's length and
// bytes). Empty is a non-nil empty slice, as pgx scans it.
func (r *binRow) texts() []string {
	v := r.col(pgtype.TextArrayOID, false)
	if !r.ok {
		return nil
	}
	bad := func() []string { r.ok = false; return nil }
	if len(v) < 12 || binary.BigEndian.Uint32(v[8:]) != pgtype.TextOID {
		return bad()
	}
	switch binary.BigEndian.Uint32(v) {
	case 0:
		return []string{}
	case 1:
	default:
		return bad()
	}
	if len(v) < 20 {
		return bad()
	}
	n := int(int32(binary.BigEndian.Uint32(v[12:])))
	v = v[20:]
	if n < 0 || n > len(v)/4 {
		return bad()
	}
	out := make([]string, n)
	for i := range out {
		if len(v) < 4 {
			return bad()
		}
		l := int(int32(binary.BigEndian.Uint32(v)))
		if l < 0 || l > len(v)-4 { // -1 is a NULL element
			return bad()
		}
		out[i], v = string(v[4:4+l]), v[4+l:]
	}
	if len(v) != 0 {
		return bad()
	}
	return out
}
