package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// WithDeadline returns s with every call bounded by d, so that a database
// that hangs (accepts connections, never answers) costs a request at most d
// instead of as long as it hangs. A call whose deadline passes returns an
// error wrapping ErrUnavailable, which callers answer with 503
// temporarily_unavailable and Retry-After, never invalid_grant.
//
// A call whose caller's own context was cancelled (the client went away)
// returns its error unchanged: that is not an outage. A deadline the caller
// set itself (shorter than d) counts as one, like d.
//
// DeleteExpired and DeleteStaleClients are background housekeeping over
// whole tables, not part of a request: they are bounded by
// max(d, time.Minute), so a large sweep can finish instead of being cut off
// at every tick.
//
// The deadline works through the context: s must honour cancellation (the
// PostgreSQL store does; the memory store never waits on anything but its
// own mutex). d must be positive. Wrapping a store WithDeadline returned
// replaces the earlier bound rather than nesting it.
func WithDeadline(s Store, d time.Duration) Store {
	if d <= 0 {
		panic("store: WithDeadline needs a positive duration")
	}
	if w, ok := s.(*deadlineStore); ok {
		s = w.s
	}
	return &deadlineStore{s: s, d: d, sweep: max(d, time.Minute)}
}

type deadlineStore struct {
	s     Store
	d     time.Duration
	sweep time.Duration // DeleteExpired's bound
}

var _ Store = (*deadlineStore)(nil)

// bounded runs f under a deadline of limit and translates a passed deadline
// into ErrUnavailable.
func bounded[T any](caller context.Context, limit time.Duration, f func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(caller, limit)
	defer cancel()
	v, err := f(ctx)
	if err == nil || errors.Is(caller.Err(), context.Canceled) {
		return v, err
	}
	// Once the deadline has passed, any error that is not an answer about
	// the data (a dropped connection, a failed rollback) is its doing.
	if errors.Is(err, context.DeadlineExceeded) || (ctx.Err() != nil && !answer(err)) {
		if !errors.Is(err, ErrUnavailable) {
			err = fmt.Errorf("%w: no answer within %s: %w", ErrUnavailable, limit, err)
		}
	}
	return v, err
}

