package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/authzd/authz/provider/store"
	"github.com/authzd/authz/provider/store/postgres"
	"github.com/authzd/authz/provider/store/postgres/pgtest"
)

// The audit table is append-only: an UPDATE, even straight through SQL,
// changes nothing (migration 0009).
func TestAuditEventsAppendOnly(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	s := postgres.New(pool)
	ctx := context.Background()
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := s.AppendAuditEvent(ctx, store.AuditEvent{Time: at, Name: "login.failed", Actor: "user", Subject: "u1", Outcome: "failed"}); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `UPDATE audit_events SET subject = 'someone-else', outcome = 'ok'`); err != nil {
		t.Fatal(err)
	}
	evs, err := s.ListAuditEvents(ctx, store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Subject != "u1" || evs[0].Outcome != "failed" {
		t.Errorf("after an UPDATE: %+v, want the event unchanged", evs)
	}
}
