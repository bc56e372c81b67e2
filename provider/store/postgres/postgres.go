package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authzd/authz/provider/store"
)

// DefaultMaxConns is the pool size when the URL sets no pool_max_conns.
// pgx's own default is the CPU count (at least 4), which sizes the pool for
// CPU work; a grant operation mostly waits: for its two round trips and for
// its COMMIT to reach disk. With a durable PostgreSQL, commits that are in
// flight together share one WAL flush (group commit), so connections
// beyond the CPU count raise throughput rather than contention. 16 keeps
// five replicas under PostgreSQL's default max_connections (100).
const DefaultMaxConns = 16

// Store implements store.Store on a pgx pool.
type Store struct {
	pool  *pgxpool.Pool
	owned bool // Close closes the pool only when Open made it
}

var _ store.Store = (*Store)(nil)

// New wraps a pool whose search_path leads to a migrated schema. Close does
// not close a pool given to New; its owner does.
func New(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Open connects to url (a PostgreSQL URL or DSN, as pgx parses it) and
// checks that the server answers. It does not migrate: see package
// migrations.
func Open(ctx context.Context, url string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = DefaultMaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	s := &Store{pool: pool, owned: true}
	if err := s.Ping(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// Pool returns the underlying pool, for migrations.Apply.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Close closes the pool if Open made it.
func (s *Store) Close() {
	if s.owned {
		s.pool.Close()
	}
}

// Ping reports whether the database answers.
func (s *Store) Ping(ctx context.Context) error {
	return wrap(s.read(ctx, func() error { return s.pool.Ping(ctx) }))
}

// wrap translates a pgx error into the store's vocabulary. Constraint
// violations become ErrAlreadyExists / ErrNotFound. Everything that is not
// an answer from the server about our data (a refused connection, a
// timeout, a server shutting down, a deadlock or serialization failure that
// a retry would clear) becomes ErrUnavailable, so that a transient outage is
// never mistaken for a dead token.
func wrap(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return store.ErrNotFound
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "23505": // unique_violation
			return fmt.Errorf("%w: %s", store.ErrAlreadyExists, pe.ConstraintName)
		case pe.Code == "23503": // foreign_key_violation
			return fmt.Errorf("%w: %s", store.ErrNotFound, pe.ConstraintName)
		case pe.Code == "22021", pe.Code == "22P05": // bytes text cannot hold (NUL, invalid UTF-8)
			// Identifiers come from requests; such a value names no row.
			return fmt.Errorf("%w: %s", store.ErrNotFound, pe.Message)
		case pe.Code == "40001", pe.Code == "40P01", // serialization failure, deadlock
			len(pe.Code) == 5 && (pe.Code[:2] == "08" || pe.Code[:2] == "53" || pe.Code[:2] == "57" || pe.Code[:2] == "58"):
			return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
		}
		return fmt.Errorf("postgres: %w", err)
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
}

// tx runs f in a transaction. f's error is returned unchanged (it may be a
// sentinel decided inside); keep commits the work even when f returns an
// error, for outcomes such as "code reused" whose revocation must stick.
func (s *Store) tx(ctx context.Context, f func(pgx.Tx) (keep bool, err error)) error {
	t, err := s.pool.Begin(ctx)
	if err != nil {
		return wrap(err)
	}
	defer t.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	keep, ferr := f(t)
	if ferr != nil && !keep {
		return ferr
	}
	if err := t.Commit(ctx); err != nil {
		return wrap(err)
	}
	return ferr
}

// ---- time and value helpers (house rule 5) ----

// ts is a timestamp as the database keeps it: UTC, microseconds.
func ts(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// nullTS maps the zero time to NULL.
func nullTS(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return ts(t)
}

// tsArg is t, as ts makes it, for a statement's arguments. pgx encodes a
// pgtype.Timestamptz as it is; a time.Time it first boxes once more in a
// wrapper of its own, an allocation per timestamp per statement on the
// grant operations' hot path (issue 13).
func tsArg(t time.Time) pgtype.Timestamptz { return pgtype.Timestamptz{Time: ts(t), Valid: true} }

// nullTSArg is nullTS as tsArg encodes it: the zero time is NULL.
func nullTSArg(t time.Time) pgtype.Timestamptz {
	if t.IsZero() {
		return pgtype.Timestamptz{}
	}
	return tsArg(t)
}

// fromNull maps NULL back to the zero time and anything else to UTC.
func fromNull(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

// arr never hands NULL to a NOT NULL text[] column.
func arr(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// ---- Clients ----

const clientCols = `id, secret_hash, secret_expires_at, registration_token_hash, metadata, trust, created_at, updated_at, document_expires_at, used_at`

func scanClient(row pgx.Row) (store.Client, error) {
	var c store.Client
	var secExp, docExp, used *time.Time
	var meta []byte
	if err := row.Scan(&c.ID, &c.SecretHash, &secExp, &c.RegistrationTokenHash, &meta, &c.Trust, &c.CreatedAt, &c.UpdatedAt, &docExp, &used); err != nil {
		return store.Client{}, wrap(err)
	}
	if err := json.Unmarshal(meta, &c.Metadata); err != nil {
		return store.Client{}, fmt.Errorf("postgres: client %s metadata: %w", c.ID, err)
	}
	c.SecretExpiresAt, c.CreatedAt, c.UpdatedAt = fromNull(secExp), c.CreatedAt.UTC(), c.UpdatedAt.UTC()
	c.DocumentExpiresAt, c.UsedAt = fromNull(docExp), fromNull(used)
	return c, nil
}

const insertClient = `INSERT INTO clients (` + clientCols + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`

// clientValues are c's columns in clientCols order.
func clientValues(c store.Client, meta []byte) []any {
	return []any{c.ID, c.SecretHash, nullTS(c.SecretExpiresAt), c.RegistrationTokenHash, string(meta), c.Trust,
		ts(c.CreatedAt), ts(c.UpdatedAt), nullTS(c.DocumentExpiresAt), nullTS(c.UsedAt)}
}

func (s *Store) CreateClient(ctx context.Context, c store.Client) error {
	meta, err := json.Marshal(c.Metadata)
	if err != nil {
		return err
	}
	_, err = s.pool.Exec(ctx, insertClient, clientValues(c, meta)...)
	return wrap(err)
}

// SaveMetadataDocumentClient locks the stored row (if any), decides with
// store.DocumentIdentityChanged whether consents go, and upserts, all in
// one transaction.
func (s *Store) SaveMetadataDocumentClient(ctx context.Context, c store.Client) error {
	meta, err := json.Marshal(c.Metadata)
	if err != nil {
		return err
	}
	return s.tx(ctx, func(tx pgx.Tx) (bool, error) {
		// Insert-or-lock: two first fetches of one document at once must
		// both succeed, so the insert never fails on the other's row.
		tag, err := tx.Exec(ctx, insertClient+` ON CONFLICT (id) DO NOTHING`, clientValues(c, meta)...)
		if err != nil || tag.RowsAffected() == 1 {
			return false, wrap(err)
		}
		cur, err := scanClient(tx.QueryRow(ctx, `SELECT `+clientCols+` FROM clients WHERE id = $1 FOR UPDATE`, c.ID))
		switch {
		case err != nil:
			return false, err
		case cur.Trust != store.TrustMetadataDocument:
			return false, store.ErrAlreadyExists
		}
		if store.DocumentIdentityChanged(cur.Metadata, c.Metadata) {
			if _, err := tx.Exec(ctx, `DELETE FROM consents WHERE client_id = $1`, c.ID); err != nil {
				return false, wrap(err)
			}
		}
		_, err = tx.Exec(ctx, `UPDATE clients SET secret_hash = $2, secret_expires_at = $3, registration_token_hash = $4, metadata = $5,
			updated_at = $6, trust = $7, document_expires_at = $8 WHERE id = $1`,
			c.ID, c.SecretHash, nullTS(c.SecretExpiresAt), c.RegistrationTokenHash, string(meta), ts(c.UpdatedAt), c.Trust, nullTS(c.DocumentExpiresAt))
		return false, wrap(err)
	})
}

func (s *Store) GetClient(ctx context.Context, id string) (store.Client, error) {
	return scanClient(s.readRow(ctx, `SELECT `+clientCols+` FROM clients WHERE id = $1`, id))
}

func (s *Store) ListClients(ctx context.Context) ([]store.Client, error) {
	return readRows(s, ctx, scanClient, `SELECT `+clientCols+` FROM clients ORDER BY created_at, id`)
}

// UpdateClient locks the row (SELECT … FOR UPDATE), runs edit and writes
// back only secret_hash, metadata and updated_at in one transaction (the
// registration token hash as the locked row has it): an RFC 7592 update
// racing it waits or is waited for, and the registration token hash it
// rotated is never written over.
func (s *Store) UpdateClient(ctx context.Context, id string, edit store.EditClientFunc) (store.Client, error) {
	return s.editClient(ctx, id, nil, edit)
}

// UpdateRegisteredClient is UpdateClient that first checks the presented
// registration token hash against the locked row and writes next in its
// place. The lock makes a racing update or delete with the same token
// wait, then find the hash changed (READ COMMITTED re-reads the row it
// waited for) and match nothing; an administrator's update racing it
// either committed first, and edit sees its allowances, or waits and
// applies its own edit to what this update wrote.
func (s *Store) UpdateRegisteredClient(ctx context.Context, id string, presented, next []byte, edit store.EditClientFunc) (store.Client, error) {
	return s.editClient(ctx, id, &spend{presented: presented, next: next}, edit)
}

// spend is an RFC 7592 update's registration token: the hash that
// authorised it and the one that replaces it.
type spend struct{ presented, next []byte }

// editClient is UpdateClient and, with sp, UpdateRegisteredClient.
func (s *Store) editClient(ctx context.Context, id string, sp *spend, edit store.EditClientFunc) (store.Client, error) {
	var out store.Client
	err := s.tx(ctx, func(tx pgx.Tx) (bool, error) {
		cur, err := scanClient(tx.QueryRow(ctx, `SELECT `+clientCols+` FROM clients WHERE id = $1 FOR UPDATE`, id))
		if err != nil {
			return false, err
		}
		regHash := cur.RegistrationTokenHash
		if sp != nil {
			if !store.RegistrationTokenIs(cur, sp.presented) {
				return false, store.ErrNotFound
			}
			regHash = sp.next
		}
		n := cur
		if err := edit(&n); err != nil {
			return false, err
		}
		meta, err := json.Marshal(n.Metadata)
		if err != nil {
			return false, err
		}
		cur.SecretHash, cur.RegistrationTokenHash, cur.Metadata, cur.UpdatedAt = n.SecretHash, regHash, n.Metadata, ts(n.UpdatedAt)
		if _, err := tx.Exec(ctx, `UPDATE clients SET secret_hash = $2, registration_token_hash = $3, metadata = $4, updated_at = $5 WHERE id = $1`,
			id, cur.SecretHash, cur.RegistrationTokenHash, string(meta), cur.UpdatedAt); err != nil {
			return false, wrap(err)
		}
		out = cur
		return false, nil
	})
	return out, err
}

// nonNil never hands NULL to a registration token comparison: an empty
// hash matches no client, where NULL would fail in a way easy to misread.
func nonNil(presented []byte) []byte {
	if presented == nil {
		return []byte{}
	}
	return presented
}

// DeleteClient cascades (ON DELETE CASCADE) to grants, and through them to
// codes and refresh tokens, and to consents.
func (s *Store) DeleteClient(ctx context.Context, id string) error {
	return s.deleteClient(ctx, `DELETE FROM clients WHERE id = $1`, id)
}

// DeleteRegisteredClient is DeleteClient with the registration token check
// in the DELETE's WHERE clause, so a racing RFC 7592 update that rotated
// the token makes it match nothing (and it makes that update match nothing).
func (s *Store) DeleteRegisteredClient(ctx context.Context, id string, presented []byte) error {
	return s.deleteClient(ctx, `DELETE FROM clients WHERE id = $1 AND registration_token_hash = $2`, id, nonNil(presented))
}

func (s *Store) deleteClient(ctx context.Context, sql string, args ...any) error {
	tag, err := s.pool.Exec(ctx, sql, args...)
	if err != nil {
		return wrap(err)
	}
	if tag.RowsAffected() == 0 {
		return store.ErrNotFound
	}
	return nil
}

// MarkClientUsed only ever moves used_at forward, so two replicas marking
// at once cannot move it back.
func (s *Store) MarkClientUsed(ctx context.Context, id string, now time.Time) error {
	tag, err := s.pool.Exec(ctx, `UPDATE clients SET used_at = GREATEST(used_at, $2) WHERE id = $1`, id, ts(now))
	if err != nil {
		return wrap(err)
	}
	if tag.RowsAffected() == 0 {
		return store.ErrNotFound
	}
	return nil
}

// DeleteStaleClients is one DELETE: the staleness test and the removal see
// the same rows. Its WHERE is store.ClientStale over store.SweptTrusts.
// The trust list is written into the statement as literals, not passed as
// a parameter, so the planner can match the partial index
// clients_swept_used_at (migration 0011), whose predicate is the same
// list. Grants, codes, refresh tokens and consents go by cascade. A grant
// committed while the statement runs may go with its client: that client
// had completed no authorization for the whole TTL.
func (s *Store) DeleteStaleClients(ctx context.Context, now time.Time, unusedTTL, idleTTL time.Duration) ([]store.Client, error) {
	now = ts(now)
	rows, err := s.pool.Query(ctx, `DELETE FROM clients c
		WHERE c.trust IN (`+sweptTrustsSQL+`)
		  AND ((c.used_at IS NULL AND c.created_at <= $2) OR c.used_at <= $3)
		  AND NOT EXISTS (SELECT 1 FROM grants g
		                  WHERE g.client_id = c.id AND g.revoked_at IS NULL AND g.expires_at > $1)
		RETURNING `+clientCols,
		now, now.Add(-unusedTTL), now.Add(-idleTTL))
	if err != nil {
		return nil, wrap(err)
	}
	defer rows.Close()
	var out []store.Client
	for rows.Next() {
		c, err := scanClient(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, wrap(rows.Err())
}

// sweptTrustsSQL is store.SweptTrusts as SQL string literals. The values
// are the package's own constants, never input; quoting still doubles any
// quote so the list stays a list whatever they become.
var sweptTrustsSQL = func() string {
	q := make([]string, len(store.SweptTrusts))
	for i, t := range store.SweptTrusts {
		q[i] = "'" + strings.ReplaceAll(t, "'", "''") + "'"
	}
	return strings.Join(q, ", ")
}()

// ---- Users ----

const userCols = `id, username, password_hash, name, email, email_verified, provider, created_at`

func scanUser(row pgx.Row) (store.User, error) {
	var u store.User
	if err := row.Scan(&u.ID, &u.Username, &u.PasswordHash, &u.Name, &u.Email, &u.EmailVerified, &u.Provider, &u.CreatedAt); err != nil {
		return store.User{}, wrap(err)
	}
	u.CreatedAt = u.CreatedAt.UTC()
	return u, nil
}

func (s *Store) CreateUser(ctx context.Context, u store.User) error {
	return insertUser(ctx, s.pool, u)
}

type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

func insertUser(ctx context.Context, db execer, u store.User) error {
	_, err := db.Exec(ctx, `INSERT INTO users (`+userCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		u.ID, u.Username, u.PasswordHash, u.Name, u.Email, u.EmailVerified, u.Provider, ts(u.CreatedAt))
	return wrap(err)
}

func (s *Store) GetUser(ctx context.Context, id string) (store.User, error) {
	return scanUser(s.readRow(ctx, `SELECT `+userCols+` FROM users WHERE id = $1`, id))
}

func (s *Store) GetUserByUsername(ctx context.Context, username string) (store.User, error) {
	return scanUser(s.readRow(ctx, `SELECT `+userCols+` FROM users WHERE username = $1`, username))
}

func (s *Store) ListUsers(ctx context.Context) ([]store.User, error) {
	return readRows(s, ctx, scanUser, `SELECT `+userCols+` FROM users ORDER BY username COLLATE "C"`)
}

func (s *Store) SetUserPassword(ctx context.Context, id, passwordHash string) error {
	tag, err := s.pool.Exec(ctx, `UPDATE users SET password_hash = $2 WHERE id = $1`, id, passwordHash)
	if err != nil {
		return wrap(err)
	}
	if tag.RowsAffected() == 0 {
		return store.ErrNotFound
	}
	return nil
}

func (s *Store) DeleteUser(ctx context.Context, id string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM users WHERE id = $1`, id)
	if err != nil {
		return wrap(err)
	}
	if tag.RowsAffected() == 0 {
		return store.ErrNotFound
	}
	return nil
}
