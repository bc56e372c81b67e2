package provider

import (
	"context"
	"errors"
	"time"

	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/store"
)

// timedStore measures every store call the server makes: latency by
// operation, and failures (not domain answers such as "not found") by
// operation and kind. It embeds the store, so an operation added later is
// served unmeasured rather than not at all.
type timedStore struct {
	store.Store
	m *metrics
}

// storeFailure names a failed store call's kind, or "" when err is nil or
// an answer about the data (a sentinel, or a callback's OAuth error).
func storeFailure(err error) string {
	if err == nil {
		// Before errors.As, whose target would be allocated on every
		// successful call.
		return ""
	}
	var oe *oauth.Error
	switch {
	case errors.As(err, &oe),
		errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrAlreadyExists),
		errors.Is(err, store.ErrExpired), errors.Is(err, store.ErrGrantRevoked),
		errors.Is(err, store.ErrCodeReused), errors.Is(err, store.ErrCodeSpent), errors.Is(err, store.ErrRefreshReused),
		// The refresh callback's own stop, before a grace replay's
		// successor key is known (token.go): not the database's doing.
		errors.Is(err, errSuccessorKeyUnknown),
		errors.Is(err, context.Canceled):
		return ""
	case errors.Is(err, store.ErrUnavailable):
		return "unavailable"
	}
	return "other"
}

func (t timedStore) done(op string, start time.Time, err error) {
	t.m.storeLatency.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if kind := storeFailure(err); kind != "" {
		t.m.storeErrors.WithLabelValues(op, kind).Inc()
	}
}

func timed0(t timedStore, op string, f func() error) error {
	start := time.Now()
	err := f()
	t.done(op, start, err)
	return err
}

func timed1[T any](t timedStore, op string, f func() (T, error)) (T, error) {
	start := time.Now()
	v, err := f()
	t.done(op, start, err)
	return v, err
}

