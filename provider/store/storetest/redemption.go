package storetest

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/authzd/authz/provider/store"
)

// A code exchange's audit events (grant.created) are stored by
// ConsumeAuthCode with the redemption itself: an event exists if and only
// if the code was spent and the grant created (issue 13: the event takes
// no round trip or commit of its own, and can never be left behind by a
// redemption that did not happen).
func testRedemptionEvents(t *testing.T, newStore factory) {
	event := func(c store.AuthCode, requestID string) store.AuditEvent {
		return store.AuditEvent{
			Time: at(10 * time.Second), Name: "grant.created", Actor: "user", Subject: c.UserID, ClientID: c.ClientID,
			ClientIP: "192.0.2.7", RequestID: requestID, Outcome: "ok",
			Details: map[string]string{"grant_id": c.GrantID, "scope": "openid read"},
		}
	}
	// redeemWith stores a refresh token for c's grant and the event.
	redeemWith := func(c store.AuthCode, e store.AuditEvent) store.RedeemFunc {
		return func(code store.AuthCode) (store.Redemption, error) {
			rt := store.RefreshToken{ID: randomID("rt"), Hash: randomHash(), GrantID: code.GrantID, ClientID: code.ClientID,
				CreatedAt: e.Time, ExpiresAt: e.Time.Add(idleTTL)}
			return store.Redemption{Refresh: &rt, Events: []store.AuditEvent{e}}, nil
		}
	}
	events := func(e *env) []store.AuditEvent {
		e.t.Helper()
		evs, err := e.s.ListAuditEvents(e.ctx, store.AuditFilter{})
		e.must(err, "ListAuditEvents")
		return evs
	}

	t.Run("StoredWithAGoodRedemption", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		c, _ := e.code(e.client("c1").ID, e.user("u1").ID)
		want := event(c, "req-good")
		_, err := e.s.ConsumeAuthCode(e.ctx, c.Hash, want.Time, redeemWith(c, want))
		e.must(err, "ConsumeAuthCode")
		got := events(e)
		if len(got) != 1 {
			t.Fatalf("events after a good redemption: %d, want 1", len(got))
		}
		if got[0].ID == 0 || !got[0].Time.Equal(want.Time) {
			t.Errorf("stored event has ID %d, time %v; want an ID and %v", got[0].ID, got[0].Time, want.Time)
		}
		want.ID, want.Time = got[0].ID, got[0].Time
		if !reflect.DeepEqual(got[0], want) {
			t.Errorf("stored event = %+v, want %+v", got[0], want)
		}
		// It is one of the trail's events like any other: a later append
		// gets a later ID.
		later := event(c, "req-later")
		e.must(e.s.AppendAuditEvent(e.ctx, later), "AppendAuditEvent")
		if got = events(e); len(got) != 2 || got[1].RequestID != "req-later" || got[1].ID <= got[0].ID {
			t.Errorf("after one more append: %+v, want the redemption's event then the appended one", got)
		}
	})

	// Every way a redemption does not happen leaves no event, whatever
	// redeem asked to store.
	for _, tt := range []struct {
		name string
		// prepare returns the code to present and the instant to present it.
		prepare func(e *env) (store.AuthCode, time.Time)
		// redeem wraps the redemption that would store the event; taken
		// is a refresh token hash that is already stored.
		redeem func(r store.RedeemFunc, taken []byte) store.RedeemFunc
		want   error
	}{
		{
			name: "redeem refuses the code",
			prepare: func(e *env) (store.AuthCode, time.Time) {
				c, _ := e.code(e.client("c1").ID, e.user("u1").ID)
				return c, at(10 * time.Second)
			},
			redeem: func(store.RedeemFunc, []byte) store.RedeemFunc {
				return func(store.AuthCode) (store.Redemption, error) {
					return store.Redemption{Events: []store.AuditEvent{{Time: at(10 * time.Second), Name: "grant.created"}}}, errRefused
				}
			},
			want: errRefused,
		},
		{
			name: "the refresh token cannot be stored (the transaction rolls back)",
			prepare: func(e *env) (store.AuthCode, time.Time) {
				c, _ := e.code(e.client("c1").ID, e.user("u1").ID)
				return c, at(10 * time.Second)
			},
			redeem: func(r store.RedeemFunc, taken []byte) store.RedeemFunc {
				return func(c store.AuthCode) (store.Redemption, error) {
					red, err := r(c)
					red.Refresh.Hash = taken
					return red, err
				}
			},
			want: store.ErrAlreadyExists,
		},
		{
			name: "code reused",
			prepare: func(e *env) (store.AuthCode, time.Time) {
				c, _ := e.code(e.client("c1").ID, e.user("u1").ID)
				_, err := e.s.ConsumeAuthCode(e.ctx, c.Hash, at(time.Second), nil)
				e.must(err, "ConsumeAuthCode, first time")
				return c, at(10 * time.Second)
			},
			want: store.ErrCodeReused,
		},
		{
			name: "code expired",
			prepare: func(e *env) (store.AuthCode, time.Time) {
				c, _ := e.code(e.client("c1").ID, e.user("u1").ID)
				return c, at(codeTTL)
			},
			want: store.ErrExpired,
		},
		{
			name: "grant revoked",
			prepare: func(e *env) (store.AuthCode, time.Time) {
				c, g := e.code(e.client("c1").ID, e.user("u1").ID)
				e.must(e.s.RevokeGrant(e.ctx, g.ID, at(time.Second)), "RevokeGrant")
				return c, at(10 * time.Second)
			},
			want: store.ErrGrantRevoked,
		},
		{
			name: "unknown code",
			prepare: func(e *env) (store.AuthCode, time.Time) {
				return store.AuthCode{Hash: randomHash(), ClientID: "c1", UserID: "u1", GrantID: "none"}, at(10 * time.Second)
			},
			want: store.ErrNotFound,
		},
	} {
		t.Run("NoneWhen/"+tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, newStore)
			c, now := tt.prepare(e)
			redeem := redeemWith(c, event(c, "req-"+tt.name))
			if tt.redeem != nil {
				_, taken := e.grantRT(e.client("c2").ID, e.user("u2").ID)
				redeem = tt.redeem(redeem, taken.Hash)
			}
			_, err := e.s.ConsumeAuthCode(e.ctx, c.Hash, now, redeem)
			wantErr(t, "ConsumeAuthCode", err, tt.want)
			if got := events(e); len(got) != 0 {
				t.Errorf("events after a redemption that did not happen: %+v, want none", got)
			}
		})
	}

	// A rolled-back redemption leaves the code redeemable; the retry that
	// succeeds records the event once.
	t.Run("RetryAfterARollbackStoresOneEvent", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		c, _ := e.code(e.client("c1").ID, e.user("u1").ID)
		_, taken := e.grantRT(e.client("c2").ID, e.user("u2").ID)
		ev := event(c, "req-retry")
		good := redeemWith(c, ev)
		_, err := e.s.ConsumeAuthCode(e.ctx, c.Hash, ev.Time, func(code store.AuthCode) (store.Redemption, error) {
			red, err := good(code)
			red.Refresh.Hash = taken.Hash
			return red, err
		})
		wantErr(t, "ConsumeAuthCode with a taken refresh token hash", err, store.ErrAlreadyExists)
		_, err = e.s.ConsumeAuthCode(e.ctx, c.Hash, ev.Time, good)
		e.must(err, "ConsumeAuthCode retry")
		if got := events(e); len(got) != 1 || got[0].RequestID != "req-retry" {
			t.Errorf("events after a rolled-back redemption and its retry: %+v, want one", got)
		}
	})

	// A replayed code revokes its grant, and the store says which.
	t.Run("ReplayNamesTheRevokedGrant", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		g, _ := e.grantRT(e.client("c1").ID, e.user("u1").ID)
		got, err := e.s.ConsumeAuthCode(e.ctx, g.CodeHash, at(2*time.Minute), nil)
		wantErr(t, "ConsumeAuthCode replay", err, store.ErrCodeReused)
		want := store.AuthCode{Hash: g.CodeHash, GrantID: g.ID, ClientID: g.ClientID, UserID: g.UserID, Scopes: g.Scopes, Resources: g.Resources}
		equal(t, "code returned with ErrCodeReused", got, want, canonCode)
		if !e.getGrant(g.ID).RevokedAt.Equal(at(2 * time.Minute)) {
			t.Errorf("the grant named was not revoked by the replay")
		}
	})
}

var errRefused = errors.New("storetest: the caller's check failed")
