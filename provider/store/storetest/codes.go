package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/authzd/authz/provider/store"
)

func testAuthCodes(t *testing.T, newStore factory) {
	t.Run("ConsumeReturnsEveryField", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		c, g := e.code(e.client("c1").ID, e.user("u1").ID)

		stored := e.getGrant(g.ID)
		equal(t, "grant before redemption", stored, g, canonGrant)
		if !stored.LastUsedAt.IsZero() || !stored.RevokedAt.IsZero() {
			t.Errorf("new grant LastUsedAt=%v RevokedAt=%v, want both zero", stored.LastUsedAt, stored.RevokedAt)
		}

		now := at(30 * time.Second)
		got, err := e.s.ConsumeAuthCode(e.ctx, c.Hash, now, nil)
		e.must(err, "ConsumeAuthCode")
		equal(t, "consumed code", got, c, canonCode)

		// Redemption marks the grant used at now: from here on it is listed.
		g.LastUsedAt = now
		equal(t, "grant after redemption", e.getGrant(g.ID), g, canonGrant)
	})

	// CreateAuthCode stores the grant and its code together or neither
	// (PostgreSQL does it in one statement, issue 13): a refused pair
	// leaves no grant without a code and no code without a grant.
	t.Run("CreateStoresBothOrNeither", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		cl, u := e.client("c1").ID, e.user("u1").ID
		taken, takenGrant := e.code(cl, u)
		pair := func(grantID string, h []byte, clientID, userID string) (store.AuthCode, store.Grant) {
			return store.AuthCode{Hash: h, ClientID: clientID, UserID: userID, GrantID: grantID, RedirectURI: "https://app.example.com/cb",
					CodeChallenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", CreatedAt: base, ExpiresAt: at(codeTTL)},
				store.Grant{ID: grantID, ClientID: clientID, UserID: userID, CodeHash: slices.Clone(h), CreatedAt: base, ExpiresAt: at(grantTTL)}
		}
		tests := []struct {
			name         string
			grantID      string
			hash         []byte
			client, user string
			want         error
			hashTaken    bool // the hash is the existing code's
		}{
			{"unknown client", "g-client", randomHash(), "nope", u, store.ErrNotFound, false},
			{"unknown user", "g-user", randomHash(), cl, "nope", store.ErrNotFound, false},
			{"grant id taken", takenGrant.ID, randomHash(), cl, u, store.ErrAlreadyExists, false},
			{"code hash taken", "g-hash", taken.Hash, cl, u, store.ErrAlreadyExists, true},
		}
		for _, tt := range tests {
			c, g := pair(tt.grantID, tt.hash, tt.client, tt.user)
			wantErr(t, "CreateAuthCode with "+tt.name, e.s.CreateAuthCode(e.ctx, c, g), tt.want)
			if tt.grantID != takenGrant.ID {
				_, err := e.s.GetGrant(e.ctx, tt.grantID)
				wantErr(t, tt.name+": the refused grant", err, store.ErrNotFound)
			}
			if !tt.hashTaken {
				_, err := e.s.ConsumeAuthCode(e.ctx, tt.hash, at(time.Second), nil)
				wantErr(t, tt.name+": the refused code", err, store.ErrNotFound)
			}
		}
		// What was there before is untouched: the grant as stored, its
		// code redeemable once.
		equal(t, "the existing grant", e.getGrant(takenGrant.ID), takenGrant, canonGrant)
		got, err := e.s.ConsumeAuthCode(e.ctx, taken.Hash, at(time.Second), nil)
		e.must(err, "ConsumeAuthCode of the existing code")
		equal(t, "the existing code", got, taken, canonCode)
	})

	// The redemption and the refresh token it yields are one transaction.
	t.Run("RedeemStoresTheRefreshToken", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		c, g := e.code(e.client("c1").ID, e.user("u1").ID)
		now := at(10 * time.Second)
		rt := store.RefreshToken{ID: randomID("rt"), Hash: randomHash(), GrantID: g.ID, ClientID: c.ClientID, CreatedAt: now, ExpiresAt: at(idleTTL)}
		var seen store.AuthCode
		got, err := e.s.ConsumeAuthCode(e.ctx, c.Hash, now, func(code store.AuthCode) (store.Redemption, error) {
			seen = code
			return store.Redemption{Refresh: &rt}, nil
		})
		e.must(err, "ConsumeAuthCode with redeem")
		equal(t, "code given to redeem", seen, c, canonCode)
		equal(t, "consumed code", got, c, canonCode)
		equal(t, "stored refresh token", e.getRefresh(rt.Hash), rt, canonRefresh)
		equalTime(t, "grant LastUsedAt", e.getGrant(g.ID).LastUsedAt, now)
	})
	t.Run("RedeemErrorSpendsTheCodeAndRevokesTheGrant", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		c, g := e.code(e.client("c1").ID, e.user("u1").ID)
		now := at(10 * time.Second)
		errCheck := errors.New("pkce mismatch")
		_, err := e.s.ConsumeAuthCode(e.ctx, c.Hash, now, func(store.AuthCode) (store.Redemption, error) { return store.Redemption{}, errCheck })
		if !errors.Is(err, errCheck) {
			t.Fatalf("err = %v, want redeem's own error", err)
		}
		equalTime(t, "RevokedAt", e.getGrant(g.ID).RevokedAt, now)
		// The retry finds the code spent and its grant already revoked:
		// this presentation revokes nothing (no token was ever issued).
		got, err := e.s.ConsumeAuthCode(e.ctx, c.Hash, at(20*time.Second), nil)
		wantErr(t, "the code after a failed redemption", err, store.ErrCodeSpent)
		equal(t, "code returned with ErrCodeSpent", got, store.ReplayedCode(e.getGrant(g.ID)), canonCode)
		equalTime(t, "RevokedAt after the retry", e.getGrant(g.ID).RevokedAt, now)
	})
	t.Run("FailedTokenInsertLeavesTheCodeRedeemable", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		c, g := e.code(e.client("c1").ID, e.user("u1").ID)
		_, taken := e.grantRT(e.client("c2").ID, e.user("u2").ID) // its hash is already stored
		now := at(10 * time.Second)
		dup := store.RefreshToken{ID: randomID("rt"), Hash: taken.Hash, GrantID: g.ID, ClientID: c.ClientID, CreatedAt: now, ExpiresAt: at(idleTTL)}
		_, err := e.s.ConsumeAuthCode(e.ctx, c.Hash, now, func(store.AuthCode) (store.Redemption, error) { return store.Redemption{Refresh: &dup}, nil })
		wantErr(t, "storing a refresh token whose hash exists", err, store.ErrAlreadyExists)
		// Nothing happened: the code is still good and the grant unused.
		stored := e.getGrant(g.ID)
		if !stored.LastUsedAt.IsZero() || !stored.RevokedAt.IsZero() {
			t.Fatalf("grant after a rolled-back redemption: LastUsedAt=%v RevokedAt=%v", stored.LastUsedAt, stored.RevokedAt)
		}
		_, err = e.s.ConsumeAuthCode(e.ctx, c.Hash, at(20*time.Second), nil)
		e.must(err, "ConsumeAuthCode retry")
	})

	// RFC 6749 §4.1.2: a code used twice must be refused, and the
	// authorization server should revoke the tokens issued from it.
	t.Run("ReuseRevokesTheGrant", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		g, rt := e.grantRT(e.client("c1").ID, e.user("u1").ID)

		replay := at(2 * time.Minute)
		_, err := e.s.ConsumeAuthCode(e.ctx, g.CodeHash, replay, nil)
		wantErr(t, "ConsumeAuthCode replay", err, store.ErrCodeReused)

		got := e.getGrant(g.ID)
		equalTime(t, "RevokedAt after replay", got.RevokedAt, replay)
		equalTime(t, "LastUsedAt after replay", got.LastUsedAt, g.LastUsedAt)
		_, err = e.s.RotateRefreshToken(e.ctx, rt.Hash, at(3*time.Minute), grace, successor(at(3*time.Minute)))
		wantErr(t, "rotating a token of the replayed code's grant", err, store.ErrGrantRevoked)

		// A third presentation finds the grant already revoked: it is
		// spent, revokes nothing, and the revocation instant stays the
		// first one.
		_, err = e.s.ConsumeAuthCode(e.ctx, g.CodeHash, at(4*time.Minute), nil)
		wantErr(t, "ConsumeAuthCode third time", err, store.ErrCodeSpent)
		equalTime(t, "RevokedAt after a third presentation", e.getGrant(g.ID).RevokedAt, replay)
	})

	// A code presented again whose grant has no live token revokes
	// nothing: it answers ErrCodeSpent with the grant it names, and writes
	// nothing (the grant's RevokedAt stays what it was). Only a replay
	// while tokens of the grant are live is ErrCodeReused (above).
	t.Run("SpentCodeRevokesNothing", func(t *testing.T) {
		t.Parallel()
		for _, tt := range []struct {
			name string
			// prepare spends the code and returns when to present it again.
			prepare func(e *env, c store.AuthCode, g store.Grant) time.Time
		}{
			{"after a redemption that failed its checks", func(e *env, c store.AuthCode, _ store.Grant) time.Time {
				_, err := e.s.ConsumeAuthCode(e.ctx, c.Hash, at(time.Second), func(store.AuthCode) (store.Redemption, error) {
					return store.Redemption{}, errRefused
				})
				wantErr(t, "the failed redemption", err, errRefused)
				return at(2 * time.Second)
			}},
			{"after the user revoked the redeemed grant", func(e *env, c store.AuthCode, g store.Grant) time.Time {
				e.redeemRT(c, g, time.Time{})
				e.must(e.s.RevokeGrant(e.ctx, g.ID, at(time.Minute)), "RevokeGrant")
				return at(2 * time.Minute)
			}},
			{"after the redeemed grant's lifetime", func(e *env, c store.AuthCode, g store.Grant) time.Time {
				e.redeemRT(c, g, time.Time{})
				return g.ExpiresAt
			}},
			{"after it expired unredeemed", func(e *env, c store.AuthCode, _ store.Grant) time.Time {
				_, err := e.s.ConsumeAuthCode(e.ctx, c.Hash, c.ExpiresAt, nil)
				wantErr(t, "the expired code", err, store.ErrExpired)
				return c.ExpiresAt.Add(time.Second)
			}},
		} {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, newStore)
				c, g := e.code(e.client("c1").ID, e.user("u1").ID)
				now := tt.prepare(e, c, g)
				before := e.getGrant(g.ID)
				got, err := e.s.ConsumeAuthCode(e.ctx, c.Hash, now, nil)
				wantErr(t, "the spent code presented again", err, store.ErrCodeSpent)
				equal(t, "code returned with ErrCodeSpent", got, store.ReplayedCode(before), canonCode)
				equal(t, "grant after the spent code", e.getGrant(g.ID), before, canonGrant)
			})
		}
	})

	t.Run("ExpiryBoundary", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			name string
			now  time.Time
			want error
		}{
			{"one microsecond before ExpiresAt", at(codeTTL - time.Microsecond), nil},
			{"at ExpiresAt", at(codeTTL), store.ErrExpired},
			{"after ExpiresAt", at(codeTTL + time.Hour), store.ErrExpired},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, newStore)
				c, g := e.code(e.client("c1").ID, e.user("u1").ID)
				_, err := e.s.ConsumeAuthCode(e.ctx, c.Hash, tt.now, nil)
				wantErr(t, "ConsumeAuthCode", err, tt.want)
				if tt.want == nil {
					equalTime(t, "LastUsedAt", e.getGrant(g.ID).LastUsedAt, tt.now)
					return
				}
				// An expired code is deleted: it never works again, even
				// presented with an earlier clock, and its grant was never used.
				_, err = e.s.ConsumeAuthCode(e.ctx, c.Hash, base, nil)
				wantOneOf(t, "ConsumeAuthCode of a deleted expired code", err, store.ErrNotFound, store.ErrCodeSpent, store.ErrExpired)
				if got, err := e.s.GetGrant(e.ctx, g.ID); err == nil && !got.LastUsedAt.IsZero() {
					t.Errorf("grant of an expired code has LastUsedAt %v, want zero", got.LastUsedAt)
				}
			})
		}
	})

	t.Run("GrantNotActive", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			name  string
			opts  []grantOpt
			setup func(e *env, g store.Grant)
			now   time.Time
		}{
			{
				name:  "revoked before consume",
				setup: func(e *env, g store.Grant) { e.must(e.s.RevokeGrant(e.ctx, g.ID, at(time.Second)), "RevokeGrant") },
				now:   at(2 * time.Second),
			},
			{
				// ErrGrantRevoked covers a grant past its absolute lifetime
				// too, even when the code itself is still live.
				name: "grant lifetime over at consume",
				opts: []grantOpt{grantExpiresAt(at(10 * time.Second))},
				now:  at(10 * time.Second),
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, newStore)
				c, g := e.code(e.client("c1").ID, e.user("u1").ID, tt.opts...)
				if tt.setup != nil {
					tt.setup(e, g)
				}
				_, err := e.s.ConsumeAuthCode(e.ctx, c.Hash, tt.now, nil)
				wantErr(t, "ConsumeAuthCode", err, store.ErrGrantRevoked)
				if got := e.getGrant(g.ID); !got.LastUsedAt.IsZero() {
					t.Errorf("LastUsedAt = %v, want zero: the code was refused", got.LastUsedAt)
				}
				list, err := e.s.ListUserGrants(e.ctx, "u1", tt.now)
				e.must(err, "ListUserGrants")
				if len(list) != 0 {
					t.Errorf("ListUserGrants = %v, want none", grantIDs(list))
				}
			})
		}
	})

	t.Run("CodesAreIndependent", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		cl, u := e.client("c1"), e.user("u1")
		c1, g1 := e.code(cl.ID, u.ID)
		c2, g2 := e.code(cl.ID, u.ID)
		_, err := e.s.ConsumeAuthCode(e.ctx, c1.Hash, at(time.Second), nil)
		e.must(err, "ConsumeAuthCode c1")
		_, err = e.s.ConsumeAuthCode(e.ctx, c1.Hash, at(2*time.Second), nil)
		wantErr(t, "ConsumeAuthCode c1 again", err, store.ErrCodeReused)
		// Replaying c1 revokes g1 only.
		got, err := e.s.ConsumeAuthCode(e.ctx, c2.Hash, at(3*time.Second), nil)
		e.must(err, "ConsumeAuthCode c2")
		equal(t, "code 2", got, c2, canonCode)
		if e.getGrant(g1.ID).RevokedAt.IsZero() {
			t.Errorf("grant 1 not revoked after its code was replayed")
		}
		if r := e.getGrant(g2.ID).RevokedAt; !r.IsZero() {
			t.Errorf("grant 2 RevokedAt = %v, want zero", r)
		}
	})
}

