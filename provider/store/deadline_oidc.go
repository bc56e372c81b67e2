package store

import (
	"context"
	"time"
)

// The OpenID Connect operations under the same deadline as every other call.

func (w *deadlineStore) SignInUpstream(ctx context.Context, in UpstreamSignIn, now time.Time) (User, bool, error) {
	type res struct {
		u       User
		created bool
	}
	r, err := get(w, ctx, func(ctx context.Context) (res, error) {
		u, c, err := w.s.SignInUpstream(ctx, in, now)
		return res{u, c}, err
	})
	return r.u, r.created, err
}

func (w *deadlineStore) ListIdentities(ctx context.Context, userID string) ([]Identity, error) {
	return get(w, ctx, func(ctx context.Context) ([]Identity, error) { return w.s.ListIdentities(ctx, userID) })
}

func (w *deadlineStore) SetUserProfile(ctx context.Context, id, name, email string, emailVerified bool) error {
	return w.do(ctx, func(ctx context.Context) error { return w.s.SetUserProfile(ctx, id, name, email, emailVerified) })
}
