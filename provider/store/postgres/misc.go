package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/authzd/authz/provider/store"
)

// ---- Access-token revocation (RFC 7009) ----

// RevokeAccessToken keeps the later expiry when a jti is revoked twice, so
// an entry never disappears while its token could still be valid.
func (s *Store) RevokeAccessToken(ctx context.Context, jti string, expiresAt time.Time) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO revoked_access_tokens (jti, expires_at) VALUES ($1, $2)
		ON CONFLICT (jti) DO UPDATE SET expires_at = GREATEST(revoked_access_tokens.expires_at, EXCLUDED.expires_at)`,
		jti, ts(expiresAt))
	return wrap(err)
}

const jtiRevoked = `EXISTS (SELECT 1 FROM revoked_access_tokens WHERE jti = $1 AND expires_at > $2)`

// AccessTokenStatus is one round trip, since introspection pays for it on
// every call. Without a grant it is one statement that asks only whether
// the client's row exists (its metadata is never read); with one, the
// revocation check and GetGrant's query go as one pgx batch, whose
// statements are sent together and answered together. Grant liveness is
// decided by the caller (AccessTokenStatus.Live), not in SQL.
func (s *Store) AccessTokenStatus(ctx context.Context, jti, grantID, clientID string, now time.Time) (store.AccessTokenStatus, error) {
	var st store.AccessTokenStatus
	if grantID == "" {
		err := s.readRow(ctx, `SELECT `+jtiRevoked+`, EXISTS (SELECT 1 FROM clients WHERE id = $3)`, jti, ts(now), clientID).
			Scan(&st.Revoked, &st.Found)
		return st, wrap(err)
	}
	err := s.read(ctx, func() error {
		st = store.AccessTokenStatus{}
		b := &pgx.Batch{}
		b.Queue(`SELECT `+jtiRevoked, jti, ts(now))
		b.Queue(`SELECT `+grantCols+` FROM grants WHERE id = $1`, grantID)
		br := s.pool.SendBatch(ctx, b)
		defer br.Close()
		if err := br.QueryRow().Scan(&st.Revoked); err != nil {
			return wrap(err)
		}
		g, err := scanGrant(br.QueryRow()) // wrapped: ErrNotFound when there is no such grant
		switch {
		case err == nil:
			st.Found, st.Grant = true, &g
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
		return wrap(br.Close())
	})
	return st, err
}

// ---- Consents ----

func (s *Store) GetConsent(ctx context.Context, userID, clientID string) (store.Consent, error) {
	c := store.Consent{UserID: userID, ClientID: clientID}
	err := s.readRow(ctx, `SELECT scopes, resources, updated_at FROM consents WHERE user_id = $1 AND client_id = $2`, userID, clientID).
		Scan(&c.Scopes, &c.Resources, &c.UpdatedAt)
	if err != nil {
		return store.Consent{}, wrap(err)
	}
	c.UpdatedAt = c.UpdatedAt.UTC()
	return c, nil
}

// AddConsent merges in one statement: ON CONFLICT DO UPDATE locks the row,
// so a concurrent consent waits and then adds to what this one wrote.
func (s *Store) AddConsent(ctx context.Context, c store.Consent) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO consents (user_id, client_id, scopes, resources, updated_at)
		VALUES ($1, $2, ARRAY(SELECT v FROM unnest($3::text[]) WITH ORDINALITY AS x(v, i) GROUP BY v ORDER BY min(i)),
		        ARRAY(SELECT v FROM unnest($4::text[]) WITH ORDINALITY AS x(v, i) GROUP BY v ORDER BY min(i)), $5)
		ON CONFLICT (user_id, client_id) DO UPDATE SET
			scopes = consents.scopes || ARRAY(SELECT v FROM unnest(EXCLUDED.scopes) AS v WHERE v <> ALL (consents.scopes)),
			resources = consents.resources || ARRAY(SELECT v FROM unnest(EXCLUDED.resources) AS v WHERE v <> ALL (consents.resources)),
			updated_at = EXCLUDED.updated_at`,
		c.UserID, c.ClientID, arr(c.Scopes), arr(c.Resources), ts(c.UpdatedAt))
	return wrap(err)
}

