package storetest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/authzd/authz/provider/store"
)

// testRevokeUserGrant: "Revoke" on the connected-apps page is one store
// operation (house rule 11): the owner check, the revocation and the
// forgetting of the consent cannot be separated, by another user or by a
// concurrent revocation.
func testRevokeUserGrant(t *testing.T, newStore factory) {
	t.Run("OwnerRevokesOneDeviceAndForgetsConsent", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		c1, c2 := e.client("c1").ID, e.client("c2").ID
		u1, u2 := e.user("u1").ID, e.user("u2").ID
		phone, phoneRT := e.grantRT(c1, u1)
		laptop, laptopRT := e.grantRT(c1, u1, grantCreatedAt(at(time.Second)))
		other, otherRT := e.grantRT(c1, u2)
		e.consent(u1, c1)
		keep := e.consent(u1, c2)
		theirs := e.consent(u2, c1)
		now := at(time.Minute)

		got, err := e.s.RevokeUserGrant(e.ctx, u1, phone.ID, now)
		e.must(err, "RevokeUserGrant")
		want := phone
		want.RevokedAt = now
		equal(t, "returned grant", got, want, canonGrant)
		equal(t, "stored grant", e.getGrant(phone.ID), want, canonGrant)

		// The revoked grant's refresh token stops working; the user's other
		// device and the other user's grant of the same client do not.
		_, err = e.s.RotateRefreshToken(e.ctx, phoneRT.Hash, now, grace, successor(now))
		wantErr(t, "rotate the revoked grant's token", err, store.ErrGrantRevoked)
		if rot := e.rotate(laptopRT.Hash, now, grace); rot.Grant.ID != laptop.ID {
			t.Errorf("rotation of the other device's token: grant %s, want %s", rot.Grant.ID, laptop.ID)
		}
		if rot := e.rotate(otherRT.Hash, now, grace); rot.Grant.ID != other.ID {
			t.Errorf("rotation of the other user's token: grant %s, want %s", rot.Grant.ID, other.ID)
		}
		gs, err := e.s.ListUserGrants(e.ctx, u1, now)
		e.must(err, "ListUserGrants")
		if ids := grantIDs(gs); !slices.Equal(ids, []string{laptop.ID}) {
			t.Errorf("ListUserGrants after revoking the phone = %v, want [%s]", ids, laptop.ID)
		}

		// The consent to the grant's client is gone; the user's consent to
		// another client and another user's consent to this one are not.
		_, err = e.s.GetConsent(e.ctx, u1, c1)
		wantErr(t, "consent to the revoked grant's client", err, store.ErrNotFound)
		for _, c := range []store.Consent{keep, theirs} {
			got, err := e.s.GetConsent(e.ctx, c.UserID, c.ClientID)
			e.must(err, "GetConsent "+c.UserID+" "+c.ClientID)
			equal(t, "untouched consent", got, c, canonConsent)
		}
	})

	t.Run("AnotherUsersGrantIsNotTouched", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		c := e.client("c1").ID
		alice, mallory := e.user("alice").ID, e.user("mallory").ID
		g, rt := e.grantRT(c, alice)
		aliceConsent := e.consent(alice, c)
		malloryConsent := e.consent(mallory, c)
		now := at(time.Minute)

		_, err := e.s.RevokeUserGrant(e.ctx, mallory, g.ID, now)
		wantErr(t, "RevokeUserGrant of another user's grant", err, store.ErrNotFound)
		equal(t, "the grant", e.getGrant(g.ID), g, canonGrant)
		e.rotate(rt.Hash, now, grace)
		for _, want := range []store.Consent{aliceConsent, malloryConsent} {
			got, err := e.s.GetConsent(e.ctx, want.UserID, c)
			e.must(err, "GetConsent "+want.UserID)
			equal(t, "consent after a refused revocation", got, want, canonConsent)
		}
		for _, id := range []string{"nope", "\x00", "\xc3\x28"} {
			_, err := e.s.RevokeUserGrant(e.ctx, alice, id, now)
			wantErr(t, fmt.Sprintf("RevokeUserGrant(%q)", id), err, store.ErrNotFound)
		}
	})

	t.Run("Idempotent", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		c, u := e.client("c1").ID, e.user("u1").ID
		g := e.grant(c, u)
		first := at(time.Minute)
		e.consent(u, c)
		_, err := e.s.RevokeUserGrant(e.ctx, u, g.ID, first)
		e.must(err, "RevokeUserGrant")
		// Consent given again meanwhile (another device) is forgotten by
		// a second revocation, which keeps the first instant.
		e.consent(u, c)
		got, err := e.s.RevokeUserGrant(e.ctx, u, g.ID, at(time.Hour))
		e.must(err, "RevokeUserGrant again")
		want := g
		want.RevokedAt = first
		equal(t, "grant revoked twice (returned)", got, want, canonGrant)
		equal(t, "grant revoked twice (stored)", e.getGrant(g.ID), want, canonGrant)
		_, err = e.s.GetConsent(e.ctx, u, c)
		wantErr(t, "consent after the second revocation", err, store.ErrNotFound)

		// A grant RevokeGrant revoked first (the client's own revocation)
		// keeps that instant too.
		g2 := e.grant(c, u)
		e.must(e.s.RevokeGrant(e.ctx, g2.ID, first), "RevokeGrant")
		got, err = e.s.RevokeUserGrant(e.ctx, u, g2.ID, at(time.Hour))
		e.must(err, "RevokeUserGrant of a revoked grant")
		equalTime(t, "RevokedAt", got.RevokedAt, first)
	})

	// Concurrent revocations of one grant (a double click, two tabs) all
	// succeed and all answer with the one instant that was stored.
	t.Run("Concurrent", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		c, u := e.client("c1").ID, e.user("u1").ID
		g := e.grant(c, u)
		e.consent(u, c)
		results := make([]store.Grant, racers)
		errs := race(func(i int) error {
			var err error
			results[i], err = e.s.RevokeUserGrant(e.ctx, u, g.ID, at(time.Minute+time.Duration(i)*time.Second))
			return err
		})
		stored := e.getGrant(g.ID)
		if stored.RevokedAt.IsZero() {
			t.Fatal("grant not revoked")
		}
		for i, err := range errs {
			e.must(err, fmt.Sprintf("concurrent RevokeUserGrant %d", i))
			equalTime(t, fmt.Sprintf("RevokedAt returned to caller %d", i), results[i].RevokedAt, stored.RevokedAt)
		}
		_, err := e.s.GetConsent(e.ctx, u, c)
		wantErr(t, "consent after concurrent revocations", err, store.ErrNotFound)
	})
}
