package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/authzd/authz/provider/store"
)

// ---- Audit trail (migration 0009) ----

// SQLInsertAuditEvent records one audit event; AuditEventArgs are its
// arguments. AppendAuditEvent sends it alone; ConsumeAuthCode queues it in
// its write round trip, so a code exchange's grant.created commits with
// the grant (issue 13), and cmd/authz-load's bound_code mode sends it there
// too.
const SQLInsertAuditEvent = `INSERT INTO audit_events (at, event, actor, subject, client_id, client_ip, request_id, outcome, details)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`

// AuditEventArgs are SQLInsertAuditEvent's arguments for e.
func AuditEventArgs(e store.AuditEvent) ([]any, error) {
	details := e.Details
	if details == nil {
		details = map[string]string{}
	}
	doc, err := json.Marshal(details)
	if err != nil {
		return nil, fmt.Errorf("postgres: audit details: %w", err)
	}
	return []any{tsArg(e.Time), e.Name, e.Actor, e.Subject, e.ClientID, e.ClientIP, e.RequestID, e.Outcome, doc}, nil
}

func (s *Store) AppendAuditEvent(ctx context.Context, e store.AuditEvent) error {
	args, err := AuditEventArgs(e)
	if err != nil {
		return err
	}
	_, err = s.pool.Exec(ctx, SQLInsertAuditEvent, args...)
	return wrap(err)
}

func (s *Store) ListAuditEvents(ctx context.Context, f store.AuditFilter) ([]store.AuditEvent, error) {
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if !f.Since.IsZero() {
		add("at >= $%d", ts(f.Since))
	}
	if f.Subject != "" {
		add("subject = $%d", f.Subject)
	}
	if f.ClientID != "" {
		add("client_id = $%d", f.ClientID)
	}
	if f.Name != "" {
		add("event = $%d", f.Name)
	}
	q := `SELECT id, at, event, actor, subject, client_id, client_ip, request_id, outcome, details FROM audit_events`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	// With a limit, the newest events are wanted; they are returned oldest first.
	q += " ORDER BY at DESC, id DESC"
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, wrap(err)
	}
	defer rows.Close()
	var out []store.AuditEvent
	for rows.Next() {
		var e store.AuditEvent
		var doc []byte
		if err := rows.Scan(&e.ID, &e.Time, &e.Name, &e.Actor, &e.Subject, &e.ClientID, &e.ClientIP, &e.RequestID, &e.Outcome, &doc); err != nil {
			return nil, wrap(err)
		}
		e.Time = e.Time.UTC()
		if err := json.Unmarshal(doc, &e.Details); err != nil {
			return nil, fmt.Errorf("postgres: audit details: %w", err)
		}
		if len(e.Details) == 0 {
			e.Details = nil
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap(err)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

func (s *Store) DeleteAuditEventsBefore(ctx context.Context, t time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM audit_events WHERE at < $1`, ts(t))
	if err != nil {
		return 0, wrap(err)
	}
	return tag.RowsAffected(), nil
}

func (s *Store) CountLive(ctx context.Context, now time.Time) (store.Counts, error) {
	var c store.Counts
	err := s.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM clients),
		(SELECT count(*) FROM grants WHERE last_used_at IS NOT NULL AND revoked_at IS NULL AND expires_at > $1)`, ts(now)).
		Scan(&c.Clients, &c.LiveGrants)
	return c, wrap(err)
}