func (t timedStore) Ping(ctx context.Context) error {
	return timed0(t, "Ping", func() error { return t.Store.Ping(ctx) })
}
func (t timedStore) CreateClient(ctx context.Context, c store.Client) error {
	return timed0(t, "CreateClient", func() error { return t.Store.CreateClient(ctx, c) })
}
func (t timedStore) GetClient(ctx context.Context, id string) (store.Client, error) {
	return timed1(t, "GetClient", func() (store.Client, error) { return t.Store.GetClient(ctx, id) })
}
func (t timedStore) UpdateClient(ctx context.Context, id string, edit store.EditClientFunc) (store.Client, error) {
	return timed1(t, "UpdateClient", func() (store.Client, error) { return t.Store.UpdateClient(ctx, id, edit) })
}
func (t timedStore) UpdateRegisteredClient(ctx context.Context, id string, presented, next []byte, edit store.EditClientFunc) (store.Client, error) {
	return timed1(t, "UpdateRegisteredClient", func() (store.Client, error) {
		return t.Store.UpdateRegisteredClient(ctx, id, presented, next, edit)
	})
}
func (t timedStore) DeleteClient(ctx context.Context, id string) error {
	return timed0(t, "DeleteClient", func() error { return t.Store.DeleteClient(ctx, id) })
}
func (t timedStore) DeleteRegisteredClient(ctx context.Context, id string, presented []byte) error {
	return timed0(t, "DeleteRegisteredClient", func() error { return t.Store.DeleteRegisteredClient(ctx, id, presented) })
}
func (t timedStore) GetUser(ctx context.Context, id string) (store.User, error) {
	return timed1(t, "GetUser", func() (store.User, error) { return t.Store.GetUser(ctx, id) })
}
func (t timedStore) GetUserByUsername(ctx context.Context, username string) (store.User, error) {
	return timed1(t, "GetUserByUsername", func() (store.User, error) { return t.Store.GetUserByUsername(ctx, username) })
}
func (t timedStore) CreateAuthCode(ctx context.Context, code store.AuthCode, grant store.Grant) error {
	return timed0(t, "CreateAuthCode", func() error { return t.Store.CreateAuthCode(ctx, code, grant) })
}
func (t timedStore) ConsumeAuthCode(ctx context.Context, hash []byte, now time.Time, redeem store.RedeemFunc) (store.AuthCode, error) {
	return timed1(t, "ConsumeAuthCode", func() (store.AuthCode, error) { return t.Store.ConsumeAuthCode(ctx, hash, now, redeem) })
}
func (t timedStore) GetGrant(ctx context.Context, id string) (store.Grant, error) {
	return timed1(t, "GetGrant", func() (store.Grant, error) { return t.Store.GetGrant(ctx, id) })
}
func (t timedStore) ListUserGrants(ctx context.Context, userID string, now time.Time) ([]store.Grant, error) {
	return timed1(t, "ListUserGrants", func() ([]store.Grant, error) { return t.Store.ListUserGrants(ctx, userID, now) })
}
func (t timedStore) RevokeGrant(ctx context.Context, id string, now time.Time) error {
	return timed0(t, "RevokeGrant", func() error { return t.Store.RevokeGrant(ctx, id, now) })
}
func (t timedStore) RevokeUserGrant(ctx context.Context, userID, id string, now time.Time) (store.Grant, error) {
	return timed1(t, "RevokeUserGrant", func() (store.Grant, error) { return t.Store.RevokeUserGrant(ctx, userID, id, now) })
}
func (t timedStore) GetRefreshToken(ctx context.Context, hash []byte) (store.RefreshToken, store.Grant, error) {
	var g store.Grant
	rt, err := timed1(t, "GetRefreshToken", func() (store.RefreshToken, error) {
		rt, gr, err := t.Store.GetRefreshToken(ctx, hash)
		g = gr
		return rt, err
	})
	return rt, g, err
}
func (t timedStore) RotateRefreshToken(ctx context.Context, hash []byte, now time.Time, grace time.Duration, next store.NextRefreshFunc) (store.Rotation, error) {
	return timed1(t, "RotateRefreshToken", func() (store.Rotation, error) {
		return t.Store.RotateRefreshToken(ctx, hash, now, grace, next)
	})
}
func (t timedStore) RevokeAccessToken(ctx context.Context, jti string, expiresAt time.Time) error {
	return timed0(t, "RevokeAccessToken", func() error { return t.Store.RevokeAccessToken(ctx, jti, expiresAt) })
}
func (t timedStore) AccessTokenStatus(ctx context.Context, jti, grantID, clientID string, now time.Time) (store.AccessTokenStatus, error) {
	return timed1(t, "AccessTokenStatus", func() (store.AccessTokenStatus, error) {
		return t.Store.AccessTokenStatus(ctx, jti, grantID, clientID, now)
	})
}
func (t timedStore) GetConsent(ctx context.Context, userID, clientID string) (store.Consent, error) {
	return timed1(t, "GetConsent", func() (store.Consent, error) { return t.Store.GetConsent(ctx, userID, clientID) })
}
func (t timedStore) AddConsent(ctx context.Context, c store.Consent) error {
	return timed0(t, "AddConsent", func() error { return t.Store.AddConsent(ctx, c) })
}
func (t timedStore) DeleteConsent(ctx context.Context, userID, clientID string) error {
	return timed0(t, "DeleteConsent", func() error { return t.Store.DeleteConsent(ctx, userID, clientID) })
}
func (t timedStore) HitCounter(ctx context.Context, key string, window time.Duration, now time.Time) (store.Counter, error) {
	return timed1(t, "HitCounter", func() (store.Counter, error) { return t.Store.HitCounter(ctx, key, window, now) })
}
func (t timedStore) UnhitCounter(ctx context.Context, key string, now time.Time) error {
	return timed0(t, "UnhitCounter", func() error { return t.Store.UnhitCounter(ctx, key, now) })
}
func (t timedStore) GetCounter(ctx context.Context, key string, now time.Time) (store.Counter, error) {
	return timed1(t, "GetCounter", func() (store.Counter, error) { return t.Store.GetCounter(ctx, key, now) })
}
func (t timedStore) ListSigningKeys(ctx context.Context) ([]store.SigningKey, error) {
	return timed1(t, "ListSigningKeys", func() ([]store.SigningKey, error) { return t.Store.ListSigningKeys(ctx) })
}
func (t timedStore) CreateSession(ctx context.Context, s store.Session) error {
	return timed0(t, "CreateSession", func() error { return t.Store.CreateSession(ctx, s) })
}
func (t timedStore) GetSessionUser(ctx context.Context, hash []byte, now time.Time) (store.Session, store.User, error) {
	var u store.User
	se, err := timed1(t, "GetSessionUser", func() (store.Session, error) {
		se, us, err := t.Store.GetSessionUser(ctx, hash, now)
		u = us
		return se, err
	})
	return se, u, err
}
func (t timedStore) DeleteSession(ctx context.Context, hash []byte) error {
	return timed0(t, "DeleteSession", func() error { return t.Store.DeleteSession(ctx, hash) })
}
func (t timedStore) GetInitialAccessToken(ctx context.Context, hash []byte, now time.Time) (store.InitialAccessToken, error) {
	return timed1(t, "GetInitialAccessToken", func() (store.InitialAccessToken, error) {
		return t.Store.GetInitialAccessToken(ctx, hash, now)
	})
}
func (t timedStore) DeleteExpired(ctx context.Context, now time.Time) (int64, error) {
	return timed1(t, "DeleteExpired", func() (int64, error) { return t.Store.DeleteExpired(ctx, now) })
}
func (t timedStore) AppendAuditEvent(ctx context.Context, e store.AuditEvent) error {
	return timed0(t, "AppendAuditEvent", func() error { return t.Store.AppendAuditEvent(ctx, e) })
}
func (t timedStore) DeleteAuditEventsBefore(ctx context.Context, before time.Time) (int64, error) {
	return timed1(t, "DeleteAuditEventsBefore", func() (int64, error) { return t.Store.DeleteAuditEventsBefore(ctx, before) })
}
func (t timedStore) CountLive(ctx context.Context, now time.Time) (store.Counts, error) {
	return timed1(t, "CountLive", func() (store.Counts, error) { return t.Store.CountLive(ctx, now) })
}
