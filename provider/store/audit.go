package store

import (
	"context"
	"time"
)

// AuditEvent is one security-relevant action, as recorded in the append-only
// audit trail (README, "Operating authz"). It never carries a secret: no
// password, code, token or client secret, only identifiers.
type AuditEvent struct {
	// ID orders events recorded at the same instant; the store assigns it.
	ID   int64
	Time time.Time
	// Name is the stable event name, e.g. "login.succeeded".
	Name string
	// Actor is who acted: "user", "client", "admin" or "system".
	Actor string
	// Subject is the user the event is about (user ID), if any.
	Subject   string
	ClientID  string
	ClientIP  string
	RequestID string
	// Outcome is "ok", "failed", "denied", … (event-specific, documented).
	Outcome string
	// Details are further identifiers (grant ID, trust level, reason).
	Details map[string]string
}

// AuditFilter selects events for ListAuditEvents. Zero fields match all.
type AuditFilter struct {
	Since    time.Time // events at or after Since
	Subject  string
	ClientID string
	Name     string
	Limit    int // 0: no limit
}

// Counts are the live numbers an operator watches as gauges.
type Counts struct {
	Clients    int64
	LiveGrants int64 // redeemed, not revoked, within their lifetime
}

// AuditLog is the append-only audit trail. Events are never updated; they
// are deleted only by age (retention).
type AuditLog interface {
	// AppendAuditEvent records e. Its ID is assigned by the store.
	AppendAuditEvent(ctx context.Context, e AuditEvent) error
	// ListAuditEvents returns the events f selects, oldest first (by Time,
	// then ID); with a Limit, the newest Limit of them, still oldest first.
	ListAuditEvents(ctx context.Context, f AuditFilter) ([]AuditEvent, error)
	// DeleteAuditEventsBefore removes events recorded before t and returns
	// how many it removed.
	DeleteAuditEventsBefore(ctx context.Context, t time.Time) (int64, error)
	// CountLive returns the number of clients and of live grants at now.
	CountLive(ctx context.Context, now time.Time) (Counts, error)
}

// Matches reports whether e is selected by f. Both stores use it, so the
// filter means the same everywhere.
func (f AuditFilter) Matches(e AuditEvent) bool {
	return (f.Since.IsZero() || !e.Time.Before(f.Since)) &&
		(f.Subject == "" || e.Subject == f.Subject) &&
		(f.ClientID == "" || e.ClientID == f.ClientID) &&
		(f.Name == "" || e.Name == f.Name)
}

// The audit trail under WithDeadline: appends and reads are bounded like a
// request's calls; pruning and counting are janitor work over whole tables,
// bounded like DeleteExpired.

func (w *deadlineStore) AppendAuditEvent(ctx context.Context, e AuditEvent) error {
	return w.do(ctx, func(ctx context.Context) error { return w.s.AppendAuditEvent(ctx, e) })
}

func (w *deadlineStore) ListAuditEvents(ctx context.Context, f AuditFilter) ([]AuditEvent, error) {
	return get(w, ctx, func(ctx context.Context) ([]AuditEvent, error) { return w.s.ListAuditEvents(ctx, f) })
}

func (w *deadlineStore) DeleteAuditEventsBefore(ctx context.Context, t time.Time) (int64, error) {
	return bounded(ctx, w.sweep, func(ctx context.Context) (int64, error) { return w.s.DeleteAuditEventsBefore(ctx, t) })
}

func (w *deadlineStore) CountLive(ctx context.Context, now time.Time) (Counts, error) {
	return bounded(ctx, w.sweep, func(ctx context.Context) (Counts, error) { return w.s.CountLive(ctx, now) })
}