func (s *Store) DeleteConsent(ctx context.Context, userID, clientID string) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM consents WHERE user_id = $1 AND client_id = $2`, userID, clientID)
	return wrap(err)
}

// ---- Counters ----

// HitCounter is one upsert: the row lock serialises concurrent hits across
// replicas, and an expired window restarts at one.
func (s *Store) HitCounter(ctx context.Context, key string, window time.Duration, now time.Time) (store.Counter, error) {
	now = ts(now)
	c := store.Counter{Key: key}
	err := s.pool.QueryRow(ctx, `INSERT INTO rate_counters (key, count, expires_at) VALUES ($1, 1, $3)
		ON CONFLICT (key) DO UPDATE SET
			count = CASE WHEN rate_counters.expires_at <= $2 THEN 1 ELSE rate_counters.count + 1 END,
			expires_at = CASE WHEN rate_counters.expires_at <= $2 THEN EXCLUDED.expires_at ELSE rate_counters.expires_at END
		RETURNING count, expires_at`, key, now, ts(now.Add(window))).Scan(&c.Count, &c.ExpiresAt)
	if err != nil {
		return store.Counter{}, wrap(err)
	}
	c.ExpiresAt = c.ExpiresAt.UTC()
	return c, nil
}

func (s *Store) UnhitCounter(ctx context.Context, key string, now time.Time) error {
	_, err := s.pool.Exec(ctx, `UPDATE rate_counters SET count = count - 1 WHERE key = $1 AND expires_at > $2 AND count > 0`, key, ts(now))
	if err = wrap(err); errors.Is(err, store.ErrNotFound) {
		return nil // a key the database cannot hold names no counter
	}
	return err
}

func (s *Store) GetCounter(ctx context.Context, key string, now time.Time) (store.Counter, error) {
	c := store.Counter{Key: key}
	err := s.readRow(ctx, `SELECT count, expires_at FROM rate_counters WHERE key = $1 AND expires_at > $2`, key, ts(now)).
		Scan(&c.Count, &c.ExpiresAt)
	if err != nil {
		return store.Counter{}, wrap(err)
	}
	c.ExpiresAt = c.ExpiresAt.UTC()
	return c, nil
}

func (s *Store) DeleteCounters(ctx context.Context, prefix string) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM rate_counters WHERE starts_with(key, $1)`, prefix)
	if err != nil {
		return 0, wrap(err)
	}
	return tag.RowsAffected(), nil
}

// ---- Signing keys ----

// signingKeysLock serialises rotations and first-key creation, per schema
// (the tests keep several authz schemas in one database).
const signingKeysLock = `SELECT pg_advisory_xact_lock(hashtextextended('authz.signing_keys:' || current_schema(), 0))`

func insertSigningKey(ctx context.Context, tx pgx.Tx, k store.SigningKey) error {
	_, err := tx.Exec(ctx, `INSERT INTO signing_keys (id, algorithm, purpose, public_jwk, encrypted_private_key, created_at, activates_at, retired_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)`, k.ID, k.Algorithm, k.KeyPurpose(), string(k.PublicJWK), k.EncryptedPrivateKey, ts(k.CreatedAt), ts(k.Activation()))
	return wrap(err)
}

func (s *Store) RotateSigningKey(ctx context.Context, k store.SigningKey) error {
	return s.tx(ctx, func(tx pgx.Tx) (bool, error) {
		if _, err := tx.Exec(ctx, signingKeysLock); err != nil {
			return false, wrap(err)
		}
		// The previous keys of its purpose sign until the new one starts to.
		if _, err := tx.Exec(ctx, `UPDATE signing_keys SET retired_at = $1 WHERE purpose = $2 AND (retired_at IS NULL OR retired_at > $1)`,
			ts(k.Activation()), k.KeyPurpose()); err != nil {
			return false, wrap(err)
		}
		return false, insertSigningKey(ctx, tx, k)
	})
}

