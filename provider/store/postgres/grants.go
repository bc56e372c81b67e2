package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/authzd/authz/provider/store"
)

// ---- Authorization codes and grants ----

const grantCols = `id, client_id, user_id, scopes, resources, code_hash, created_at, expires_at, last_used_at, revoked_at`

func scanGrant(row pgx.Row) (store.Grant, error) {
	var g store.Grant
	var used, revoked *time.Time
	if err := row.Scan(&g.ID, &g.ClientID, &g.UserID, &g.Scopes, &g.Resources, &g.CodeHash, &g.CreatedAt, &g.ExpiresAt, &used, &revoked); err != nil {
		return store.Grant{}, wrap(err)
	}
	g.CreatedAt, g.ExpiresAt, g.LastUsedAt, g.RevokedAt = g.CreatedAt.UTC(), g.ExpiresAt.UTC(), fromNull(used), fromNull(revoked)
	return g, nil
}

const codeCols = `hash, client_id, user_id, grant_id, redirect_uri, code_challenge, scopes, resources, created_at, expires_at`

func scanCode(row pgx.Row) (store.AuthCode, error) {
	var c store.AuthCode
	if err := row.Scan(&c.Hash, &c.ClientID, &c.UserID, &c.GrantID, &c.RedirectURI, &c.CodeChallenge, &c.Scopes, &c.Resources, &c.CreatedAt, &c.ExpiresAt); err != nil {
		return store.AuthCode{}, wrap(err)
	}
	c.CreatedAt, c.ExpiresAt = c.CreatedAt.UTC(), c.ExpiresAt.UTC()
	return c, nil
}

// CreateAuthCode inserts the grant and its code in one transaction: the
// grant exists (unredeemed) from the moment the code does.
func (s *Store) CreateAuthCode(ctx context.Context, code store.AuthCode, g store.Grant) error {
	if code.GrantID != g.ID || !bytes.Equal(code.Hash, g.CodeHash) ||
		code.ClientID != g.ClientID || code.UserID != g.UserID {
		return errors.New("postgres: CreateAuthCode: the code and the grant do not belong together")
	}
	return s.tx(ctx, func(tx pgx.Tx) (bool, error) {
		if _, err := tx.Exec(ctx, `INSERT INTO grants (`+grantCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			g.ID, g.ClientID, g.UserID, arr(g.Scopes), arr(g.Resources), g.CodeHash, ts(g.CreatedAt), ts(g.ExpiresAt),
			nullTS(g.LastUsedAt), nullTS(g.RevokedAt)); err != nil {
			return false, wrap(err)
		}
		_, err := tx.Exec(ctx, `INSERT INTO auth_codes (`+codeCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			code.Hash, code.ClientID, code.UserID, code.GrantID, code.RedirectURI, code.CodeChallenge,
			arr(code.Scopes), arr(code.Resources), ts(code.CreatedAt), ts(code.ExpiresAt))
		return false, wrap(err)
	})
}

