package migrations

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
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

// Beginner is what Apply needs: *pgxpool.Pool and *pgx.Conn both qualify.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// lockKey namespaces the advisory lock; it is combined with the schema name
// so that databases holding several authz schemas (as the tests do) migrate
// each one independently.
const lockKey = "authz.migrations:"

// Apply brings the current schema (the first entry of search_path) up to the
// newest embedded version and returns the versions it applied. Everything
// happens in one transaction that holds an advisory lock: a concurrent Apply
// waits, then sees the work done.
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
	done := map[int]bool{}
	rows, err := tx.Query(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	for _, v := range versions {
		done[v] = true
	}
	all := All()
	if len(versions) > 0 && slices.Max(versions) > all[len(all)-1].Version {
		return nil, fmt.Errorf("migrations: the database is at version %d, newer than this binary knows (%d); upgrade authz",
			slices.Max(versions), all[len(all)-1].Version)
	}
	var applied []int
	for _, m := range all {
		if done[m.Version] {
			continue
		}
		if _, err := tx.Exec(ctx, m.SQL); err != nil {
			return nil, fmt.Errorf("migrations: applying %s: %w", m.Name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name); err != nil {
			return nil, fmt.Errorf("migrations: recording %s: %w", m.Name, err)
		}
		applied = append(applied, m.Version)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	return applied, nil
}
