package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authzd/authz/migrations"
)

var (
	adminOnce sync.Once
	admin     *pgxpool.Pool
	adminErr  error
)

// baseURL returns the configured server, skipping or failing t without one.
func baseURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("AUTHZ_TEST_DATABASE_URL")
	if u == "" {
		if os.Getenv("AUTHZ_TEST_REQUIRE_POSTGRES") == "1" {
			t.Fatal("pgtest: AUTHZ_TEST_REQUIRE_POSTGRES=1 but AUTHZ_TEST_DATABASE_URL is empty; run the tests with `make test`")
		}
		t.Skip("pgtest: AUTHZ_TEST_DATABASE_URL is unset; `make test` starts a PostgreSQL for these tests")
	}
	return u
}

// URL creates a fresh schema, applies the migrations to it and returns a
// connection URL whose search_path selects it. The schema is dropped when
// the test ends.
func URL(t testing.TB) string {
	t.Helper()
	base := baseURL(t)
	adminOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		admin, adminErr = pgxpool.New(ctx, base)
		if adminErr == nil {
			adminErr = admin.Ping(ctx)
		}
	})
	if adminErr != nil {
		t.Fatalf("pgtest: cannot reach PostgreSQL at AUTHZ_TEST_DATABASE_URL: %v", adminErr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	schema := "t_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec(ctx, `CREATE SCHEMA `+schema); err != nil {
		t.Fatalf("pgtest: creating schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := admin.Exec(ctx, `DROP SCHEMA `+schema+` CASCADE`); err != nil {
			t.Errorf("pgtest: dropping schema %s: %v", schema, err)
		}
	})

	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("pgtest: AUTHZ_TEST_DATABASE_URL: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	dsn := u.String()

	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer pool.Close()
	if _, err := migrations.Apply(ctx, pool); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return dsn
}

// Pool returns a pool on a fresh migrated schema (see URL), closed when the
// test ends.
func Pool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	dsn := URL(t)
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}