// ConsumeAuthCode: DELETE … RETURNING is the single-use gate. Of any number
// of concurrent callers exactly one gets the row; the others wait on its row
// lock, find it gone, and are replays, which revoke the grant (RFC 6749
// §4.1.2). That revocation is committed even though the call fails.
func (s *Store) ConsumeAuthCode(ctx context.Context, hash []byte, now time.Time, redeem store.RedeemFunc) (store.AuthCode, error) {
	now = ts(now)
	var code store.AuthCode
	err := s.tx(ctx, func(tx pgx.Tx) (bool, error) {
		var err error
		code, err = scanCode(tx.QueryRow(ctx, `DELETE FROM auth_codes WHERE hash = $1 RETURNING `+codeCols, hash))
		if errors.Is(err, store.ErrNotFound) {
			var gid string
			err := tx.QueryRow(ctx, `UPDATE grants SET revoked_at = COALESCE(revoked_at, $2) WHERE code_hash = $1 RETURNING id`, hash, now).Scan(&gid)
			if err != nil {
				return false, wrap(err) // ErrNotFound: never issued
			}
			return true, store.ErrCodeReused
		}
		if err != nil {
			return false, err
		}
		if !now.Before(code.ExpiresAt) {
			return true, store.ErrExpired // the deletion sticks
		}
		tag, err := tx.Exec(ctx, `UPDATE grants SET last_used_at = $2 WHERE id = $1 AND revoked_at IS NULL AND expires_at > $2`, code.GrantID, now)
		if err != nil {
			return false, wrap(err)
		}
		if tag.RowsAffected() == 0 {
			return true, store.ErrGrantRevoked
		}
		if redeem == nil {
			return false, nil
		}
		rt, err := redeem(code)
		if err != nil {
			// A code that fails its checks is spent, and so is its grant.
			if _, rerr := tx.Exec(ctx, `UPDATE grants SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1`, code.GrantID, now); rerr != nil {
				return false, wrap(rerr)
			}
			return true, err
		}
		if rt != nil {
			// The grant row is locked by the UPDATE above.
			return false, insertRefresh(ctx, tx, *rt)
		}
		return false, nil
	})
	if err != nil {
		return store.AuthCode{}, err
	}
	return code, nil
}

func (s *Store) GetGrant(ctx context.Context, id string) (store.Grant, error) {
	return scanGrant(s.readRow(ctx, `SELECT `+grantCols+` FROM grants WHERE id = $1`, id))
}

func (s *Store) ListUserGrants(ctx context.Context, userID string, now time.Time) ([]store.Grant, error) {
	return readRows(s, ctx, scanGrant, `SELECT `+grantCols+` FROM grants
		WHERE user_id = $1 AND last_used_at IS NOT NULL AND revoked_at IS NULL AND expires_at > $2
		ORDER BY created_at DESC, id COLLATE "C"`, userID, ts(now))
}

// RevokeGrant keeps the first revocation instant.
func (s *Store) RevokeGrant(ctx context.Context, id string, now time.Time) error {
	tag, err := s.pool.Exec(ctx, `UPDATE grants SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1`, id, ts(now))
	if err != nil {
		return wrap(err)
	}
	if tag.RowsAffected() == 0 {
		return store.ErrNotFound
	}
	return nil
}

// ---- Refresh tokens ----

const refreshCols = `hash, id, grant_id, client_id, parent_id, created_at, expires_at, rotated_at`

func scanRefresh(row pgx.Row) (store.RefreshToken, error) {
	var r store.RefreshToken
	var rotated *time.Time
	if err := row.Scan(&r.Hash, &r.ID, &r.GrantID, &r.ClientID, &r.ParentID, &r.CreatedAt, &r.ExpiresAt, &rotated); err != nil {
		return store.RefreshToken{}, wrap(err)
	}
	r.CreatedAt, r.ExpiresAt, r.RotatedAt = r.CreatedAt.UTC(), r.ExpiresAt.UTC(), fromNull(rotated)
	return r, nil
}

func insertRefresh(ctx context.Context, tx pgx.Tx, r store.RefreshToken) error {
	_, err := tx.Exec(ctx, `INSERT INTO refresh_tokens (`+refreshCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		r.Hash, r.ID, r.GrantID, r.ClientID, r.ParentID, ts(r.CreatedAt), ts(r.ExpiresAt), nullTS(r.RotatedAt))
	return wrap(err)
}

// CreateRefreshToken locks the grant (FOR SHARE) so a concurrent revocation
// is ordered before or after it, never interleaved.
func (s *Store) CreateRefreshToken(ctx context.Context, rt store.RefreshToken, now time.Time) error {
	now = ts(now)
	return s.tx(ctx, func(tx pgx.Tx) (bool, error) {
		g, err := scanGrant(tx.QueryRow(ctx, `SELECT `+grantCols+` FROM grants WHERE id = $1 FOR SHARE`, rt.GrantID))
		if err != nil {
			return false, err
		}
		if !g.Active(now) {
			return false, store.ErrGrantRevoked
		}
		return false, insertRefresh(ctx, tx, rt)
	})
}