// answer reports whether err is one of the store's answers about the data.
func answer(err error) bool {
	for _, s := range []error{ErrNotFound, ErrAlreadyExists, ErrExpired, ErrGrantRevoked, ErrCodeReused, ErrCodeSpent, ErrRefreshReused, ErrUnavailable} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

func (w *deadlineStore) do(ctx context.Context, f func(context.Context) error) error {
	_, err := bounded(ctx, w.d, func(ctx context.Context) (struct{}, error) { return struct{}{}, f(ctx) })
	return err
}

func get[T any](w *deadlineStore, ctx context.Context, f func(context.Context) (T, error)) (T, error) {
	return bounded(ctx, w.d, f)
}

func (w *deadlineStore) Ping(ctx context.Context) error { return w.do(ctx, w.s.Ping) }

func (w *deadlineStore) CreateClient(ctx context.Context, c Client) error {
	return w.do(ctx, func(ctx context.Context) error { return w.s.CreateClient(ctx, c) })
}

func (w *deadlineStore) GetClient(ctx context.Context, id string) (Client, error) {
	return get(w, ctx, func(ctx context.Context) (Client, error) { return w.s.GetClient(ctx, id) })
}

func (w *deadlineStore) ListClients(ctx context.Context) ([]Client, error) {
	return get(w, ctx, w.s.ListClients)
}

func (w *deadlineStore) UpdateClient(ctx context.Context, id string, edit EditClientFunc) (Client, error) {
	return get(w, ctx, func(ctx context.Context) (Client, error) { return w.s.UpdateClient(ctx, id, edit) })
}

func (w *deadlineStore) UpdateRegisteredClient(ctx context.Context, id string, presented, next []byte, edit EditClientFunc) (Client, error) {
	return get(w, ctx, func(ctx context.Context) (Client, error) {
		return w.s.UpdateRegisteredClient(ctx, id, presented, next, edit)
	})
}

func (w *deadlineStore) DeleteClient(ctx context.Context, id string) error {
	return w.do(ctx, func(ctx context.Context) error { return w.s.DeleteClient(ctx, id) })
}

func (w *deadlineStore) DeleteRegisteredClient(ctx context.Context, id string, presented []byte) error {
	return w.do(ctx, func(ctx context.Context) error { return w.s.DeleteRegisteredClient(ctx, id, presented) })
}

func (w *deadlineStore) SaveMetadataDocumentClient(ctx context.Context, c Client) error {
	return w.do(ctx, func(ctx context.Context) error { return w.s.SaveMetadataDocumentClient(ctx, c) })
}

func (w *deadlineStore) MarkClientUsed(ctx context.Context, id string, now time.Time) error {
	return w.do(ctx, func(ctx context.Context) error { return w.s.MarkClientUsed(ctx, id, now) })
}

// DeleteStaleClients is housekeeping like DeleteExpired, with its bound.
func (w *deadlineStore) DeleteStaleClients(ctx context.Context, now time.Time, unusedTTL, idleTTL time.Duration) ([]Client, error) {
	return bounded(ctx, w.sweep, func(ctx context.Context) ([]Client, error) {
		return w.s.DeleteStaleClients(ctx, now, unusedTTL, idleTTL)
	})
}

func (w *deadlineStore) CreateUser(ctx context.Context, u User) error {
	return w.do(ctx, func(ctx context.Context) error { return w.s.CreateUser(ctx, u) })
}

func (w *deadlineStore) GetUser(ctx context.Context, id string) (User, error) {
	return get(w, ctx, func(ctx context.Context) (User, error) { return w.s.GetUser(ctx, id) })
}

func (w *deadlineStore) GetUserByUsername(ctx context.Context, username string) (User, error) {
	return get(w, ctx, func(ctx context.Context) (User, error) { return w.s.GetUserByUsername(ctx, username) })
}

func (w *deadlineStore) ListUsers(ctx context.Context) ([]User, error) {
	return get(w, ctx, w.s.ListUsers)
}

func (w *deadlineStore) SetUserPassword(ctx context.Context, id, passwordHash string) error {
	return w.do(ctx, func(ctx context.Context) error { return w.s.SetUserPassword(ctx, id, passwordHash) })
}

func (w *deadlineStore) DeleteUser(ctx context.Context, id string) error {
	return w.do(ctx, func(ctx context.Context) error { return w.s.DeleteUser(ctx, id) })
}

func (w *deadlineStore) CreateAuthCode(ctx context.Context, code AuthCode, grant Grant) error {
	return w.do(ctx, func(ctx context.Context) error { return w.s.CreateAuthCode(ctx, code, grant) })
}

func (w *deadlineStore) ConsumeAuthCode(ctx context.Context, hash []byte, now time.Time, redeem RedeemFunc) (AuthCode, error) {
	return get(w, ctx, func(ctx context.Context) (AuthCode, error) { return w.s.ConsumeAuthCode(ctx, hash, now, redeem) })
}

func (w *deadlineStore) GetGrant(ctx context.Context, id string) (Grant, error) {
	return get(w, ctx, func(ctx context.Context) (Grant, error) { return w.s.GetGrant(ctx, id) })
}

func (w *deadlineStore) ListUserGrants(ctx context.Context, userID string, now time.Time) ([]Grant, error) {
	return get(w, ctx, func(ctx context.Context) ([]Grant, error) { return w.s.ListUserGrants(ctx, userID, now) })
}

func (w *deadlineStore) RevokeGrant(ctx context.Context, id string, now time.Time) error {
	return w.do(ctx, func(ctx context.Context) error { return w.s.RevokeGrant(ctx, id, now) })
}

func (w *deadlineStore) RevokeUserGrant(ctx context.Context, userID, id string, now time.Time) (Grant, error) {
	return get(w, ctx, func(ctx context.Context) (Grant, error) { return w.s.RevokeUserGrant(ctx, userID, id, now) })
}

// refreshAndGrant carries GetRefreshToken's two results through bounded.
type refreshAndGrant struct {
	rt RefreshToken
	g  Grant
}

func (w *deadlineStore) GetRefreshToken(ctx context.Context, hash []byte) (RefreshToken, Grant, error) {
	v, err := get(w, ctx, func(ctx context.Context) (refreshAndGrant, error) {
		rt, g, err := w.s.GetRefreshToken(ctx, hash)
		return refreshAndGrant{rt, g}, err
	})
	return v.rt, v.g, err
}

func (w *deadlineStore) RotateRefreshToken(ctx context.Context, hash []byte, now time.Time, grace time.Duration, next NextRefreshFunc) (Rotation, error) {
	return get(w, ctx, func(ctx context.Context) (Rotation, error) {
		return w.s.RotateRefreshToken(ctx, hash, now, grace, next)
	})
}

func (w *deadlineStore) RevokeAccessToken(ctx context.Context, jti string, expiresAt time.Time) error {
	return w.do(ctx, func(ctx context.Context) error { return w.s.RevokeAccessToken(ctx, jti, expiresAt) })
}

func (w *deadlineStore) AccessTokenStatus(ctx context.Context, jti, grantID, clientID string, now time.Time) (AccessTokenStatus, error) {
	return get(w, ctx, func(ctx context.Context) (AccessTokenStatus, error) {
		return w.s.AccessTokenStatus(ctx, jti, grantID, clientID, now)
	})
}

func (w *deadlineStore) UseClientAssertion(ctx context.Context, a ClientAssertion, now time.Time) error {
	return w.do(ctx, func(ctx context.Context) error { return w.s.UseClientAssertion(ctx, a, now) })
}

func (w *deadlineStore) GetConsent(ctx context.Context, userID, clientID string) (Consent, error) {
	return get(w, ctx, func(ctx context.Context) (Consent, error) { return w.s.GetConsent(ctx, userID, clientID) })
}

func (w *deadlineStore) AddConsent(ctx context.Context, c Consent) error {
	return w.do(ctx, func(ctx context.Context) error { return w.s.AddConsent(ctx, c) })
}

func (w *deadlineStore) DeleteConsent(ctx context.Context, userID, clientID string) error {
	return w.do(ctx, func(ctx context.Context) error { return w.s.DeleteConsent(ctx, userID, clientID) })
}

func (w *deadlineStore) HitCounter(ctx context.Context, key string, window time.Duration, now time.Time) (Counter, error) {
	return get(w, ctx, func(ctx context.Context) (Counter, error) { return w.s.HitCounter(ctx, key, window, now) })
}

func (w *deadlineStore) UnhitCounter(ctx context.Context, key string, now time.Time) error {
	return w.do(ctx, func(ctx context.Context) error { return w.s.UnhitCounter(ctx, key, now) })
}

func (w *deadlineStore) GetCounter(ctx context.Context, key string, now time.Time) (Counter, error) {
	return get(w, ctx, func(ctx context.Context) (Counter, error) { return w.s.GetCounter(ctx, key, now) })
}

func (w *deadlineStore) DeleteCounters(ctx context.Context, prefix string) (int64, error) {
	return get(w, ctx, func(ctx context.Context) (int64, error) { return w.s.DeleteCounters(ctx, prefix) })
}

func (w *deadlineStore) RotateSigningKey(ctx context.Context, k SigningKey) error {
	return w.do(ctx, func(ctx context.Context) error { return w.s.RotateSigningKey(ctx, k) })
}

func (w *deadlineStore) CreateFirstSigningKey(ctx context.Context, k SigningKey) error {
	return w.do(ctx, func(ctx context.Context) error { return w.s.CreateFirstSigningKey(ctx, k) })
}

func (w *deadlineStore) ListSigningKeys(ctx context.Context) ([]SigningKey, error) {
	return get(w, ctx, w.s.ListSigningKeys)
}

func (w *deadlineStore) ResealSigningKey(ctx context.Context, id string, old, sealed []byte) (bool, error) {
	var ok bool
	err := w.do(ctx, func(ctx context.Context) error {
		var err error
		ok, err = w.s.ResealSigningKey(ctx, id, old, sealed)
		return err
	})
	return ok, err
}

func (w *deadlineStore) DeleteSigningKeysRetiredBefore(ctx context.Context, t time.Time) error {
	return w.do(ctx, func(ctx context.Context) error { return w.s.DeleteSigningKeysRetiredBefore(ctx, t) })
}

func (w *deadlineStore) CreateSession(ctx context.Context, s Session) error {
	return w.do(ctx, func(ctx context.Context) error { return w.s.CreateSession(ctx, s) })
}

// sessionAndUser carries GetSessionUser's two results through bounded.
type sessionAndUser struct {
	se Session
	u  User
}

func (w *deadlineStore) GetSessionUser(ctx context.Context, hash []byte, now time.Time) (Session, User, error) {
	v, err := get(w, ctx, func(ctx context.Context) (sessionAndUser, error) {
		se, u, err := w.s.GetSessionUser(ctx, hash, now)
		return sessionAndUser{se, u}, err
	})
	return v.se, v.u, err
}

func (w *deadlineStore) DeleteSession(ctx context.Context, hash []byte) error {
	return w.do(ctx, func(ctx context.Context) error { return w.s.DeleteSession(ctx, hash) })
}

func (w *deadlineStore) CreateInitialAccessToken(ctx context.Context, t InitialAccessToken) error {
	return w.do(ctx, func(ctx context.Context) error { return w.s.CreateInitialAccessToken(ctx, t) })
}

func (w *deadlineStore) GetInitialAccessToken(ctx context.Context, hash []byte, now time.Time) (InitialAccessToken, error) {
	return get(w, ctx, func(ctx context.Context) (InitialAccessToken, error) {
		return w.s.GetInitialAccessToken(ctx, hash, now)
	})
}

func (w *deadlineStore) DeleteExpired(ctx context.Context, now time.Time) (int64, error) {
	return bounded(ctx, w.sweep, func(ctx context.Context) (int64, error) { return w.s.DeleteExpired(ctx, now) })
}

func (w *deadlineStore) Close() { w.s.Close() }
