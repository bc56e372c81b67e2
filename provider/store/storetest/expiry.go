package storetest

import (
	"testing"
	"time"

	"github.com/authzd/authz/provider/store"
)

// testDeleteExpired puts one record of each kind on either side of now: the
// ones that expire exactly at now must go, the ones that expire a
// microsecond later must stay.
func testDeleteExpired(t *testing.T, newStore factory) {
	e := newEnv(t, newStore)
	c, u := e.client("c1").ID, e.user("u1").ID
	now := at(time.Hour)
	live := now.Add(time.Microsecond)

	liveCode, livePending := e.code(c, u, codeExpiresAt(live)) // unredeemed, but its code can still be used
	deadCode, deadPending := e.code(c, u, codeExpiresAt(now))
	spentCode, spentPending := e.code(c, u) // its code is refused as expired below, and so deleted
	_, err := e.s.ConsumeAuthCode(e.ctx, spentCode.Hash, at(codeTTL), nil)
	wantErr(t, "ConsumeAuthCode of an expired code", err, store.ErrExpired)

	liveGrant, liveRT := e.grantRTUntil(c, u, live)
	idleGrant, idleRT := e.grantRTUntil(c, u, now) // the grant lives on, its token does not
	lastGrant, lastRT := e.grantRTUntil(c, u, live, grantExpiresAt(live))
	deadGrant, deadGrantRT := e.grantRTUntil(c, u, now, grantExpiresAt(now))

	liveSess, deadSess := e.session(u, live), e.session(u, now)

	iat := func(expires time.Time) store.InitialAccessToken {
		tok := store.InitialAccessToken{Hash: randomHash(), CreatedAt: base, ExpiresAt: expires}
		e.must(e.s.CreateInitialAccessToken(e.ctx, tok), "CreateInitialAccessToken")
		return tok
	}
	liveIAT, foreverIAT, deadIAT := iat(live), iat(time.Time{}), iat(now)

	e.must(e.s.RevokeAccessToken(e.ctx, "live-jti", live), "RevokeAccessToken")
	e.must(e.s.RevokeAccessToken(e.ctx, "dead-jti", now), "RevokeAccessToken")

	// The doomed records exist before the sweep.
	_, _, err = e.s.GetSessionUser(e.ctx, deadSess.Hash, now)
	wantErr(t, "GetSessionUser before the sweep", err, store.ErrExpired)
	e.getRefresh(idleRT.Hash)
	e.getGrant(deadPending.ID)

	n, err := e.s.DeleteExpired(e.ctx, now)
	e.must(err, "DeleteExpired")
	if n <= 0 {
		t.Errorf("DeleteExpired removed %d records, want a positive count", n)
	}
	n, err = e.s.DeleteExpired(e.ctx, now)
	e.must(err, "DeleteExpired again")
	if n != 0 {
		t.Errorf("DeleteExpired again at the same instant removed %d records, want 0", n)
	}

	t.Run("expired records are gone", func(t *testing.T) {
		// Asked with an earlier clock, so "gone" cannot be mistaken for
		// "expired".
		early := at(time.Second)
		_, _, err := e.s.GetSessionUser(e.ctx, deadSess.Hash, early)
		wantErr(t, "GetSessionUser", err, store.ErrNotFound)
		_, err = e.s.GetInitialAccessToken(e.ctx, deadIAT.Hash, early)
		wantErr(t, "GetInitialAccessToken", err, store.ErrNotFound)
		if revoked, err := e.accessTokenRevoked("dead-jti", early); err != nil || revoked {
			t.Errorf("AccessTokenRevoked(dead-jti) = %v, %v; want false, nil", revoked, err)
		}
		_, err = e.s.ConsumeAuthCode(e.ctx, deadCode.Hash, early, nil)
		wantErr(t, "ConsumeAuthCode of a swept code (its grant is gone too)", err, store.ErrNotFound)
		for name, id := range map[string]string{
			"grant whose code expired":         deadPending.ID,
			"grant whose code was refused":     spentPending.ID,
			"grant past its absolute lifetime": deadGrant.ID,
		} {
			_, err := e.s.GetGrant(e.ctx, id)
			wantErr(t, "GetGrant of the "+name, err, store.ErrNotFound)
		}
		for name, h := range map[string][]byte{
			"idle-expired refresh token":         idleRT.Hash,
			"refresh token of the expired grant": deadGrantRT.Hash,
		} {
			_, _, err := e.s.GetRefreshToken(e.ctx, h)
			wantErr(t, "GetRefreshToken of the "+name, err, store.ErrNotFound)
		}
	})

	t.Run("live records stay", func(t *testing.T) {
		got, _, err := e.s.GetSessionUser(e.ctx, liveSess.Hash, now)
		e.must(err, "GetSessionUser live")
		equal(t, "live session", got, liveSess, canonSession)
		for _, tok := range []store.InitialAccessToken{liveIAT, foreverIAT} {
			got, err := e.s.GetInitialAccessToken(e.ctx, tok.Hash, now)
			e.must(err, "GetInitialAccessToken live")
			equal(t, "live initial access token", got, tok, canonIAT)
		}
		if revoked, err := e.accessTokenRevoked("live-jti", now); err != nil || !revoked {
			t.Errorf("AccessTokenRevoked(live-jti) = %v, %v; want true, nil", revoked, err)
		}
		equal(t, "unredeemed grant with a live code", e.getGrant(livePending.ID), livePending, canonGrant)
		equal(t, "live grant", e.getGrant(liveGrant.ID), liveGrant, canonGrant)
		equal(t, "live grant whose token expired", e.getGrant(idleGrant.ID), idleGrant, canonGrant)
		equal(t, "grant one microsecond from its end", e.getGrant(lastGrant.ID), lastGrant, canonGrant)
		equal(t, "live refresh token", e.getRefresh(liveRT.Hash), liveRT, canonRefresh)
		equal(t, "refresh token one microsecond from the grant's end", e.getRefresh(lastRT.Hash), lastRT, canonRefresh)

		// And they still work.
		got2, err := e.s.ConsumeAuthCode(e.ctx, liveCode.Hash, now, nil)
		e.must(err, "ConsumeAuthCode live")
		equal(t, "live code", got2, liveCode, canonCode)
		e.rotate(liveRT.Hash, now, grace)
		e.rotate(lastRT.Hash, now, grace)
	})
}
