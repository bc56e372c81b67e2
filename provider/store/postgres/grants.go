package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/authzd/authz/provider/store"
)

// ---- Authorization codes and grants ----

const grantCols = `id, client_id, user_id, scopes, resources, code_hash, created_at, expires_at, last_used_at, revoked_at, auth_time`

// scanGrant reads a row of grantCols.
func scanGrant(row pgx.Row) (store.Grant, error) { return scanRow(row, decodeGrant, scanGrantPgx) }

func decodeGrant(r *binRow) store.Grant {
	return store.Grant{ID: r.text(), ClientID: r.text(), UserID: r.text(), Scopes: r.texts(), Resources: r.texts(), CodeHash: r.bytes(),
		CreatedAt: r.time(), ExpiresAt: r.time(), LastUsedAt: r.nullTime(), RevokedAt: r.nullTime(), AuthTime: r.nullTime()}
}

func scanGrantPgx(rows pgx.Rows) (store.Grant, error) {
	var g store.Grant
	var used, revoked, authTime *time.Time
	if err := rows.Scan(&g.ID, &g.ClientID, &g.UserID, &g.Scopes, &g.Resources, &g.CodeHash, &g.CreatedAt, &g.ExpiresAt, &used, &revoked, &authTime); err != nil {
		return store.Grant{}, err
	}
	g.CreatedAt, g.ExpiresAt, g.LastUsedAt, g.RevokedAt = g.CreatedAt.UTC(), g.ExpiresAt.UTC(), fromNull(used), fromNull(revoked)
	g.AuthTime = fromNull(authTime)
	return g, nil
}

const codeCols = `hash, client_id, user_id, grant_id, redirect_uri, code_challenge, scopes, resources, created_at, expires_at, nonce, auth_time`

// scanCode reads a row of codeCols.
func scanCode(row pgx.Row) (store.AuthCode, error) { return scanRow(row, decodeCode, scanCodePgx) }

func decodeCode(r *binRow) store.AuthCode {
	return store.AuthCode{Hash: r.bytes(), ClientID: r.text(), UserID: r.text(), GrantID: r.text(), RedirectURI: r.text(), CodeChallenge: r.text(),
		Scopes: r.texts(), Resources: r.texts(), CreatedAt: r.time(), ExpiresAt: r.time(), Nonce: r.text(), AuthTime: r.nullTime()}
}

func scanCodePgx(rows pgx.Rows) (store.AuthCode, error) {
	var c store.AuthCode
	var authTime *time.Time
	if err := rows.Scan(&c.Hash, &c.ClientID, &c.UserID, &c.GrantID, &c.RedirectURI, &c.CodeChallenge, &c.Scopes, &c.Resources, &c.CreatedAt, &c.ExpiresAt, &c.Nonce, &authTime); err != nil {
		return store.AuthCode{}, err
	}
	c.CreatedAt, c.ExpiresAt, c.AuthTime = c.CreatedAt.UTC(), c.ExpiresAt.UTC(), fromNull(authTime)
	return c, nil
}

// SQLCreateAuthCode inserts a grant and its code in one statement, so one
// round trip (issue 13: it was BEGIN, two INSERTs and COMMIT, four). A
// statement is atomic in its own implicit transaction, data-modifying CTE
// included: both rows are stored or neither, and the code's foreign key is
// checked at the statement's end, when the grant row exists. The code
// takes its hash, client, user and grant id from the row the CTE inserted,
// so the two cannot disagree (store.CheckCodeGrant is checked before
// anyway). Its arguments are CreateAuthCodeArgs'. Exported so that
// cmd/authz-load's bound_code fixture inserts with the very same SQL.
const SQLCreateAuthCode = `WITH g AS (
	INSERT INTO grants (` + grantCols + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
	RETURNING id, client_id, user_id, code_hash)
