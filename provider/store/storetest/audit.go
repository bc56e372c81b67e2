package storetest

import (
	"reflect"
	"testing"
	"time"

	"github.com/authzd/authz/provider/store"
)

// The audit trail: append-only, filtered the same way by every store,
// oldest first, the newest N with a limit, pruned by age.
func testAudit(t *testing.T, newStore factory) {
	e := newEnv(t, newStore)
	ev := func(d time.Duration, name, subject, client string) store.AuditEvent {
		return store.AuditEvent{
			Time: at(d), Name: name, Actor: "user", Subject: subject, ClientID: client,
			ClientIP: "192.0.2.1", RequestID: "req-" + name, Outcome: "ok",
			Details: map[string]string{"grant_id": "g-1"},
		}
	}
	all := []store.AuditEvent{
		ev(0, "login.succeeded", "alice", ""),
		ev(time.Minute, "consent.granted", "alice", "app-1"),
		ev(time.Minute, "grant.created", "alice", "app-1"), // same instant: ID orders
		ev(2*time.Minute, "login.failed", "bob", ""),
		ev(3*time.Minute, "grant.created", "bob", "app-2"),
	}
	for _, a := range all {
		e.must(e.s.AppendAuditEvent(e.ctx, a), "AppendAuditEvent "+a.Name)
	}
	names := func(evs []store.AuditEvent) []string {
		var out []string
		for _, x := range evs {
			out = append(out, x.Name+"/"+x.Subject)
		}
		return out
	}
	for _, tt := range []struct {
		name string
		f    store.AuditFilter
		want []string
	}{
		{"everything, oldest first", store.AuditFilter{}, []string{"login.succeeded/alice", "consent.granted/alice", "grant.created/alice", "login.failed/bob", "grant.created/bob"}},
		{"since, inclusive", store.AuditFilter{Since: at(time.Minute)}, []string{"consent.granted/alice", "grant.created/alice", "login.failed/bob", "grant.created/bob"}},
		{"subject", store.AuditFilter{Subject: "bob"}, []string{"login.failed/bob", "grant.created/bob"}},
		{"client", store.AuditFilter{ClientID: "app-1"}, []string{"consent.granted/alice", "grant.created/alice"}},
		{"event", store.AuditFilter{Name: "grant.created"}, []string{"grant.created/alice", "grant.created/bob"}},
		{"all filters", store.AuditFilter{Since: at(time.Minute), Subject: "alice", ClientID: "app-1", Name: "grant.created"}, []string{"grant.created/alice"}},
		{"limit keeps the newest", store.AuditFilter{Limit: 2}, []string{"login.failed/bob", "grant.created/bob"}},
		{"no match", store.AuditFilter{Subject: "carol"}, nil},
	} {
		got, err := e.s.ListAuditEvents(e.ctx, tt.f)
		e.must(err, "ListAuditEvents "+tt.name)
		if !reflect.DeepEqual(names(got), tt.want) {
			t.Errorf("ListAuditEvents %s = %v, want %v", tt.name, names(got), tt.want)
		}
	}

	got, err := e.s.ListAuditEvents(e.ctx, store.AuditFilter{Name: "login.succeeded"})
	e.must(err, "ListAuditEvents login.succeeded")
	if len(got) != 1 {
		t.Fatalf("login.succeeded events = %d, want 1", len(got))
	}
	want := all[0]
	want.ID = got[0].ID
	if got[0].ID == 0 || !got[0].Time.Equal(want.Time) {
		t.Errorf("stored event has ID %d, time %v; want an ID and %v", got[0].ID, got[0].Time, want.Time)
	}
	got[0].Time = want.Time
	if !reflect.DeepEqual(got[0], want) {
		t.Errorf("stored event = %+v, want %+v", got[0], want)
	}

	// Retention: strictly before the cut-off goes, at it stays.
	n, err := e.s.DeleteAuditEventsBefore(e.ctx, at(time.Minute))
	e.must(err, "DeleteAuditEventsBefore")
	if n != 1 {
		t.Errorf("DeleteAuditEventsBefore removed %d events, want 1", n)
	}
	left, err := e.s.ListAuditEvents(e.ctx, store.AuditFilter{})
	e.must(err, "ListAuditEvents after pruning")
	if len(left) != 4 || left[0].Name != "consent.granted" {
		t.Errorf("after pruning: %v, want the 4 events from base+1m on", names(left))
	}
}

// CountLive counts clients, and grants that are redeemed, not revoked and
// within their lifetime.
func testCountLive(t *testing.T, newStore factory) {
	e := newEnv(t, newStore)
	c := e.client("count-client")
	u := e.user("count-user")
	live := e.grant(c.ID, u.ID)
	revoked := e.grant(c.ID, u.ID)
	e.must(e.s.RevokeGrant(e.ctx, revoked.ID, at(redeemAt)), "RevokeGrant")
	e.code(c.ID, u.ID) // never redeemed: not counted
	got, err := e.s.CountLive(e.ctx, at(redeemAt))
	e.must(err, "CountLive")
	if got != (store.Counts{Clients: 1, LiveGrants: 1}) {
		t.Errorf("CountLive = %+v, want 1 client and 1 live grant", got)
	}
	got, err = e.s.CountLive(e.ctx, live.ExpiresAt)
	e.must(err, "CountLive at the grant's expiry")
	if got.LiveGrants != 0 {
		t.Errorf("CountLive at the grant's expiry counts %d live grants, want 0", got.LiveGrants)
	}
}
