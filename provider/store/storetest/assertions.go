package storetest

import (
	"testing"
	"time"

	"github.com/authzd/authz/provider/store"
)

// testClientAssertions pins UseClientAssertion, the single-use gate of
// private_key_jwt (RFC 7523 §3 item 7): insert-if-absent in one operation.
func testClientAssertions(t *testing.T, newStore factory) {
	assertion := func(client string, exp time.Time) store.ClientAssertion {
		return store.ClientAssertion{ClientID: client, JTIHash: randomHash(), ExpiresAt: exp}
	}
	exp := at(5 * time.Minute)

	t.Run("SingleUse", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		a := assertion("c1", exp)
		wantErr(t, "first use", e.s.UseClientAssertion(e.ctx, a, base), nil)
		for _, tt := range []struct {
			name string
			a    store.ClientAssertion
			now  time.Time
			want error
		}{
			{"the same assertion again", a, base, store.ErrAlreadyExists},
			{"again one microsecond before it expires", a, exp.Add(-time.Microsecond), store.ErrAlreadyExists},
			{"again with a later expiry", store.ClientAssertion{ClientID: a.ClientID, JTIHash: a.JTIHash, ExpiresAt: exp.Add(time.Hour)}, base, store.ErrAlreadyExists},
			{"the same jti from another client", store.ClientAssertion{ClientID: "c2", JTIHash: a.JTIHash, ExpiresAt: exp}, base, nil},
			{"another jti from the same client", assertion("c1", exp), base, nil},
		} {
			wantErr(t, tt.name, e.s.UseClientAssertion(e.ctx, tt.a, tt.now), tt.want)
		}
	})

	// A record that has expired but is not yet swept counts as absent: the
	// answer never depends on when the janitor last ran.
	t.Run("ExpiredRecordIsAbsent", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		a := assertion("c1", exp)
		wantErr(t, "first use", e.s.UseClientAssertion(e.ctx, a, base), nil)
		later := exp.Add(time.Minute)
		again := store.ClientAssertion{ClientID: a.ClientID, JTIHash: a.JTIHash, ExpiresAt: later}
		wantErr(t, "use at its expiry", e.s.UseClientAssertion(e.ctx, again, exp), nil)
		wantErr(t, "the new record holds", e.s.UseClientAssertion(e.ctx, again, later.Add(-time.Microsecond)), store.ErrAlreadyExists)
	})

	t.Run("DeleteExpired", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		now := exp
		dead, live := assertion("c1", now), assertion("c1", now.Add(time.Microsecond))
		wantErr(t, "use dead", e.s.UseClientAssertion(e.ctx, dead, base), nil)
		wantErr(t, "use live", e.s.UseClientAssertion(e.ctx, live, base), nil)
		n, err := e.s.DeleteExpired(e.ctx, now)
		e.must(err, "DeleteExpired")
		if n != 1 {
			t.Errorf("DeleteExpired removed %d records, want 1 (the expired assertion)", n)
		}
		// Asked with an earlier clock, so "gone" cannot be mistaken for
		// "expired".
		wantErr(t, "the live one is still recorded", e.s.UseClientAssertion(e.ctx, live, base), store.ErrAlreadyExists)
		wantErr(t, "the swept one is gone", e.s.UseClientAssertion(e.ctx, dead, base), nil)
	})

	// However many requests race with one assertion, exactly one is
	// accepted; the same holds when they race to take over an expired
	// record.
	t.Run("Race", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		fresh := assertion("c1", exp)
		stale := assertion("c1", base.Add(time.Second))
		wantErr(t, "use stale", e.s.UseClientAssertion(e.ctx, stale, base), nil)
		takeover := store.ClientAssertion{ClientID: stale.ClientID, JTIHash: stale.JTIHash, ExpiresAt: exp}
		for name, a := range map[string]store.ClientAssertion{"new": fresh, "expired": takeover} {
			errs := race(func(int) error { return e.s.UseClientAssertion(e.ctx, a, at(time.Minute)) })
			n, other := count(errs, store.ErrAlreadyExists)
			if n["ok"] != 1 || n[store.ErrAlreadyExists.Error()] != racers-1 {
				t.Errorf("%s record: outcomes %v (first unexpected error: %v), want 1 ok and %d ErrAlreadyExists", name, n, other, racers-1)
			}
		}
	})
}
