package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/authzd/authz/provider/store"
)

func (e *env) consent(userID, clientID string) store.Consent {
	e.t.Helper()
	c := store.Consent{
		UserID: userID, ClientID: clientID,
		Scopes:    []string{"openid", "read"},
		Resources: []string{"https://api.example.com/"},
		UpdatedAt: base,
	}
	e.must(e.s.AddConsent(e.ctx, c), "AddConsent")
	return c
}

func (e *env) session(userID string, expires time.Time) store.Session {
	e.t.Helper()
	s := store.Session{Hash: randomHash(), UserID: userID, CreatedAt: base, ExpiresAt: expires}
	e.must(e.s.CreateSession(e.ctx, s), "CreateSession")
	return s
}

// deadGrant checks that a grant of a deleted client or user can no longer be
// used in any way. A store may delete such grants or keep them revoked.
func (e *env) deadGrant(what string, g store.Grant, rt *store.RefreshToken, code *store.AuthCode, now time.Time) {
	e.t.Helper()
	got, err := e.s.GetGrant(e.ctx, g.ID)
	if err == nil && got.Active(now) {
		e.t.Errorf("%s: grant %s still active: %+v", what, g.ID, got)
	} else if err != nil && !errors.Is(err, store.ErrNotFound) {
		e.t.Errorf("%s: GetGrant: %v", what, err)
	}
	if rt != nil {
		_, err := e.s.RotateRefreshToken(e.ctx, rt.Hash, now, grace, successor(now))
		wantOneOf(e.t, what+": rotating its refresh token", err, store.ErrNotFound, store.ErrGrantRevoked)
		if _, gg, err := e.s.GetRefreshToken(e.ctx, rt.Hash); err == nil && gg.Active(now) {
			e.t.Errorf("%s: GetRefreshToken returns an active grant", what)
		}
	}
	if code != nil {
		_, err := e.s.ConsumeAuthCode(e.ctx, code.Hash, now, nil)
		wantOneOf(e.t, what+": consuming its code", err, store.ErrNotFound, store.ErrCodeReused, store.ErrCodeSpent, store.ErrGrantRevoked)
	}
}

func testCascades(t *testing.T, newStore factory) {
	t.Run("DeleteClient", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		c1, c2, u := e.client("c1").ID, e.client("c2").ID, e.user("u1").ID
		redeemed, rt := e.grantRT(c1, u)
		code, pending := e.code(c1, u, codeExpiresAt(at(time.Hour)))
		e.consent(u, c1)
		other, otherRT := e.grantRT(c2, u)
		otherConsent := e.consent(u, c2)

		now := at(time.Minute)
		e.must(e.s.DeleteClient(e.ctx, c1), "DeleteClient")
		check := func(stage string) {
			t.Helper()
			e.deadGrant(stage+": redeemed grant", redeemed, &rt, nil, now)
			e.deadGrant(stage+": pending grant", pending, nil, &code, now)
			_, err := e.s.GetConsent(e.ctx, u, c1)
			wantErr(t, stage+": GetConsent of the deleted client", err, store.ErrNotFound)
			list, err := e.s.ListUserGrants(e.ctx, u, now)
			e.must(err, "ListUserGrants")
			if ids := grantIDs(list); !slices.Equal(ids, []string{other.ID}) {
				t.Errorf("%s: ListUserGrants = %v, want only the other client's [%s]", stage, ids, other.ID)
			}
		}
		check("after DeleteClient")
		// A client registered again under the same ID inherits nothing.
		e.must(e.s.CreateClient(e.ctx, sampleClient(c1, now)), "CreateClient again")
		check("after re-creating the client")

		got, err := e.s.GetConsent(e.ctx, u, c2)
		e.must(err, "GetConsent of the other client")
		equal(t, "other consent", got, otherConsent, canonConsent)
		e.rotate(otherRT.Hash, now, grace)
	})

	t.Run("DeleteUser", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		c, u1, u2 := e.client("c1").ID, e.user("u1"), e.user("u2").ID
		redeemed, rt := e.grantRT(c, u1.ID)
		code, pending := e.code(c, u1.ID, codeExpiresAt(at(time.Hour)))
		sess := e.session(u1.ID, at(time.Hour))
		e.consent(u1.ID, c)
		other, otherRT := e.grantRT(c, u2)
		otherSess := e.session(u2, at(time.Hour))
		otherConsent := e.consent(u2, c)

		now := at(time.Minute)
		e.must(e.s.DeleteUser(e.ctx, u1.ID), "DeleteUser")
		check := func(stage string) {
			t.Helper()
			e.deadGrant(stage+": redeemed grant", redeemed, &rt, nil, now)
			e.deadGrant(stage+": pending grant", pending, nil, &code, now)
			_, _, err := e.s.GetSessionUser(e.ctx, sess.Hash, now)
			wantErr(t, stage+": GetSessionUser", err, store.ErrNotFound)
			_, err = e.s.GetConsent(e.ctx, u1.ID, c)
			wantErr(t, stage+": GetConsent", err, store.ErrNotFound)
			list, err := e.s.ListUserGrants(e.ctx, u1.ID, now)
			e.must(err, "ListUserGrants")
			if len(list) != 0 {
				t.Errorf("%s: ListUserGrants = %v, want none", stage, grantIDs(list))
			}
		}
		check("after DeleteUser")
		// An account created again with the same ID and name inherits nothing.
		e.must(e.s.CreateUser(e.ctx, u1), "CreateUser again")
		check("after re-creating the user")

		gotSess, _, err := e.s.GetSessionUser(e.ctx, otherSess.Hash, now)
		e.must(err, "GetSessionUser of the other user")
		equal(t, "other session", gotSess, otherSess, canonSession)
		gotConsent, err := e.s.GetConsent(e.ctx, u2, c)
		e.must(err, "GetConsent of the other user")
		equal(t, "other consent", gotConsent, otherConsent, canonConsent)
		list, err := e.s.ListUserGrants(e.ctx, u2, now)
		e.must(err, "ListUserGrants other")
		if ids := grantIDs(list); !slices.Equal(ids, []string{other.ID}) {
			t.Errorf("ListUserGrants(u2) = %v, want [%s]", ids, other.ID)
		}
		e.rotate(otherRT.Hash, now, grace)
	})
}
