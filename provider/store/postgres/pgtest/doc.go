// Package pgtest gives each test a PostgreSQL schema of its own, migrated
// and dropped afterwards, so Postgres-backed tests run in parallel without
// seeing each other's rows.
//
// The server comes from AUTHZ_TEST_DATABASE_URL (scripts/with-postgres.sh
// starts a throwaway one for `make test`). When it is unset the tests skip,
// unless AUTHZ_TEST_REQUIRE_POSTGRES=1 (as `make test` sets), in which case
// they fail: under `make test` Postgres is never silently skipped.
package pgtest
