package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authzd/authz/provider/store"
)

// racers is how many goroutines each race uses.
const racers = 50

// race runs f(i) for i in [0, racers) at once, released together so they
// really contend, and returns their errors by index.
func race(f func(i int) error) []error {
	errs := make([]error, racers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() {
			<-start
			errs[i] = f(i)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

// count tallies errors: nil under "ok", sentinels by name, anything else as
// "other" (with the first such error kept for the message).
func count(errs []error, sentinels ...error) (map[string]int, error) {
	n := map[string]int{}
	var other error
outer:
	for _, err := range errs {
		if err == nil {
			n["ok"]++
			continue
		}
		for _, s := range sentinels {
			if errors.Is(err, s) {
				n[s.Error()]++
				continue outer
			}
		}
		n["other"]++
		if other == nil {
			other = err
		}
	}
	return n, other
}

func testConcurrency(t *testing.T, newStore factory) {
	// The single-use gate (RFC 6749 §4.1.2): however many requests race
	// with one code, exactly one gets tokens; the first replay after it
	// revokes the grant, and the rest find it already revoked.
	t.Run("ConsumeOneCode", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		c, g := e.code(e.client("c1").ID, e.user("u1").ID)
		now := at(time.Second)
		errs := race(func(int) error {
			_, err := e.s.ConsumeAuthCode(e.ctx, c.Hash, now, nil)
			return err
		})
		n, other := count(errs, store.ErrCodeReused, store.ErrCodeSpent)
		if n["ok"] != 1 || n[store.ErrCodeReused.Error()] != 1 || n[store.ErrCodeSpent.Error()] != racers-2 {
			t.Fatalf("outcomes %v (first unexpected error: %v), want 1 ok, 1 ErrCodeReused and %d ErrCodeSpent", n, other, racers-2)
		}
		got := e.getGrant(g.ID)
		equalTime(t, "LastUsedAt", got.LastUsedAt, now)
		equalTime(t, "RevokedAt", got.RevokedAt, now)
	})

	// RFC 7592 §2.2: updates racing with one registration token each bring
	// a new token; exactly one is stored, and the client holds the
	// winner's token, not a loser's.
	t.Run("UpdateRegisteredClientOnce", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		c := e.client("c1")
		next := make([][]byte, racers)
		var edits atomic.Int32
		errs := race(func(i int) error {
			next[i] = randomHash()
			_, err := e.s.UpdateRegisteredClient(e.ctx, "c1", c.RegistrationTokenHash, next[i], func(c *store.Client) error {
				edits.Add(1)
				c.Metadata.Name, c.UpdatedAt = fmt.Sprint("racer ", i), at(time.Hour)
				return nil
			})
			return err
		})
		n, other := count(errs, store.ErrNotFound)
		if n["ok"] != 1 || n[store.ErrNotFound.Error()] != racers-1 {
			t.Fatalf("outcomes %v (first unexpected error: %v), want 1 ok and %d ErrNotFound", n, other, racers-1)
		}
		if edits.Load() != 1 {
			t.Fatalf("%d edits ran, want only the winner's", edits.Load())
		}
		got, err := e.s.GetClient(e.ctx, "c1")
		e.must(err, "GetClient")
		for i, err := range errs {
			if err == nil && (!bytes.Equal(got.RegistrationTokenHash, next[i]) || got.Metadata.Name != fmt.Sprint("racer ", i)) {
				t.Fatal("the stored client is not the winner's")
			}
		}
	})

	// An administrator's updates racing a client's RFC 7592 update: the
	// client's rotation of its registration token survives every one of
	// them (none writes back the hash it found), and no administrator's
	// change is lost to another's (each is decided on the client as stored).
	t.Run("UpdateClientRacingRegisteredUpdate", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		c := e.client("c1")
		rotated := randomHash()
		var after atomic.Int32
		errs := race(func(i int) error {
			if i == racers/2 {
				_, err := e.s.UpdateRegisteredClient(e.ctx, "c1", c.RegistrationTokenHash, rotated, func(c *store.Client) error {
					c.Metadata.Contacts, c.UpdatedAt = nil, at(time.Hour)
					return nil
				})
				return err
			}
			_, err := e.s.UpdateClient(e.ctx, "c1", func(c *store.Client) error {
				if bytes.Equal(c.RegistrationTokenHash, rotated) {
					after.Add(1)
				}
				c.SecretHash, c.UpdatedAt = randomHash(), at(2*time.Hour)
				c.Metadata.Contacts = append(c.Metadata.Contacts, fmt.Sprint("admin-", i))
				return nil
			})
			return err
		})
		if n, other := count(errs); n["ok"] != racers {
			t.Fatalf("outcomes %v (first error: %v), want %d ok", n, other, racers)
		}
		got, err := e.s.GetClient(e.ctx, "c1")
		e.must(err, "GetClient")
		if !bytes.Equal(got.RegistrationTokenHash, rotated) {
			t.Fatal("an administrator's update wrote back the registration token hash the client's update had spent")
		}
		// The client's update replaces the metadata (RFC 7592 §2.2), so
		// what remains are the administrators' changes decided after it
		// (they saw its token hash): all of them, none lost to another.
		if int(after.Load()) != len(got.Metadata.Contacts) {
			t.Fatalf("contacts %v: want the %d administrators' changes made after the client's update", got.Metadata.Contacts, after.Load())
		}
	})

	// RFC 7592 §2.2 and §2.3: a delete and updates racing with one
	// registration token; exactly one of them wins, the others are refused
	// like a wrong token, and the outcome is the winner's.
	t.Run("DeleteOrUpdateWithOneToken", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		c := e.client("c1")
		next := make([][]byte, racers)
		errs := race(func(i int) error {
			if i%2 == 0 {
				return e.s.DeleteRegisteredClient(e.ctx, "c1", c.RegistrationTokenHash)
			}
			next[i] = randomHash()
			_, err := e.s.UpdateRegisteredClient(e.ctx, "c1", c.RegistrationTokenHash, next[i], func(c *store.Client) error {
				c.UpdatedAt = at(time.Hour)
				return nil
			})
			return err
		})
		n, other := count(errs, store.ErrNotFound)
		if n["ok"] != 1 || n[store.ErrNotFound.Error()] != racers-1 {
			t.Fatalf("outcomes %v (first unexpected error: %v), want 1 ok and %d ErrNotFound", n, other, racers-1)
		}
		got, err := e.s.GetClient(e.ctx, "c1")
		for i, werr := range errs {
			switch {
			case werr != nil:
			case i%2 == 0:
				wantErr(t, "GetClient after the delete won", err, store.ErrNotFound)
			default:
				e.must(err, "GetClient after an update won")
				if !bytes.Equal(got.RegistrationTokenHash, next[i]) {
					t.Fatal("the stored registration token is not the winning update's")
				}
			}
		}
	})

	// An administrator narrows a self-registered client's allowances
	// (`authz client update --scope/--resource/--introspect`) while its
	// RFC 7592 updates race with one registration token. Whatever the
	// order, the client never regains an allowance the administrator
	// removed: an update that runs after the narrowing decides on the
	// narrowed client; one that ran before is narrowed after. A contract
	// that takes a client built from a read made before the update's store
	// operation writes the wider allowances back when the narrowing lands
	// in between. Several rounds, so both orders occur.
	t.Run("RegisteredUpdateRacingNarrowing", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		const rounds = 8
		orders := map[bool]int{} // did the winning update see the narrowing?
		for round := range rounds {
			c := e.client(fmt.Sprint("c", round))
			admin := (round % 2) * (racers - 1) // first or last to start
			next := make([][]byte, racers)
			saw := make([]bool, racers)
			errs := race(func(i int) error {
				if i == admin {
					_, err := e.s.UpdateClient(e.ctx, c.ID, narrowAllowances(at(time.Minute)))
					return err
				}
				next[i] = randomHash()
				_, err := e.s.UpdateRegisteredClient(e.ctx, c.ID, c.RegistrationTokenHash, next[i], func(s *store.Client) error {
					saw[i] = widerThanNarrowed(*s) == ""
					selfUpdate(c.Metadata, fmt.Sprint("racer ", i), at(time.Hour))(s)
					return nil
				})
				return err
			})
			n, other := count(errs, store.ErrNotFound)
			if n["ok"] != 2 || n[store.ErrNotFound.Error()] != racers-2 || errs[admin] != nil {
				t.Fatalf("round %d: outcomes %v (first unexpected error: %v), want the narrowing and one update ok, %d ErrNotFound",
					round, n, other, racers-2)
			}
			got, err := e.s.GetClient(e.ctx, c.ID)
			e.must(err, "GetClient")
			if msg := widerThanNarrowed(got); msg != "" {
				t.Fatalf("round %d: after the race %s, and the client has it again: scopes %v, resources %v, introspect %v",
					round, msg, got.Metadata.Scopes, got.Metadata.Resources, got.Metadata.Introspect)
			}
			for i, err := range errs {
				if err == nil && i != admin {
					orders[saw[i]]++
					if !bytes.Equal(got.RegistrationTokenHash, next[i]) || got.Metadata.Name != fmt.Sprint("racer ", i) {
						t.Fatalf("round %d: the stored client is not the winning update's (name %q)", round, got.Metadata.Name)
					}
				}
			}
		}
		t.Logf("winning updates that ran after the narrowing: %d, before it: %d", orders[true], orders[false])
	})

	t.Run("ConsumeDifferentCodes", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		cl, u := e.client("c1"), e.user("u1")
		codes := make([]store.AuthCode, racers)
		for i := range codes {
			codes[i], _ = e.code(cl.ID, u.ID)
		}
		now := at(time.Second)
		errs := race(func(i int) error {
			got, err := e.s.ConsumeAuthCode(e.ctx, codes[i].Hash, now, nil)
			if err == nil && got.GrantID != codes[i].GrantID {
				return errors.New("consumed the wrong code: grant " + got.GrantID)
			}
			return err
		})
		if n, other := count(errs); n["ok"] != racers {
			t.Fatalf("outcomes %v (first error: %v), want %d ok", n, other, racers)
		}
		list, err := e.s.ListUserGrants(e.ctx, u.ID, now)
		e.must(err, "ListUserGrants")
		if len(list) != racers {
			t.Errorf("ListUserGrants = %d grants, want %d", len(list), racers)
		}
	})

	// With a grace window, a burst of refreshes with one token (a client
	// retrying, several tabs) all succeed; exactly one is the win.
	t.Run("RotateOneTokenWithGrace", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		g, rt := e.grantRT(e.client("c1").ID, e.user("u1").ID)
		now := at(time.Hour)
		rots := make([]store.Rotation, racers)
		errs := race(func(i int) error {
			var err error
			rots[i], err = e.s.RotateRefreshToken(e.ctx, rt.Hash, now, 30*time.Second, successor(now))
			return err
		})
		if n, other := count(errs); n["ok"] != racers {
			t.Fatalf("outcomes %v (first error: %v), want %d ok", n, other, racers)
		}
		wins := 0
		seen := map[string]bool{}
		var winner store.Rotation
		for _, r := range rots {
			if !r.WithinGrace {
				wins++
				winner = r
			}
			seen[r.New.ID] = true
		}
		if wins != 1 {
			t.Errorf("%d rotations with WithinGrace=false, want exactly 1", wins)
		}
		// One successor per token: every racer got the winner's.
		if len(seen) != 1 {
			t.Errorf("%d distinct successors, want 1", len(seen))
		}
		equalTime(t, "old token RotatedAt", e.getRefresh(rt.Hash).RotatedAt, now)
		later := now.Add(time.Second)
		rot, err := e.s.RotateRefreshToken(e.ctx, winner.New.Hash, later, 30*time.Second, successor(later))
		if err != nil || rot.WithinGrace {
			t.Errorf("the successor: rotate = WithinGrace %v, error %v; want a win", rot.WithinGrace, err)
		}
		if r := e.getGrant(g.ID).RevokedAt; !r.IsZero() {
			t.Errorf("grant revoked at %v", r)
		}
	})

	// Without a grace window the second presentation is reuse (RFC 9700
	// §4.14.2) and revokes the grant; racers that come later find the grant
	// revoked, which the contract checks first, so they may see either error.
	t.Run("RotateOneTokenWithoutGrace", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		g, rt := e.grantRT(e.client("c1").ID, e.user("u1").ID)
		now := at(time.Hour)
		rots := make([]store.Rotation, racers)
		errs := race(func(i int) error {
			var err error
			rots[i], err = e.s.RotateRefreshToken(e.ctx, rt.Hash, now, 0, successor(now))
			return err
		})
		n, other := count(errs, store.ErrRefreshReused, store.ErrGrantRevoked)
		if n["ok"] != 1 || n[store.ErrRefreshReused.Error()] < 1 || n["other"] != 0 {
			t.Fatalf("outcomes %v (first unexpected error: %v), want 1 ok, at least one ErrRefreshReused, the rest ErrGrantRevoked",
				n, other)
		}
		if e.getGrant(g.ID).RevokedAt.IsZero() {
			t.Fatalf("grant not revoked after reuse")
		}
		for i, r := range rots {
			if errs[i] != nil {
				continue
			}
			_, err := e.s.RotateRefreshToken(e.ctx, r.New.Hash, now.Add(time.Second), 0, successor(now))
			wantErr(t, "rotating the winner's successor", err, store.ErrGrantRevoked)
		}
	})
}