// CreateFirstSigningKey inserts under the same advisory lock as rotations,
// so a replica that waited for it sees the key another one just made.
func (s *Store) CreateFirstSigningKey(ctx context.Context, k store.SigningKey) error {
	return s.tx(ctx, func(tx pgx.Tx) (bool, error) {
		if _, err := tx.Exec(ctx, signingKeysLock); err != nil {
			return false, wrap(err)
		}
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM signing_keys WHERE purpose = $1)`, k.KeyPurpose()).Scan(&exists); err != nil {
			return false, wrap(err)
		}
		if exists {
			return false, store.ErrAlreadyExists
		}
		return false, insertSigningKey(ctx, tx, k)
	})
}

func (s *Store) ListSigningKeys(ctx context.Context) ([]store.SigningKey, error) {
	return readRows(s, ctx, scanSigningKey, `SELECT id, algorithm, purpose, public_jwk, encrypted_private_key, created_at, activates_at, retired_at
		FROM signing_keys ORDER BY created_at DESC, id COLLATE "C" DESC`)
}

func scanSigningKey(row pgx.Row) (store.SigningKey, error) {
	var k store.SigningKey
	var retired *time.Time
	if err := row.Scan(&k.ID, &k.Algorithm, &k.Purpose, &k.PublicJWK, &k.EncryptedPrivateKey, &k.CreatedAt, &k.ActivatesAt, &retired); err != nil {
		return store.SigningKey{}, wrap(err)
	}
	k.CreatedAt, k.ActivatesAt, k.RetiredAt = k.CreatedAt.UTC(), k.ActivatesAt.UTC(), fromNull(retired)
	return k, nil
}

// ResealSigningKey is one conditional UPDATE: the comparison with old and
// the write are atomic, so no lock is needed.
func (s *Store) ResealSigningKey(ctx context.Context, id string, old, sealed []byte) (bool, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE signing_keys SET encrypted_private_key = $3 WHERE id = $1 AND encrypted_private_key = $2`, id, old, sealed)
	if err != nil {
		return false, wrap(err)
	}
	return tag.RowsAffected() == 1, nil
}

func (s *Store) DeleteSigningKeysRetiredBefore(ctx context.Context, t time.Time) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND retired_at < $1`, ts(t))
	return wrap(err)
}

// ---- Sessions ----

func (s *Store) CreateSession(ctx context.Context, se store.Session) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO sessions (hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)`,
		se.Hash, se.UserID, ts(se.CreatedAt), ts(se.ExpiresAt))
	return wrap(err)
}

// SQLGetSessionUser reads a session and its user in one round trip (issue
// 13: it was two sequential reads on every authorization request). The
// inner join finds no row for a session whose user is gone.
// u.* is userCols, in that order.
const SQLGetSessionUser = `SELECT s.hash, s.user_id, s.created_at, s.expires_at, u.*
	FROM sessions s JOIN (SELECT ` + userCols + ` FROM users) u ON u.id = s.user_id WHERE s.hash = $1`

func (s *Store) GetSessionUser(ctx context.Context, hash []byte, now time.Time) (store.Session, store.User, error) {
	var se store.Session
	var u store.User
	err := s.readRow(ctx, SQLGetSessionUser, hash).Scan(&se.Hash, &se.UserID, &se.CreatedAt, &se.ExpiresAt,
		&u.ID, &u.Username, &u.PasswordHash, &u.Name, &u.Email, &u.EmailVerified, &u.Provider, &u.CreatedAt)
	if err != nil {
		return store.Session{}, store.User{}, wrap(err)
	}
	se.CreatedAt, se.ExpiresAt, u.CreatedAt = se.CreatedAt.UTC(), se.ExpiresAt.UTC(), u.CreatedAt.UTC()
	if !ts(now).Before(se.ExpiresAt) {
		return store.Session{}, store.User{}, store.ErrExpired
	}
	return se, u, nil
}

