package postgres_test

import (
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/store"
	"github.com/authzd/authz/provider/store/postgres"
	"github.com/authzd/authz/provider/store/postgres/pgtest"
)

// base is the clock every round-trip count starts from.
var base = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// roundTripStore is a store on a pool that counts round trips, holding
// client "c" (public) and user "u", where every count below starts.
func roundTripStore(t *testing.T) (*postgres.Store, *pgxpool.Pool, *pgtest.RoundTrips, func(error)) {
	t.Helper()
	t.Parallel()
	pool, rt := pgtest.CountingPool(t)
	st := postgres.New(pool)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(st.CreateClient(t.Context(), store.Client{ID: "c", Metadata: store.ClientMetadata{TokenEndpointAuthMethod: oauth.AuthNone}, CreatedAt: base, UpdatedAt: base}))
	must(st.CreateUser(t.Context(), store.User{ID: "u", Username: "u", PasswordHash: "x", CreatedAt: base}))
	return st, pool, rt, must
}

func hash(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }

// TestGrantOperationsTakeTwoRoundTrips pins issue 13's shape: rotation and
// code redemption, in every outcome, cost at most two round trips to
// PostgreSQL once the statements are prepared. A count, never a time.
func TestGrantOperationsTakeTwoRoundTrips(t *testing.T) {
	st, pool, rt, must := roundTripStore(t)
	ctx := t.Context()

	next := func(now time.Time) store.NextRefreshFunc {
		return func(old store.RefreshToken, g store.Grant) (store.RefreshToken, error) {
			return store.RefreshToken{ID: old.ID + "'", Hash: hash("next " + string(old.Hash)), GrantID: g.ID, ClientID: old.ClientID,
				ParentID: old.ID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}, nil
		}
	}
	grant := func(name string) (code []byte) {
		code = hash("code " + name)
		must(st.CreateAuthCode(ctx,
			store.AuthCode{Hash: code, ClientID: "c", UserID: "u", GrantID: name, CreatedAt: base, ExpiresAt: base.Add(time.Minute)},
			store.Grant{ID: name, ClientID: "c", UserID: "u", CodeHash: code, CreatedAt: base, ExpiresAt: base.Add(24 * time.Hour)}))
		return code
	}
	first := func(name string) store.RedeemFunc {
		// As the server's exchange: the first refresh token and the
		// grant.created event, stored by the redemption itself.
		return func(store.AuthCode) (store.Redemption, error) {
			return store.Redemption{
				Refresh: &store.RefreshToken{ID: name + "-rt", Hash: hash("rt " + name), GrantID: name, ClientID: "c",
					CreatedAt: base, ExpiresAt: base.Add(time.Hour)},
				Events: []store.AuditEvent{{Time: base, Name: "grant.created", Actor: "user", Subject: "u", ClientID: "c",
					ClientIP: "192.0.2.1", RequestID: "req-" + name, Outcome: "ok", Details: map[string]string{"grant_id": name, "scope": "read"}}},
			}, nil
		}
	}
	const grace = 30 * time.Second
	t1 := base.Add(time.Second)
	steps := func(name string) []struct {
		what string
		run  func() error
	} {
		code := grant(name)
		return []struct {
			what string
			run  func() error
		}{
			{"ConsumeAuthCode (win, with its refresh token)", func() error {
				_, err := st.ConsumeAuthCode(ctx, code, base, first(name))
				return err
			}},
			{"RotateRefreshToken (win)", func() error {
				_, err := st.RotateRefreshToken(ctx, hash("rt "+name), t1, grace, next(t1))
				return err
			}},
			{"RotateRefreshToken (inside grace)", func() error {
				_, err := st.RotateRefreshToken(ctx, hash("rt "+name), t1.Add(time.Second), grace, next(t1))
				return err
			}},
			{"RotateRefreshToken (unknown token)", func() error {
				_, err := st.RotateRefreshToken(ctx, hash("nothing"), t1, grace, next(t1))
				return ignore(err, store.ErrNotFound)
			}},
			{"RotateRefreshToken (reuse)", func() error {
				_, err := st.RotateRefreshToken(ctx, hash("rt "+name), t1.Add(grace), grace, next(t1))
				return ignore(err, store.ErrRefreshReused)
			}},
			{"ConsumeAuthCode (replay; the reuse above revoked the grant)", func() error {
				_, err := st.ConsumeAuthCode(ctx, code, base, first(name))
				return ignore(err, store.ErrCodeSpent)
			}},
		}
	}
	// Warm up: the first use of each statement prepares it. Only the
	// statements matter here; the counted run checks the outcomes.
	for _, s := range steps("warm") {
		_ = s.run()
	}
	for _, s := range steps("counted") {
		rt.Reset()
		err := s.run()
		n := rt.Count()
		t.Logf("%s: %d round trips", s.what, n)
		if n > 2 {
			t.Errorf("%s: %d round trips, want at most 2", s.what, n)
		}
		must(err)
	}
	// One commit: an exchange's audit event is written by the transaction
	// that spends the code and stores the refresh token (the rows share
	// xmin), in its two round trips, not by a second transaction.
	code := grant("single")
	rt.Reset()
	_, err := st.ConsumeAuthCode(ctx, code, base, first("single"))
	if n := rt.Count(); n > 2 {
		t.Errorf("ConsumeAuthCode with its audit event: %d round trips, want at most 2", n)
	}
	must(err)
	var rows, txns int
	must(pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT xmin::text) FROM (
		SELECT xmin FROM audit_events WHERE request_id = 'req-single'
		UNION ALL SELECT xmin FROM refresh_tokens WHERE hash = $1) AS r`, hash("rt single")).Scan(&rows, &txns))
	if rows != 2 || txns != 1 {
		t.Errorf("the exchange's event and refresh token are %d rows written by %d transactions, want 2 rows by 1", rows, txns)
	}

	// The counter counts: a plain transaction is three (begin, statement,
	// commit).
	rt.Reset()
	must(pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { _, err := tx.Exec(ctx, `SELECT 1`); return err }))
	if n := rt.Count(); n != 3 {
		t.Errorf("the counter saw %d round trips for begin, select, commit; want 3", n)
	}
}

// ignore maps the expected refusal to nil.
func ignore(err, want error) error {
	if errors.Is(err, want) {
		return nil
	}
	return err
}

// TestAuthorizeOperationsTakeOneRoundTrip pins the store's share of GET
// /authorize (issue 13): reading the signed-in user with their session is
// one round trip (it was two reads), and storing a code with its grant is
// one (it was begin, two inserts, commit: four). A count, never a time.
func TestAuthorizeOperationsTakeOneRoundTrip(t *testing.T) {
	st, _, rt, must := roundTripStore(t)
	ctx := t.Context()
	must(st.CreateSession(ctx, store.Session{Hash: hash("session"), UserID: "u", CreatedAt: base, ExpiresAt: base.Add(time.Hour)}))

	steps := func(name string) []struct {
		what string
		run  func() error
	} {
		code := hash("code " + name)
		return []struct {
			what string
			run  func() error
		}{
			{"GetSessionUser (signed in)", func() error {
				_, u, err := st.GetSessionUser(ctx, hash("session"), base)
				if err == nil && u.ID != "u" {
					err = errors.New("the session came with user " + u.ID)
				}
				return err
			}},
			{"GetSessionUser (expired)", func() error {
				_, _, err := st.GetSessionUser(ctx, hash("session"), base.Add(time.Hour))
				return ignore(err, store.ErrExpired)
			}},
			{"GetSessionUser (unknown)", func() error {
				_, _, err := st.GetSessionUser(ctx, hash("nothing"), base)
				return ignore(err, store.ErrNotFound)
			}},
			{"CreateAuthCode", func() error {
				return st.CreateAuthCode(ctx,
					store.AuthCode{Hash: code, ClientID: "c", UserID: "u", GrantID: name, RedirectURI: "https://app.example.com/cb",
						CodeChallenge: "challenge", Scopes: []string{"read"}, Nonce: "n", CreatedAt: base, ExpiresAt: base.Add(time.Minute), AuthTime: base},
					store.Grant{ID: name, ClientID: "c", UserID: "u", Scopes: []string{"read"}, CodeHash: code, CreatedAt: base,
						ExpiresAt: base.Add(24 * time.Hour), AuthTime: base})
			}},
		}
	}
	// Warm up: the first use of each statement prepares it.
	for _, s := range steps("warm") {
		_ = s.run()
	}
	// Last, because pgx drops a cached statement the server refused and
	// the connection's next query pays for that: a refused code (its hash
	// taken) is refused in one round trip too.
	conflict := struct {
		what string
		run  func() error
	}{"CreateAuthCode (hash taken)", func() error {
		code := hash("code counted")
		err := st.CreateAuthCode(ctx,
			store.AuthCode{Hash: code, ClientID: "c", UserID: "u", GrantID: "other", CreatedAt: base, ExpiresAt: base.Add(time.Minute)},
			store.Grant{ID: "other", ClientID: "c", UserID: "u", CodeHash: code, CreatedAt: base, ExpiresAt: base.Add(24 * time.Hour)})
		return ignore(err, store.ErrAlreadyExists)
	}}
	for _, s := range append(steps("counted"), conflict) {
		rt.Reset()
		err := s.run()
		n := rt.Count()
		t.Logf("%s: %d round trips", s.what, n)
		if n != 1 {
			t.Errorf("%s: %d round trips, want 1", s.what, n)
		}
		must(err)
	}
	// What was stored in one round trip is the grant and its code,
	// together: the code redeems once, with every field.
	got, err := st.ConsumeAuthCode(ctx, hash("code counted"), base.Add(time.Second), nil)
	must(err)
	if got.GrantID != "counted" || got.RedirectURI != "https://app.example.com/cb" || got.Nonce != "n" || !got.AuthTime.Equal(base) {
		t.Errorf("redeemed code %+v", got)
	}
}
