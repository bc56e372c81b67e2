package migrations_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/authzd/authz/migrations"
	"github.com/authzd/authz/provider/store/postgres/pgtest"
)

// TestIDTokenKeysMoveToSigningKeys: migration 10 turns the ID-token keys a
// database holds (one per algorithm, in id_token_keys) into current
// signing keys of purpose id_token:<alg>, signing since their creation;
// the access-token keys get purpose access_token; id_token_keys is gone.
func TestIDTokenKeysMoveToSigningKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// The schema as version 9 left it.
	if _, err := conn.Exec(ctx, `DO $$ DECLARE r record; BEGIN
		FOR r IN SELECT tablename FROM pg_tables WHERE schemaname = current_schema() LOOP
			EXECUTE 'DROP TABLE ' || quote_ident(r.tablename) || ' CASCADE';
		END LOOP; END $$`); err != nil {
		t.Fatal(err)
	}
	var tenth migrations.Migration
	for _, m := range migrations.All() {
		if m.Version < 10 {
			if _, err := conn.Exec(ctx, m.SQL); err != nil {
				t.Fatalf("%s: %v", m.Name, err)
			}
		} else if m.Version == 10 {
			tenth = m
		}
	}
	created := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	if _, err := conn.Exec(ctx, `INSERT INTO signing_keys (id, algorithm, public_jwk, encrypted_private_key, created_at, activates_at)
		VALUES ('access-1', 'ES256', '{"kty":"EC"}', '\x01', $1, $1)`, created); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO id_token_keys (algorithm, id, public_jwk, encrypted_private_key, created_at)
		VALUES ('RS256', 'rsa-1', '{"kty":"RSA"}', '\x02', $1)`, created.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, tenth.SQL); err != nil {
		t.Fatalf("%s: %v", tenth.Name, err)
	}

	rows, err := conn.Query(ctx, `SELECT id || ' ' || algorithm || ' ' || purpose || ' ' || (activates_at = created_at)::text || ' ' || (retired_at IS NULL)::text
		FROM signing_keys ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"access-1 ES256 access_token true true", "rsa-1 RS256 id_token:RS256 true true"}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("signing keys after %s: %q, want %q", tenth.Name, got, want)
	}
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('id_token_keys') IS NOT NULL`).Scan(&exists); err != nil || exists {
		t.Fatalf("id_token_keys after %s: exists %v, %v", tenth.Name, exists, err)
	}
}
