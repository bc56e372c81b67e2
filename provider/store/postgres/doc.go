// Package postgres is the production store: store.Store on PostgreSQL
// through a pgx/v5 connection pool.
//
// The domain operations carry their own atomicity (house rule 3):
// ConsumeAuthCode is a DELETE … RETURNING, and RotateRefreshToken locks the
// grant and the presented token inside one transaction before deciding win,
// grace or reuse; a redemption's audit events (grant.created) are written
// in its transaction, in the same round trip as its refresh token. Every timestamp crosses the boundary as UTC microseconds;
// the SQL never calls now(). Failures to reach the database are wrapped in
// store.ErrUnavailable, so the provider answers them as 503, never as a dead
// token. The schema comes from package migrations.
package postgres
