package postgres

import (
	"context"
	"time"

	"github.com/authzd/authz/provider/store"
)

// UseClientAssertion is one statement, so the check and the record cannot
// be separated by a concurrent request: of many inserts of one key, the
// first inserts and the others wait for it, then meet the conflict. A row
// that has expired (and the janitor has not yet removed) is taken over, as
// if it were absent.
func (s *Store) UseClientAssertion(ctx context.Context, a store.ClientAssertion, now time.Time) error {
	tag, err := s.pool.Exec(ctx, `INSERT INTO client_assertions (client_id, jti_hash, expires_at) VALUES ($1, $2, $3)
		ON CONFLICT (client_id, jti_hash) DO UPDATE SET expires_at = EXCLUDED.expires_at
		WHERE client_assertions.expires_at <= $4`,
		a.ClientID, a.JTIHash, ts(a.ExpiresAt), ts(now))
	if err != nil {
		return wrap(err)
	}
	if tag.RowsAffected() == 0 {
		return store.ErrAlreadyExists
	}
	return nil
}