func (s *Store) GetRefreshToken(ctx context.Context, hash []byte) (store.RefreshToken, store.Grant, error) {
	rt, err := scanRefresh(s.readRow(ctx, `SELECT `+refreshCols+` FROM refresh_tokens WHERE hash = $1`, hash))
	if err != nil {
		return store.RefreshToken{}, store.Grant{}, err
	}
	g, err := s.GetGrant(ctx, rt.GrantID)
	if err != nil {
		return store.RefreshToken{}, store.Grant{}, err
	}
	return rt, g, nil
}

// RotateRefreshToken locks the grant row, then the token row, and decides
// inside the transaction. Locking the grant first serialises every rotation
// of one grant (siblings within grace included) and orders them against
// RevokeGrant and the cascading deletes, which also take the grant first,
// so two requests can never both see "never rotated". Nothing is marked
// rotated unless its successor commits with it.
func (s *Store) RotateRefreshToken(ctx context.Context, hash []byte, now time.Time, grace time.Duration, next store.NextRefreshFunc) (store.Rotation, error) {
	now = ts(now)
	var rot store.Rotation
	err := s.tx(ctx, func(tx pgx.Tx) (bool, error) {
		var grantID string
		if err := tx.QueryRow(ctx, `SELECT grant_id FROM refresh_tokens WHERE hash = $1`, hash).Scan(&grantID); err != nil {
			return false, wrap(err)
		}
		g, err := scanGrant(tx.QueryRow(ctx, `SELECT `+grantCols+` FROM grants WHERE id = $1 FOR UPDATE`, grantID))
		if err != nil {
			return false, err
		}
		old, err := scanRefresh(tx.QueryRow(ctx, `SELECT `+refreshCols+` FROM refresh_tokens WHERE hash = $1 FOR UPDATE`, hash))
		if err != nil {
			return false, err
		}
		if !g.Active(now) {
			return false, store.ErrGrantRevoked
		}
		if !now.Before(old.ExpiresAt) {
			return false, store.ErrExpired
		}
		within := false
		if !old.RotatedAt.IsZero() {
			// RFC 9700 §4.14.2: presented again after rotation means the
			// token is in two hands, unless inside the grace window
			// measured from the first rotation. Decided before next, so
			// whatever else the replay asks for, it is reuse.
			if grace <= 0 || now.Sub(old.RotatedAt) >= grace {
				if _, err := tx.Exec(ctx, `UPDATE grants SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1`, g.ID, now); err != nil {
					return false, wrap(err)
				}
				return true, store.ErrRefreshReused
			}
			within = true
		}
		succ, err := next(old, g)
		if err != nil {
			return false, err
		}
		if succ.GrantID != old.GrantID {
			return false, fmt.Errorf("postgres: successor belongs to grant %q, not %q", succ.GrantID, old.GrantID)
		}
		rot = store.Rotation{Old: old, WithinGrace: within}
		if !within {
			if _, err := tx.Exec(ctx, `UPDATE refresh_tokens SET rotated_at = $2 WHERE hash = $1`, hash, now); err != nil {
				return false, wrap(err)
			}
		}
		succ.CreatedAt, succ.ExpiresAt, succ.RotatedAt = ts(succ.CreatedAt), ts(succ.ExpiresAt), ts(succ.RotatedAt)
		if err := insertRefresh(ctx, tx, succ); err != nil {
			return false, err
		}
		if _, err := tx.Exec(ctx, `UPDATE grants SET last_used_at = $2 WHERE id = $1`, g.ID, now); err != nil {
			return false, wrap(err)
		}
		g.LastUsedAt = now
		rot.Grant, rot.New = g, succ
		return false, nil
	})
	if err != nil {
		return store.Rotation{}, err
	}
	return rot, nil
}