INSERT INTO auth_codes (` + codeCols + `)
	SELECT g.code_hash, g.client_id, g.user_id, g.id, $12, $13, $14, $15, $16, $17, $18, $19 FROM g`

// CreateAuthCodeArgs are SQLCreateAuthCode's arguments for code and g,
// which must pass store.CheckCodeGrant.
func CreateAuthCodeArgs(code store.AuthCode, g store.Grant) []any {
	return []any{
		g.ID, g.ClientID, g.UserID, arr(g.Scopes), arr(g.Resources), g.CodeHash, ts(g.CreatedAt), ts(g.ExpiresAt),
		nullTS(g.LastUsedAt), nullTS(g.RevokedAt), nullTS(g.AuthTime),
		code.RedirectURI, code.CodeChallenge, arr(code.Scopes), arr(code.Resources), ts(code.CreatedAt), ts(code.ExpiresAt),
		code.Nonce, nullTS(code.AuthTime),
	}
}

// CreateAuthCode inserts the grant and its code in one statement: the
// grant exists (unredeemed) from the moment the code does. A write, so
// never retried (the first attempt may have been applied).
func (s *Store) CreateAuthCode(ctx context.Context, code store.AuthCode, g store.Grant) error {
	if err := store.CheckCodeGrant(code, g); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, SQLCreateAuthCode, CreateAuthCodeArgs(code, g)...)
	return wrap(err)
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

// sqlRevokeUserGrant is RevokeUserGrant in one statement, so atomic in its
// own implicit transaction: old locks the grant only if it is the user's
// (forget joins old, so the grant row is locked before the consent is
// touched: the grant first, the order grantops.go keeps),
// revoke keeps the first revocation instant, forget drops the consent to
// the grant's client. Every sub-statement sees the snapshot from before
// the statement, so the grant is returned from old with the instant that
// revoke wrote. No row: no such grant of this user, and nothing changed.
const sqlRevokeUserGrant = `WITH old AS (
	SELECT ` + grantCols + ` FROM grants WHERE id = $1 AND user_id = $2 FOR UPDATE
), revoke AS (
	UPDATE grants SET revoked_at = $3 FROM old WHERE grants.id = old.id AND old.revoked_at IS NULL
), forget AS (
	DELETE FROM consents USING old WHERE consents.user_id = old.user_id AND consents.client_id = old.client_id
)
SELECT id, client_id, user_id, scopes, resources, code_hash, created_at, expires_at, last_used_at,
	COALESCE(revoked_at, $3), auth_time FROM old`

// RevokeUserGrant is a write: never retried (the first attempt may have
// been applied).
func (s *Store) RevokeUserGrant(ctx context.Context, userID, id string, now time.Time) (store.Grant, error) {
	return scanGrant(s.pool.QueryRow(ctx, sqlRevokeUserGrant, id, userID, ts(now)))
}

// ---- Refresh tokens ----

const refreshCols = `hash, id, grant_id, client_id, parent_id, created_at, expires_at, rotated_at`

// scanRefresh reads a row of refreshCols.
func scanRefresh(row pgx.Row) (store.RefreshToken, error) {
	return scanRow(row, decodeRefresh, scanRefreshPgx)
}

func decodeRefresh(r *binRow) store.RefreshToken {
	return store.RefreshToken{Hash: r.bytes(), ID: r.text(), GrantID: r.text(), ClientID: r.text(), ParentID: r.text(),
		CreatedAt: r.time(), ExpiresAt: r.time(), RotatedAt: r.nullTime()}
}

func scanRefreshPgx(rows pgx.Rows) (store.RefreshToken, error) {
	var t store.RefreshToken
	var rotated *time.Time
	if err := rows.Scan(&t.Hash, &t.ID, &t.GrantID, &t.ClientID, &t.ParentID, &t.CreatedAt, &t.ExpiresAt, &rotated); err != nil {
		return store.RefreshToken{}, err
	}
	t.CreatedAt, t.ExpiresAt, t.RotatedAt = t.CreatedAt.UTC(), t.ExpiresAt.UTC(), fromNull(rotated)
	return t, nil
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
