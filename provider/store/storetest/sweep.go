package storetest

import (
	"testing"
	"time"

	"github.com/authzd/authz/provider/store"
)

// testSweepKeepsEvidence: DeleteExpired runs on a timer, long after the
// events it cleans up. What it removes must be dead for every purpose, not
// only for "can it still be exchanged": a rotated refresh token and a
// revoked grant are useless to their holder but are the evidence reuse and
// replay detection need, and a janitor that deletes them silently switches
// that detection off (RFC 9700 §4.14.2, RFC 6749 §4.1.2).
func testSweepKeepsEvidence(t *testing.T, newStore factory) {
	// A rotated refresh token presented after the grace window is reuse,
	// whether or not a sweep ran in between; the grant dies with it.
	t.Run("RotatedRefreshToken", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		g, rt := e.grantRT(e.client("c1").ID, e.user("u1").ID)
		t0 := at(time.Hour)
		first := e.rotate(rt.Hash, t0, grace)

		// Past the grace window, well inside the token's idle lifetime
		// and the grant's absolute one.
		sweep := t0.Add(grace + time.Minute)
		if !sweep.Before(rt.ExpiresAt) || !sweep.Before(g.ExpiresAt) {
			t.Fatalf("fixture: the sweep at %v must come before the token's end %v and the grant's %v", sweep, rt.ExpiresAt, g.ExpiresAt)
		}
		_, err := e.s.DeleteExpired(e.ctx, sweep)
		e.must(err, "DeleteExpired")

		want := rt
		want.RotatedAt = t0
		equal(t, "rotated token after the sweep", e.getRefresh(rt.Hash), want, canonRefresh)

		replay := sweep.Add(time.Second)
		_, err = e.s.RotateRefreshToken(e.ctx, rt.Hash, replay, grace, successor(replay))
		wantErr(t, "replay of the rotated token after the sweep", err, store.ErrRefreshReused)
		equalTime(t, "grant RevokedAt", e.getGrant(g.ID).RevokedAt, replay)
		later := replay.Add(time.Second)
		_, err = e.s.RotateRefreshToken(e.ctx, first.New.Hash, later, grace, successor(later))
		wantErr(t, "the winner's successor after the reuse", err, store.ErrGrantRevoked)
	})

	// A redeemed code is gone, but its grant remembers it: a replay after
	// a sweep still revokes the grant it started (RFC 6749 §4.1.2).
	t.Run("RedeemedCode", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		code, g := e.code(e.client("c1").ID, e.user("u1").ID)
		_, rt := e.redeemRT(code, g, time.Time{})

		sweep := at(time.Hour) // the code's own expiry is long past
		_, err := e.s.DeleteExpired(e.ctx, sweep)
		e.must(err, "DeleteExpired")

		replay := sweep.Add(time.Second)
		_, err = e.s.ConsumeAuthCode(e.ctx, code.Hash, replay, nil)
		wantErr(t, "replay of the redeemed code after the sweep", err, store.ErrCodeReused)
		equalTime(t, "grant RevokedAt", e.getGrant(g.ID).RevokedAt, replay)
		later := replay.Add(time.Second)
		_, err = e.s.RotateRefreshToken(e.ctx, rt.Hash, later, grace, successor(later))
		wantErr(t, "the grant's refresh token after the replay", err, store.ErrGrantRevoked)
	})

	// A revoked grant inside its lifetime stays, with its tokens: a replay
	// of its code is still recognised as a spent code (not an unknown
	// one), and its refresh tokens
	// still answer "revoked" rather than vanishing.
	t.Run("RevokedGrant", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		c, u := e.client("c1").ID, e.user("u1").ID
		code, g := e.code(c, u)
		g, rt := e.redeemRT(code, g, time.Time{})
		g = e.getGrant(g.ID)
		revokedAt := at(time.Minute)
		e.must(e.s.RevokeGrant(e.ctx, g.ID, revokedAt), "RevokeGrant")

		sweep := at(time.Hour)
		if !sweep.Before(g.ExpiresAt) || !sweep.Before(rt.ExpiresAt) {
			t.Fatalf("fixture: the sweep at %v must come before the grant's end %v and the token's %v", sweep, g.ExpiresAt, rt.ExpiresAt)
		}
		_, err := e.s.DeleteExpired(e.ctx, sweep)
		e.must(err, "DeleteExpired")

		want := g
		want.RevokedAt = revokedAt
		equal(t, "revoked grant after the sweep", e.getGrant(g.ID), want, canonGrant)
		equal(t, "its refresh token after the sweep", e.getRefresh(rt.Hash), rt, canonRefresh)

		now := sweep.Add(time.Second)
		_, err = e.s.ConsumeAuthCode(e.ctx, code.Hash, now, nil)
		wantErr(t, "replay of the grant's code after the sweep", err, store.ErrCodeSpent)
		equalTime(t, "grant RevokedAt after the replay", e.getGrant(g.ID).RevokedAt, revokedAt)
		_, err = e.s.RotateRefreshToken(e.ctx, rt.Hash, now, grace, successor(now))
		wantErr(t, "its refresh token after the sweep", err, store.ErrGrantRevoked)
	})
}
