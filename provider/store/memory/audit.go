package memory

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/authzd/authz/provider/store"
)

// ---- Audit trail ----

func (s *Store) AppendAuditEvent(_ context.Context, e store.AuditEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.appendAuditLocked(e)
	return nil
}

// appendAuditLocked records e; s.mu is held (ConsumeAuthCode records its
// events under the same lock as the redemption).
func (s *Store) appendAuditLocked(e store.AuditEvent) {
	s.auditSeq++
	e.ID = s.auditSeq
	e.Time = norm(e.Time)
	e.Details = maps.Clone(e.Details)
	s.audit = append(s.audit, e)
}

func (s *Store) ListAuditEvents(_ context.Context, f store.AuditFilter) ([]store.AuditEvent, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f.Since = norm(f.Since)
	var out []store.AuditEvent
	for _, e := range s.audit {
		if f.Matches(e) {
			e.Details = maps.Clone(e.Details)
			out = append(out, e)
		}
	}
	slices.SortStableFunc(out, compareAudit)
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[len(out)-f.Limit:]
	}
	return out, nil
}

func compareAudit(a, b store.AuditEvent) int {
	if c := a.Time.Compare(b.Time); c != 0 {
		return c
	}
	switch {
	case a.ID < b.ID:
		return -1
	case a.ID > b.ID:
		return 1
	}
	return 0
}

func (s *Store) DeleteAuditEventsBefore(_ context.Context, t time.Time) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t = norm(t)
	before := len(s.audit)
	s.audit = slices.DeleteFunc(s.audit, func(e store.AuditEvent) bool { return e.Time.Before(t) })
	return int64(before - len(s.audit)), nil
}

func (s *Store) CountLive(_ context.Context, now time.Time) (store.Counts, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now = norm(now)
	c := store.Counts{Clients: int64(len(s.clients))}
	for _, g := range s.grants {
		if !g.LastUsedAt.IsZero() && g.Active(now) {
			c.LiveGrants++
		}
	}
	return c, nil
}
