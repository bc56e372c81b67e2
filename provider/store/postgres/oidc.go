package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/authzd/authz/provider/store"
)

// SignInUpstream decides under a transaction-scoped advisory lock on the
// identity, so two first sign-ins of one person at once make one user: the
// second waits, then finds the identity the first inserted.
func (s *Store) SignInUpstream(ctx context.Context, in store.UpstreamSignIn, now time.Time) (store.User, bool, error) {
	var u store.User
	var created bool
	err := s.tx(ctx, func(tx pgx.Tx) (bool, error) {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, fmt.Sprintf("identity:%d:%s:%s", len(in.Provider), in.Provider, in.Subject)); err != nil {
			return false, wrap(err)
		}
		var userID string
		err := tx.QueryRow(ctx, `SELECT user_id FROM user_identities WHERE provider = $1 AND subject = $2`, in.Provider, in.Subject).Scan(&userID)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return false, wrap(err)
		}
		if err == nil {
			u, err = updateProfile(ctx, tx, userID, in.Profile)
			return false, err
		}
		if in.LinkVerifiedEmail && in.Profile.Email != "" {
			rows, err := tx.Query(ctx, `SELECT id FROM users WHERE lower(email) = lower($1) AND email_verified LIMIT 2`, in.Profile.Email)
			if err != nil {
				return false, wrap(err)
			}
			ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return false, wrap(err)
			}
			if len(ids) == 1 {
				if _, err := tx.Exec(ctx, `INSERT INTO user_identities (provider, subject, user_id, created_at) VALUES ($1, $2, $3, $4)`,
					in.Provider, in.Subject, ids[0], ts(now)); err != nil {
					return false, wrap(err)
				}
				u, err = updateProfile(ctx, tx, ids[0], in.Profile)
				return false, err
			}
		}
		u = in.Profile
		u.CreatedAt = ts(u.CreatedAt)
		if err := insertUser(ctx, tx, u); err != nil {
			return false, err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO user_identities (provider, subject, user_id, created_at) VALUES ($1, $2, $3, $4)`,
			in.Provider, in.Subject, u.ID, ts(now)); err != nil {
			return false, wrap(err)
		}
		created = true
		return false, nil
	})
	if err != nil {
		return store.User{}, false, err
	}
	return u, created, nil
}

// updateProfile writes the copied fields (those not empty) and returns the user.
func updateProfile(ctx context.Context, tx pgx.Tx, id string, p store.User) (store.User, error) {
	return scanUser(tx.QueryRow(ctx, `UPDATE users SET
		name = CASE WHEN $2 = '' THEN name ELSE $2 END,
		email = CASE WHEN $3 = '' THEN email ELSE $3 END,
		email_verified = CASE WHEN $3 = '' THEN email_verified ELSE $4 END
		WHERE id = $1 RETURNING `+userCols, id, p.Name, p.Email, p.EmailVerified))
}

func scanIdentity(row pgx.Row) (store.Identity, error) {
	var in store.Identity
	if err := row.Scan(&in.Provider, &in.Subject, &in.UserID, &in.CreatedAt); err != nil {
		return store.Identity{}, wrap(err)
	}
	in.CreatedAt = in.CreatedAt.UTC()
	return in, nil
}

func (s *Store) ListIdentities(ctx context.Context, userID string) ([]store.Identity, error) {
	return readRows(s, ctx, scanIdentity, `SELECT provider, subject, user_id, created_at FROM user_identities
		WHERE user_id = $1 ORDER BY provider COLLATE "C", subject COLLATE "C"`, userID)
}

func (s *Store) SetUserProfile(ctx context.Context, id, name, email string, emailVerified bool) error {
	tag, err := s.pool.Exec(ctx, `UPDATE users SET name = $2, email = $3, email_verified = $4 WHERE id = $1`, id, name, email, emailVerified)
	if err != nil {
		return wrap(err)
	}
	if tag.RowsAffected() == 0 {
		return store.ErrNotFound
	}
	return nil
}
