package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/authzd/authz/provider/store"
)

func testRefreshTokens(t *testing.T, newStore factory) {
	// GetRefreshToken serves revocation (RFC 7009), which must find a token
	// whatever state it and its grant are in.
	t.Run("GetWhateverTheState", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		g, rt := e.grantRT(e.client("c1").ID, e.user("u1").ID)
		t0 := at(time.Hour)
		e.rotate(rt.Hash, t0, grace)
		e.must(e.s.RevokeGrant(e.ctx, g.ID, t0.Add(time.Second)), "RevokeGrant")
		got, gotGrant, err := e.s.GetRefreshToken(e.ctx, rt.Hash)
		e.must(err, "GetRefreshToken")
		want := rt
		want.RotatedAt = t0
		equal(t, "rotated token", got, want, canonRefresh)
		wantG := g
		wantG.LastUsedAt, wantG.RevokedAt = t0, t0.Add(time.Second)
		equal(t, "revoked grant", gotGrant, wantG, canonGrant)
	})

	t.Run("RotateWins", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		g, rt := e.grantRT(e.client("c1").ID, e.user("u1").ID)
		now := at(time.Hour)
		var rec recorder
		rot, err := e.s.RotateRefreshToken(e.ctx, rt.Hash, now, grace, rec.next(successor(now)))
		e.must(err, "RotateRefreshToken")

		if rec.calls != 1 {
			t.Fatalf("next called %d times, want 1", rec.calls)
		}
		equal(t, "next's old token", rec.old, rt, canonRefresh)
		equal(t, "next's grant", rec.grant, g, canonGrant)
		if rot.WithinGrace {
			t.Errorf("WithinGrace = true on a first rotation")
		}
		equal(t, "Rotation.Old (the state before the call)", rot.Old, rt, canonRefresh)
		equal(t, "Rotation.New", rot.New, rec.made, canonRefresh)
		if rot.Grant.ID != g.ID || rot.Grant.UserID != g.UserID || rot.Grant.ClientID != g.ClientID {
			t.Errorf("Rotation.Grant = %+v, want grant %s", rot.Grant, g.ID)
		}

		wantOld := rt
		wantOld.RotatedAt = now
		equal(t, "stored old token", e.getRefresh(rt.Hash), wantOld, canonRefresh)
		newRT, newGrant, err := e.s.GetRefreshToken(e.ctx, rec.made.Hash)
		e.must(err, "GetRefreshToken successor")
		equal(t, "stored successor", newRT, rec.made, canonRefresh)
		wantG := g
		wantG.LastUsedAt = now
		equal(t, "grant after rotation", newGrant, wantG, canonGrant)
		equal(t, "GetGrant after rotation", e.getGrant(g.ID), wantG, canonGrant)

		// The chain goes on: the successor wins in its turn.
		later := now.Add(time.Hour)
		rot2 := e.rotate(rec.made.Hash, later, grace)
		if rot2.WithinGrace {
			t.Errorf("successor's first rotation WithinGrace = true")
		}
		equalTime(t, "LastUsedAt after the second rotation", e.getGrant(g.ID).LastUsedAt, later)
	})

	// A client that lost the response of a refresh (or raced itself) may
	// present the same token again for a short while. It gets the same
	// successor as the first presentation (one successor per token), so
	// two holders share one chain and a later divergence is reuse.
	t.Run("ReplayInsideGraceGetsTheSameSuccessor", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		g, rt := e.grantRT(e.client("c1").ID, e.user("u1").ID)
		t0 := at(time.Hour)
		first := e.rotate(rt.Hash, t0, grace)

		t1 := t0.Add(10 * time.Second)
		var rec recorder
		second, err := e.s.RotateRefreshToken(e.ctx, rt.Hash, t1, grace, rec.next(successor(t1)))
		e.must(err, "RotateRefreshToken inside grace")
		if !second.WithinGrace {
			t.Errorf("WithinGrace = false for a replay inside the grace window")
		}
		rotated := rt
		rotated.RotatedAt = t0
		equal(t, "Rotation.Old", second.Old, rotated, canonRefresh)
		equal(t, "next's old token", rec.old, rotated, canonRefresh)
		// The stored successor, as the first rotation made it, not the
		// fresh ID and times next proposed this time.
		equal(t, "Rotation.New of the replay", second.New, first.New, canonRefresh)
		equal(t, "stored successor", e.getRefresh(first.New.Hash), first.New, canonRefresh)
		// RotatedAt records the first exchange, so the window never slides.
		equal(t, "old token after a grace replay", e.getRefresh(rt.Hash), rotated, canonRefresh)
		// LastUsedAt is written at most once a minute.
		equalTime(t, "LastUsedAt 10s after the last write", e.getGrant(g.ID).LastUsedAt, t0)

		// One chain: the successor wins once; its holders' later
		// presentations inside its own window get its one successor too.
		t2 := t0.Add(20 * time.Second)
		r1 := e.rotate(first.New.Hash, t2, grace)
		if r1.WithinGrace {
			t.Errorf("the successor's first rotation WithinGrace = true")
		}
		r2 := e.rotate(first.New.Hash, t2.Add(time.Second), grace)
		if !r2.WithinGrace || !slices.Equal(r2.New.Hash, r1.New.Hash) {
			t.Errorf("second holder of the successor: WithinGrace %v, same successor %v; want true, true",
				r2.WithinGrace, slices.Equal(r2.New.Hash, r1.New.Hash))
		}
		if r := e.getGrant(g.ID).RevokedAt; !r.IsZero() {
			t.Errorf("grant revoked at %v by replays inside grace", r)
		}
		// After the window the chains diverge: reuse, grant revoked.
		late := t2.Add(grace)
		_, err = e.s.RotateRefreshToken(e.ctx, first.New.Hash, late, grace, successor(late))
		wantErr(t, "the successor presented after its window", err, store.ErrRefreshReused)
		equalTime(t, "RevokedAt", e.getGrant(g.ID).RevokedAt, late)
	})

	// Inside the grace window the store answers with the stored successor;
	// a proposal whose hash names some other token is an error, never a
	// second successor or somebody else's token.
	t.Run("GraceReplayNeverForks", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		c, u := e.client("c1").ID, e.user("u1").ID
		_, rt := e.grantRT(c, u)
		_, stranger := e.grantRT(c, u)
		t0 := at(time.Hour)
		e.rotate(rt.Hash, t0, grace)
		t1 := t0.Add(time.Second)
		_, err := e.s.RotateRefreshToken(e.ctx, rt.Hash, t1, grace, func(old store.RefreshToken, g store.Grant) (store.RefreshToken, error) {
			return store.RefreshToken{ID: randomID("rt"), Hash: stranger.Hash, GrantID: g.ID, ClientID: old.ClientID, ParentID: old.ID,
				CreatedAt: t1, ExpiresAt: at(idleTTL)}, nil
		})
		wantErr(t, "a grace replay proposing another token's hash", err, store.ErrAlreadyExists)
		equal(t, "the other token", e.getRefresh(stranger.Hash), stranger, canonRefresh)
	})

	// LastUsedAt is for people ("last used"); a busy grant writes it at most
	// once per LastUsedGranularity.
	t.Run("LastUsedAtOncePerMinute", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		g, rt := e.grantRT(e.client("c1").ID, e.user("u1").ID)
		redeemed := g.LastUsedAt
		t1 := redeemed.Add(store.LastUsedGranularity - time.Microsecond)
		r1 := e.rotate(rt.Hash, t1, grace)
		equalTime(t, "LastUsedAt just under a minute after redemption", e.getGrant(g.ID).LastUsedAt, redeemed)
		equalTime(t, "Rotation.Grant.LastUsedAt", r1.Grant.LastUsedAt, redeemed)
		t2 := redeemed.Add(store.LastUsedGranularity)
		r2 := e.rotate(r1.New.Hash, t2, grace)
		equalTime(t, "LastUsedAt a minute after", e.getGrant(g.ID).LastUsedAt, t2)
		equalTime(t, "Rotation.Grant.LastUsedAt", r2.Grant.LastUsedAt, t2)
	})

	// RFC 9700 §4.14.2: a rotated refresh token presented again means two
	// parties hold it; the server cannot tell which is legitimate, so it
	// revokes the whole grant.
	t.Run("ReuseBoundary", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			name  string
			grace time.Duration
			after time.Duration // from the first rotation to the replay
			want  error
		}{
			{"one microsecond before grace ends", grace, grace - time.Microsecond, nil},
			{"exactly grace after", grace, grace, store.ErrRefreshReused},
			{"long after", grace, 6 * time.Hour, store.ErrRefreshReused},
			{"grace 0 at the same instant", 0, 0, store.ErrRefreshReused},
			{"grace 0 one microsecond later", 0, time.Microsecond, store.ErrRefreshReused},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, newStore)
				g, rt := e.grantRT(e.client("c1").ID, e.user("u1").ID)
				t0 := at(time.Hour)
				first := e.rotate(rt.Hash, t0, tt.grace)

				replay := t0.Add(tt.after)
				var rec recorder
				rot, err := e.s.RotateRefreshToken(e.ctx, rt.Hash, replay, tt.grace, rec.next(successor(replay)))
				wantErr(t, "replay", err, tt.want)
				if tt.want == nil {
					if !rot.WithinGrace {
						t.Errorf("WithinGrace = false inside the grace window")
					}
					if r := e.getGrant(g.ID).RevokedAt; !r.IsZero() {
						t.Errorf("grant revoked at %v inside the grace window", r)
					}
					return
				}

				got := e.getGrant(g.ID)
				equalTime(t, "RevokedAt", got.RevokedAt, replay)
				equalTime(t, "LastUsedAt (not moved by a reuse)", got.LastUsedAt, t0)
				if rec.calls == 1 {
					_, _, err = e.s.GetRefreshToken(e.ctx, rec.made.Hash)
					wantErr(t, "successor made for a reuse", err, store.ErrNotFound)
				}
				// Every token of the grant is dead now, the winner's
				// successor included.
				later := replay.Add(time.Second)
				for name, h := range map[string][]byte{"the winner's successor": first.New.Hash, "the reused token": rt.Hash} {
					_, err := e.s.RotateRefreshToken(e.ctx, h, later, tt.grace, successor(later))
					wantErr(t, "rotating "+name, err, store.ErrGrantRevoked)
				}
				list, err := e.s.ListUserGrants(e.ctx, g.UserID, later)
				e.must(err, "ListUserGrants")
				if len(list) != 0 {
					t.Errorf("ListUserGrants = %v after reuse, want none", grantIDs(list))
				}
			})
		}
	})

	t.Run("IdleExpiryBoundary", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			name string
			now  func(rt store.RefreshToken) time.Time
			want error
		}{
			{"one microsecond before ExpiresAt", func(rt store.RefreshToken) time.Time { return rt.ExpiresAt.Add(-time.Microsecond) }, nil},
			{"at ExpiresAt", func(rt store.RefreshToken) time.Time { return rt.ExpiresAt }, store.ErrExpired},
			{"after ExpiresAt", func(rt store.RefreshToken) time.Time { return rt.ExpiresAt.Add(time.Hour) }, store.ErrExpired},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, newStore)
				g, rt := e.grantRT(e.client("c1").ID, e.user("u1").ID)
				if !rt.ExpiresAt.Before(g.ExpiresAt) {
					t.Fatalf("fixture: idle expiry %v must come before the grant's %v", rt.ExpiresAt, g.ExpiresAt)
				}
				now := tt.now(rt)
				var rec recorder
				_, err := e.s.RotateRefreshToken(e.ctx, rt.Hash, now, grace, rec.next(successor(now)))
				wantErr(t, "RotateRefreshToken", err, tt.want)
				if tt.want == nil {
					return
				}
				if rec.calls != 0 {
					t.Errorf("next called %d times for an expired token, want 0", rec.calls)
				}
				equal(t, "expired token", e.getRefresh(rt.Hash), rt, canonRefresh)
				equal(t, "its grant", e.getGrant(g.ID), g, canonGrant)
			})
		}
	})

	t.Run("GrantNotActive", func(t *testing.T) {
		t.Parallel()
		grantEnd := at(time.Hour) // before the token's idle expiry would be
		tests := []struct {
			name   string
			revoke bool
			now    time.Time
			want   error
		}{
			{"one microsecond before the grant's lifetime ends", false, grantEnd.Add(-time.Microsecond), nil},
			{"at the grant's ExpiresAt", false, grantEnd, store.ErrGrantRevoked},
			{"revoked grant", true, at(time.Minute), store.ErrGrantRevoked},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, newStore)
				g, rt := e.grantRT(e.client("c1").ID, e.user("u1").ID, grantExpiresAt(grantEnd))
				if tt.revoke {
					e.must(e.s.RevokeGrant(e.ctx, g.ID, at(30*time.Second)), "RevokeGrant")
				}
				var rec recorder
				_, err := e.s.RotateRefreshToken(e.ctx, rt.Hash, tt.now, grace, rec.next(successor(tt.now)))
				wantErr(t, "RotateRefreshToken", err, tt.want)
				if tt.want != nil {
					if rec.calls != 0 {
						t.Errorf("next called %d times for an inactive grant, want 0", rec.calls)
					}
					if r := e.getRefresh(rt.Hash).RotatedAt; !r.IsZero() {
						t.Errorf("token RotatedAt = %v, want zero", r)
					}
				}
			})
		}
	})

	// next validates the request (client binding, scope narrowing); when it
	// refuses, nothing happened: the token is not spent. A rotated token
	// presented after the grace window is reuse before next is asked, so a
	// replay cannot dodge detection by also asking for something refused.
	t.Run("NextErrorWritesNothing", func(t *testing.T) {
		t.Parallel()
		errRefused := errors.New("storetest: refused by next")
		refuse := func(store.RefreshToken, store.Grant) (store.RefreshToken, error) {
			return store.RefreshToken{}, errRefused
		}
		t0 := at(time.Hour)
		tests := []struct {
			name     string
			rotateAt time.Duration // first rotation before the refused call; negative: none
			refuseAt time.Duration
		}{
			{"fresh token", -1, 0},
			{"inside grace", 0, time.Second},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, newStore)
				g, rt := e.grantRT(e.client("c1").ID, e.user("u1").ID)
				if tt.rotateAt >= 0 {
					e.rotate(rt.Hash, t0.Add(tt.rotateAt), grace)
				}
				wantRT, wantG := e.getRefresh(rt.Hash), e.getGrant(g.ID)

				now := t0.Add(tt.refuseAt)
				_, err := e.s.RotateRefreshToken(e.ctx, rt.Hash, now, grace, refuse)
				if err != errRefused { // "returned as is": the very value, not a wrapper
					t.Fatalf("RotateRefreshToken = %v, want next's error as is", err)
				}
				equal(t, "token after a refused rotation", e.getRefresh(rt.Hash), wantRT, canonRefresh)
				equal(t, "grant after a refused rotation", e.getGrant(g.ID), wantG, canonGrant)

				if tt.rotateAt < 0 {
					// Not spent: the same token still wins afterwards.
					if r := e.rotate(rt.Hash, now.Add(time.Second), grace); r.WithinGrace {
						t.Errorf("rotation after a refused one WithinGrace = true, want a win")
					}
				}
			})
		}
		t.Run("after grace it is reuse, whatever next would say", func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, newStore)
			g, rt := e.grantRT(e.client("c1").ID, e.user("u1").ID)
			succ := e.rotate(rt.Hash, t0, grace).New
			now := t0.Add(grace + time.Hour)
			called := false
			_, err := e.s.RotateRefreshToken(e.ctx, rt.Hash, now, grace, func(store.RefreshToken, store.Grant) (store.RefreshToken, error) {
				called = true
				return store.RefreshToken{}, errRefused
			})
			wantErr(t, "replay after grace with a refusing next", err, store.ErrRefreshReused)
			if called {
				t.Error("next ran for a reused token")
			}
			equalTime(t, "RevokedAt", e.getGrant(g.ID).RevokedAt, now)
			_, err = e.s.RotateRefreshToken(e.ctx, succ.Hash, now.Add(time.Second), grace, successor(now))
			wantErr(t, "the successor after reuse", err, store.ErrGrantRevoked)
		})
	})
}
