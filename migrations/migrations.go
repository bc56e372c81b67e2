package migrations

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

//go:embed *.sql
var files embed.FS

// Migration is one numbered SQL file.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// All returns the embedded migrations in version order. File names are
// NNNN_name.sql; a malformed or duplicated number is a build mistake and
// panics at first use rather than half-applying a schema.
func All() []Migration {
	entries, err := fs.Glob(files, "*.sql")
	if err != nil {
		panic(err)
	}
	var out []Migration
	for _, name := range entries {
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			panic("migrations: bad file name " + name)
		}
		b, err := files.ReadFile(name)
		if err != nil {
			panic(err)
		}
		out = append(out, Migration{Version: v, Name: name, SQL: string(b)})
	}
	slices.SortFunc(out, func(a, b Migration) int { return a.Version - b.Version })
	for i := 1; i < len(out); i++ {
		if out[i].Version == out[i-1].Version {
			panic("migrations: duplicate version " + out[i].Name)
		}
	}
	return out
}

// Checksum is the SHA-256 of a migration file, recorded when it is applied:
// an applied file that changes afterwards is refused, since the databases
// that ran the old text would silently differ from the ones that run the new.
func (m Migration) Checksum() string {
	sum := sha256.Sum256([]byte(m.SQL))
	return hex.EncodeToString(sum[:])
}

// Beginner is what Apply needs: *pgxpool.Pool and *pgx.Conn both qualify.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Querier is what Check needs: *pgxpool.Pool and *pgx.Conn both qualify.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// lockKey namespaces the advisory lock; it is combined with the schema name
// so that databases holding several authz schemas (as the tests do) migrate
// each one independently.
const lockKey = "authz.migrations:"

// ErrNotCurrent: the schema is not at the version this binary was built
// for. Only `authz migrate` (or `authz serve` with AUTHZ_AUTO_MIGRATE)
// changes the schema; other commands stop and say so.
var ErrNotCurrent = errors.New("migrations: the database schema is not the one this authz needs")

// applied is one row of schema_migrations.
type applied struct {
	version  int
	checksum string // "" when recorded before checksums were kept
}

// verify compares what the database has applied with the embedded files:
// a changed file is refused; a database newer than the binary is refused.
// It returns the versions still to apply, in order.
func verify(rows []applied) ([]Migration, error) {
	all := All()
	byVersion := map[int]Migration{}
	for _, m := range all {
		byVersion[m.Version] = m
	}
	done := map[int]bool{}
	maxDone := 0
	for _, a := range rows {
		done[a.version] = true
		maxDone = max(maxDone, a.version)
		m, ok := byVersion[a.version]
		if ok && a.checksum != "" && a.checksum != m.Checksum() {
			return nil, fmt.Errorf("migrations: %s was changed after it was applied to this database (checksum %.12s…, the file now has %.12s…): restore the original file; a schema change is a new migration, never an edit", m.Name, a.checksum, m.Checksum())
		}
	}
	if maxDone > all[len(all)-1].Version {
		return nil, fmt.Errorf("migrations: the database is at version %d, newer than this binary knows (%d); upgrade authz", maxDone, all[len(all)-1].Version)
	}
	var pending []Migration
	for _, m := range all {
		if !done[m.Version] {
			pending = append(pending, m)
		}
	}
	return pending, nil
}

func readApplied(ctx context.Context, q Querier) ([]applied, error) {
	rows, err := q.Query(ctx, `SELECT version, coalesce(checksum, '') FROM schema_migrations`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (applied, error) {
		var a applied
		err := r.Scan(&a.version, &a.checksum)
		return a, err
	})
}

// Check reports, without changing anything, whether the current schema is
// exactly what this binary needs. A schema that lacks migrations (or has
// none) is ErrNotCurrent with a message saying to run `authz migrate`.
func Check(ctx context.Context, q Querier) error {
	rows, err := readApplied(ctx, q)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (pe.Code == "42P01" || pe.Code == "42703") {
		// No bookkeeping table yet, or one from before checksums: migrate
		// creates or upgrades it.
		return fmt.Errorf("%w: the database has not been migrated to this version of authz: run authz migrate", ErrNotCurrent)
	}
	if err != nil {
		return fmt.Errorf("migrations: reading the schema version: %w", err)
	}
	pending, err := verify(rows)
	if err != nil {
		return err
	}
	if len(pending) > 0 {
		return fmt.Errorf("%w: the database lacks migration %s (and %d more); run authz migrate", ErrNotCurrent, pending[0].Name, len(pending)-1)
	}
	return nil
}

// Apply brings the current schema (the first entry of search_path) up to the
// newest embedded version and returns the versions it applied. Everything
// happens in one transaction that holds an advisory lock: a concurrent Apply
// waits, then sees the work done. It refuses to run when a file applied
// earlier has changed since.
func Apply(ctx context.Context, db Beginner) ([]int, error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit

	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1 || current_schema(), 0))`, lockKey); err != nil {
		return nil, fmt.Errorf("migrations: taking the lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    integer PRIMARY KEY,
		name       text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
	)`); err != nil {
		return nil, fmt.Errorf("migrations: creating schema_migrations: %w", err)
	}
	if _, err := tx.Exec(ctx, `ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS checksum text`); err != nil {
		return nil, fmt.Errorf("migrations: adding checksums to schema_migrations: %w", err)
	}
	rows, err := readApplied(ctx, tx)
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	pending, err := verify(rows)
	if err != nil {
		return nil, err
	}
	// Rows recorded before checksums were kept take the file's checksum
	// now, so any later edit is caught.
	for _, m := range All() {
		if _, err := tx.Exec(ctx, `UPDATE schema_migrations SET checksum = $2 WHERE version = $1 AND checksum IS NULL`, m.Version, m.Checksum()); err != nil {
			return nil, fmt.Errorf("migrations: recording the checksum of %s: %w", m.Name, err)
		}
	}
	var done []int
	for _, m := range pending {
		if _, err := tx.Exec(ctx, m.SQL); err != nil {
			return nil, fmt.Errorf("migrations: applying %s: %w", m.Name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)`, m.Version, m.Name, m.Checksum()); err != nil {
			return nil, fmt.Errorf("migrations: recording %s: %w", m.Name, err)
		}
		done = append(done, m.Version)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	return done, nil
}