func (s *Store) DeleteSession(ctx context.Context, hash []byte) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM sessions WHERE hash = $1`, hash)
	return wrap(err)
}

// ---- Initial access tokens (RFC 7591 §3) ----

func (s *Store) CreateInitialAccessToken(ctx context.Context, t store.InitialAccessToken) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO initial_access_tokens (hash, created_at, expires_at, allow_grants, scopes, resources)
		VALUES ($1, $2, $3, $4, $5, $6)`,
		t.Hash, ts(t.CreatedAt), nullTS(t.ExpiresAt), arr(t.AllowGrants), arr(t.Scopes), arr(t.Resources))
	return wrap(err)
}

func (s *Store) GetInitialAccessToken(ctx context.Context, hash []byte, now time.Time) (store.InitialAccessToken, error) {
	var t store.InitialAccessToken
	var exp *time.Time
	if err := s.readRow(ctx, `SELECT hash, created_at, expires_at, allow_grants, scopes, resources
		FROM initial_access_tokens WHERE hash = $1`, hash).
		Scan(&t.Hash, &t.CreatedAt, &exp, &t.AllowGrants, &t.Scopes, &t.Resources); err != nil {
		return store.InitialAccessToken{}, wrap(err)
	}
	t.CreatedAt, t.ExpiresAt = t.CreatedAt.UTC(), fromNull(exp)
	if !t.ExpiresAt.IsZero() && !ts(now).Before(t.ExpiresAt) {
		return store.InitialAccessToken{}, store.ErrExpired
	}
	return t, nil
}

// ---- Garbage collection ----

// DeleteExpired mirrors the memory store: codes first (so a grant whose code
// expires now counts as never redeemed with its code gone), then grants past
// their lifetime or abandoned (their codes and refresh tokens go by
// cascade), then the rest. Revoked grants within their lifetime stay, so a
// replay of their code is still recognised. One transaction, so a crash
// half-way leaves nothing inconsistent.
func (s *Store) DeleteExpired(ctx context.Context, now time.Time) (int64, error) {
	now = ts(now)
	var n int64
	err := s.tx(ctx, func(tx pgx.Tx) (bool, error) {
		// Each statement answers with the number of rows it removed.
		for _, q := range []string{
			`WITH d AS (DELETE FROM auth_codes WHERE expires_at <= $1 RETURNING 1) SELECT count(*) FROM d`,
			// Count what goes with the grants, as the memory store does.
			`WITH doomed AS (
				SELECT id FROM grants g WHERE g.expires_at <= $1
				   OR (g.last_used_at IS NULL AND NOT EXISTS (SELECT 1 FROM auth_codes c WHERE c.hash = g.code_hash))
			), rts AS (
				DELETE FROM refresh_tokens WHERE grant_id IN (SELECT id FROM doomed) RETURNING 1
			), codes AS (
				DELETE FROM auth_codes WHERE grant_id IN (SELECT id FROM doomed) RETURNING 1
			), gs AS (
				DELETE FROM grants WHERE id IN (SELECT id FROM doomed) RETURNING 1
			)
			SELECT (SELECT count(*) FROM rts) + (SELECT count(*) FROM codes) + (SELECT count(*) FROM gs)`,
			`WITH d AS (DELETE FROM refresh_tokens WHERE expires_at <= $1 RETURNING 1) SELECT count(*) FROM d`,
			`WITH d AS (DELETE FROM sessions WHERE expires_at <= $1 RETURNING 1) SELECT count(*) FROM d`,
			`WITH d AS (DELETE FROM initial_access_tokens WHERE expires_at IS NOT NULL AND expires_at <= $1 RETURNING 1) SELECT count(*) FROM d`,
			`WITH d AS (DELETE FROM revoked_access_tokens WHERE expires_at <= $1 RETURNING 1) SELECT count(*) FROM d`,
			`WITH d AS (DELETE FROM rate_counters WHERE expires_at <= $1 RETURNING 1) SELECT count(*) FROM d`,
			`WITH d AS (DELETE FROM client_assertions WHERE expires_at <= $1 RETURNING 1) SELECT count(*) FROM d`,
		} {
			var c int64
			if err := tx.QueryRow(ctx, q, now).Scan(&c); err != nil {
				return false, wrap(err)
			}
			n += c
		}
		return false, nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}
