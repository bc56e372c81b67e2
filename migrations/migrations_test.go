package migrations_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authzd/authz/migrations"
	"github.com/authzd/authz/provider/store/postgres/pgtest"
)

func TestAllNumberedInOrder(t *testing.T) {
	t.Parallel()
	all := migrations.All()
	if len(all) == 0 {
		t.Fatal("no migrations embedded")
	}
	// Numbers are handed out ahead of time to changes made in parallel, so
	// a branch may lack a lower number for a while: versions must increase
	// (All refuses duplicates), starting at 1.
	if all[0].Version != 1 {
		t.Errorf("the first migration is %s, want version 1", all[0].Name)
	}
	for i, m := range all {
		if i > 0 && m.Version <= all[i-1].Version {
			t.Errorf("migration %s (version %d) does not follow %s", m.Name, m.Version, all[i-1].Name)
		}
		if m.SQL == "" {
			t.Errorf("%s is empty", m.Name)
		}
	}
}

// TestConcurrentApply: several processes starting at once (replicas,
// `authz migrate` beside a server) must not race. pgtest hands out a
// schema that is already migrated, so the test first drops what it made
// and then lets eight pools apply at once.
func TestConcurrentApply(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := pgtest.URL(t)
	reset, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer reset.Close()
	if _, err := reset.Exec(ctx, `DO $$ DECLARE r record; BEGIN
		FOR r IN SELECT tablename FROM pg_tables WHERE schemaname = current_schema() LOOP
			EXECUTE 'DROP TABLE ' || quote_ident(r.tablename) || ' CASCADE';
		END LOOP; END $$`); err != nil {
		t.Fatal(err)
	}

	const n = 8
	applied := make([][]int, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			pool, err := pgxpool.New(ctx, dsn)
			if err != nil {
				errs[i] = err
				return
			}
			defer pool.Close()
			<-start
			applied[i], errs[i] = migrations.Apply(ctx, pool)
		})
	}
	close(start)
	wg.Wait()

	var all []int
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Apply %d: %v", i, errs[i])
		}
		all = append(all, applied[i]...)
	}
	slices.Sort(all)
	var want []int
	for _, m := range migrations.All() {
		want = append(want, m.Version)
	}
	if !slices.Equal(all, want) {
		t.Fatalf("versions applied across %d concurrent runs = %v, want each once: %v", n, all, want)
	}

	var tables int
	if err := reset.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename IN
		('clients','users','grants','auth_codes','refresh_tokens','consents','signing_keys','sessions','initial_access_tokens','revoked_access_tokens')`).Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 10 {
		t.Fatalf("%d of the 10 tables exist after Apply", tables)
	}
	again, err := migrations.Apply(ctx, reset)
	if err != nil || len(again) != 0 {
		t.Fatalf("Apply on an up-to-date schema = %v, %v; want nothing applied", again, err)
	}
}

// TestSecretsAreDigests: every column that holds a server-made secret is
// bytea (a SHA-256 digest), never text, so a plaintext secret has nowhere to go.
func TestSecretsAreDigests(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t)
	rows, err := pool.Query(ctx, `SELECT table_name || '.' || column_name, data_type FROM information_schema.columns
		WHERE table_schema = current_schema() AND (column_name LIKE '%hash%' OR column_name LIKE '%secret%' OR column_name LIKE '%token%')`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	seen := 0
	for rows.Next() {
		var col, typ string
		if err := rows.Scan(&col, &typ); err != nil {
			t.Fatal(err)
		}
		seen++
		switch col {
		case "users.password_hash": // an encoded argon2id hash
			if typ != "text" {
				t.Errorf("%s is %s", col, typ)
			}
		case "clients.secret_expires_at":
		default:
			if typ != "bytea" {
				t.Errorf("%s is %s, want bytea (a digest)", col, typ)
			}
		}
	}
	if seen < 6 {
		t.Fatalf("only %d secret-bearing columns found; the query is wrong", seen)
	}
	var tz int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM information_schema.columns WHERE table_schema = current_schema()
		AND table_name <> 'schema_migrations' AND data_type LIKE 'timestamp%' AND data_type <> 'timestamp with time zone'`).Scan(&tz); err != nil {
		t.Fatal(err)
	}
	if tz != 0 {
		t.Fatalf("%d timestamp columns without time zone", tz)
	}
}

// TestChecksums: Apply records each file's SHA-256; an applied file that
// changed makes Apply and Check refuse; rows from before checksums were kept
// take the file's checksum.
func TestChecksums(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t)
	first := migrations.All()[0]
	if err := migrations.Check(ctx, pool); err != nil {
		t.Fatalf("Check on a migrated schema: %v", err)
	}
	var sum string
	if err := pool.QueryRow(ctx, `SELECT checksum FROM schema_migrations WHERE version = $1`, first.Version).Scan(&sum); err != nil {
		t.Fatal(err)
	}
	mustBe(t, "recorded checksum", sum, first.Checksum())

	if _, err := pool.Exec(ctx, `UPDATE schema_migrations SET checksum = 'deadbeef' WHERE version = $1`, first.Version); err != nil {
		t.Fatal(err)
	}
	if _, err := migrations.Apply(ctx, pool); err == nil || !strings.Contains(err.Error(), first.Name) || !strings.Contains(err.Error(), "changed") {
		t.Fatalf("Apply with a changed file: %v", err)
	}
	if err := migrations.Check(ctx, pool); err == nil || !strings.Contains(err.Error(), first.Name) {
		t.Fatalf("Check with a changed file: %v", err)
	}

	if _, err := pool.Exec(ctx, `UPDATE schema_migrations SET checksum = NULL`); err != nil {
		t.Fatal(err)
	}
	if applied, err := migrations.Apply(ctx, pool); err != nil || len(applied) != 0 {
		t.Fatalf("Apply over rows without checksums: %v %v", applied, err)
	}
	if err := pool.QueryRow(ctx, `SELECT checksum FROM schema_migrations WHERE version = $1`, first.Version).Scan(&sum); err != nil {
		t.Fatal(err)
	}
	mustBe(t, "backfilled checksum", sum, first.Checksum())
}

// TestCheckSaysMigrate: Check changes nothing, and reports a schema that
// lacks migrations, or has never been migrated, as ErrNotCurrent.
func TestCheckSaysMigrate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t)
	all := migrations.All()
	last := all[len(all)-1]
	if _, err := pool.Exec(ctx, `DELETE FROM schema_migrations WHERE version = $1`, last.Version); err != nil {
		t.Fatal(err)
	}
	err := migrations.Check(ctx, pool)
	if !errors.Is(err, migrations.ErrNotCurrent) || !strings.Contains(err.Error(), "run authz migrate") || !strings.Contains(err.Error(), last.Name) {
		t.Fatalf("Check with %s missing: %v", last.Name, err)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	mustBe(t, "rows after Check", n, len(all)-1)

	if _, err := pool.Exec(ctx, `DROP TABLE schema_migrations`); err != nil {
		t.Fatal(err)
	}
	if err := migrations.Check(ctx, pool); !errors.Is(err, migrations.ErrNotCurrent) {
		t.Fatalf("Check without schema_migrations: %v", err)
	}
}

func mustBe[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Fatalf("%s = %v, want %v", what, got, want)
	}
}