func testGrants(t *testing.T, newStore factory) {
	t.Run("ListUserGrants", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		c1, c2 := e.client("c1").ID, e.client("c2").ID
		u1, u2 := e.user("u1").ID, e.user("u2").ID
		now := at(10 * time.Minute)

		// Redeemed in the opposite order of creation: "newest" is by
		// CreatedAt, not by LastUsedAt.
		longCode := codeExpiresAt(at(time.Hour))
		oldestCode, oldest := e.code(c1, u1, grantCreatedAt(at(-2*time.Hour)), grantExpiresAt(at(grantTTL)), longCode)
		newestCode, newest := e.code(c2, u1, grantCreatedAt(at(2*time.Minute)), longCode)
		middleCode, middle := e.code(c1, u1, grantCreatedAt(at(time.Minute)), longCode) // the same client again: a second device
		for i, c := range []store.AuthCode{newestCode, middleCode, oldestCode} {
			_, err := e.s.ConsumeAuthCode(e.ctx, c.Hash, at(3*time.Minute+time.Duration(i)*time.Second), nil)
			e.must(err, "ConsumeAuthCode")
		}
		newest.LastUsedAt = at(3 * time.Minute)
		_, pending := e.code(c1, u1, grantCreatedAt(at(3*time.Minute)), codeExpiresAt(at(time.Hour)))
		revoked := e.grant(c1, u1, grantCreatedAt(at(4*time.Minute)))
		e.must(e.s.RevokeGrant(e.ctx, revoked.ID, at(5*time.Minute)), "RevokeGrant")
		expired := e.grant(c1, u1, grantCreatedAt(at(5*time.Minute)), grantExpiresAt(now))
		other := e.grant(c1, u2, grantCreatedAt(at(6*time.Minute)))

		got, err := e.s.ListUserGrants(e.ctx, u1, now)
		e.must(err, "ListUserGrants u1")
		if ids, want := grantIDs(got), grantIDs([]store.Grant{newest, middle, oldest}); !slices.Equal(ids, want) {
			t.Errorf("ListUserGrants(u1) = %v, want %v (not pending %s, revoked %s, expired %s, other user's %s)",
				ids, want, pending.ID, revoked.ID, expired.ID, other.ID)
		}
		if len(got) == 3 {
			equal(t, "listed grant", got[0], newest, canonGrant)
		}

		// One microsecond earlier the short-lived grant is still live.
		got, err = e.s.ListUserGrants(e.ctx, u1, now.Add(-time.Microsecond))
		e.must(err, "ListUserGrants before expiry")
		if ids, want := grantIDs(got), grantIDs([]store.Grant{expired, newest, middle, oldest}); !slices.Equal(ids, want) {
			t.Errorf("ListUserGrants(u1) just before expiry = %v, want %v", ids, want)
		}

		got, err = e.s.ListUserGrants(e.ctx, "nobody", now)
		e.must(err, "ListUserGrants unknown user")
		if len(got) != 0 {
			t.Errorf("ListUserGrants(nobody) = %v, want none", grantIDs(got))
		}
	})

	// A user may hold several grants for one client (one per device);
	// revoking one must leave the other working.
	t.Run("TwoDevicesRevokeOne", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		c, u := e.client("c1").ID, e.user("u1").ID
		phone, phoneRT := e.grantRT(c, u)
		laptop, laptopRT := e.grantRT(c, u, grantCreatedAt(at(time.Second)))

		now := at(time.Minute)
		e.must(e.s.RevokeGrant(e.ctx, phone.ID, now), "RevokeGrant phone")
		_, err := e.s.RotateRefreshToken(e.ctx, phoneRT.Hash, now, grace, successor(now))
		wantErr(t, "rotate phone token", err, store.ErrGrantRevoked)
		rot := e.rotate(laptopRT.Hash, now, grace)
		if rot.Grant.ID != laptop.ID {
			t.Errorf("rotation grant = %s, want %s", rot.Grant.ID, laptop.ID)
		}
		got, err := e.s.ListUserGrants(e.ctx, u, now)
		e.must(err, "ListUserGrants")
		if ids := grantIDs(got); !slices.Equal(ids, []string{laptop.ID}) {
			t.Errorf("ListUserGrants = %v, want [%s]", ids, laptop.ID)
		}
	})

	t.Run("RevokeIsIdempotent", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		g := e.grant(e.client("c1").ID, e.user("u1").ID)
		first := at(time.Minute)
		e.must(e.s.RevokeGrant(e.ctx, g.ID, first), "RevokeGrant")
		e.must(e.s.RevokeGrant(e.ctx, g.ID, at(time.Hour)), "RevokeGrant again")
		want := g
		want.RevokedAt = first
		equal(t, "grant revoked twice", e.getGrant(g.ID), want, canonGrant)
		if e.getGrant(g.ID).Active(first) {
			t.Errorf("revoked grant reports Active")
		}
	})
}
