package provider

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/authzd/authz/provider/store"
	"github.com/authzd/authz/provider/tokens"
)

// Audit event names: one per security-relevant action, stable (operators
// alert on them), each emitted once by the action itself. README,
// "Operating authz", documents every one with its fields.
const (
	EventLoginSucceeded   = "login.succeeded"
	EventLoginFailed      = "login.failed"
	EventLoginThrottled   = "login.throttled"
	EventLogout           = "logout"
	EventConsentGranted   = "consent.granted"
	EventConsentDenied    = "consent.denied"
	EventGrantCreated     = "grant.created"
	EventGrantRevoked     = "grant.revoked"
	EventCodeReplayed     = "code.replayed"
	EventCodeRefused      = "code.refused"
	EventRefreshReused    = "refresh.reused"
	EventTokenRevoked     = "token.revoked"
	EventClientRegistered = "client.registered"
	EventClientUpdated    = "client.updated"
	EventClientDeleted    = "client.deleted"
	EventKeyRotated       = "key.rotated"
	EventLockoutCleared   = "lockout.cleared"
	EventUserDeleted      = "user.deleted"
)

// EventNames are every audit event name above, in the order listed: what
// `authz audit list --event` accepts.
var EventNames = []string{
	EventLoginSucceeded, EventLoginFailed, EventLoginThrottled, EventLogout,
	EventConsentGranted, EventConsentDenied, EventGrantCreated, EventGrantRevoked,
	EventCodeReplayed, EventCodeRefused, EventRefreshReused, EventTokenRevoked, EventClientRegistered,
	EventClientUpdated, EventClientDeleted, EventKeyRotated, EventLockoutCleared, EventUserDeleted,
}

// Actors.
const (
	ActorUser   = "user"
	ActorClient = "client"
	ActorAdmin  = "admin"
	ActorSystem = "system"
)

// auditWriteTimeout bounds recording one event, which outlives the request
// (a client hanging up must not erase the trail of what it did).
const auditWriteTimeout = 5 * time.Second

// Audit records e twice: as a structured slog record ("audit", at INFO) and
// as a row of the store's append-only trail. A failure to store it is
// logged with the event (which the log line then still carries) and does
// not undo the action, which has happened. cmd/authz uses it for the
// administrator's actions; the server for everything else.
func Audit(ctx context.Context, st store.Store, log *slog.Logger, e store.AuditEvent) {
	attrs := logAudit(ctx, log, e)
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), auditWriteTimeout)
	defer cancel()
	if err := st.AppendAuditEvent(wctx, e); err != nil {
		log.LogAttrs(ctx, slog.LevelError, "audit event not stored", append(attrs, slog.Any("cause", err))...)
	}
}

// logAudit writes e's "audit" log line and returns its attributes.
func logAudit(ctx context.Context, log *slog.Logger, e store.AuditEvent) []slog.Attr {
	attrs := []slog.Attr{slog.String("event", e.Name), slog.String("actor", e.Actor)}
	for _, kv := range [][2]string{{"subject", e.Subject}, {"client_id", e.ClientID}, {"client_ip", e.ClientIP}, {"outcome", e.Outcome}} {
		if kv[1] != "" {
			attrs = append(attrs, slog.String(kv[0], kv[1]))
		}
	}
	// The request's own log lines get request_id from its context; an event
	// recorded outside a request (the CLI) has none.
	if e.RequestID != "" && requestID(ctx) == "" {
		attrs = append(attrs, slog.String("request_id", e.RequestID))
	}
	for _, k := range slices.Sorted(maps.Keys(e.Details)) {
		attrs = append(attrs, slog.String(k, e.Details[k]))
	}
	log.LogAttrs(ctx, slog.LevelInfo, "audit", attrs...)
	return attrs
}

// auditEvent completes e as an event of the request ctx belongs to: at
// now (the server's clock), with the request's id and client IP.
func auditEvent(ctx context.Context, e store.AuditEvent, now time.Time) store.AuditEvent {
	e.Time = now
	if ri := infoFrom(ctx); ri != nil {
		e.RequestID, e.ClientIP = ri.id, ri.ip.String()
	}
	if e.Outcome == "" {
		e.Outcome = "ok"
	}
	return e
}

// audit records an event of the request ctx belongs to, at the server's
// clock, with the request's id and client IP.
func (s *Server) audit(ctx context.Context, e store.AuditEvent) {
	e = auditEvent(ctx, e, s.opts.Now())
	s.metrics.audit.WithLabelValues(e.Name).Inc()
	Audit(ctx, s.store, s.log, e)
}

// audited emits the log line and the metric of events a store operation
// has already recorded with the action itself (ConsumeAuthCode's
// grant.created), once that operation has succeeded.
func (s *Server) audited(ctx context.Context, events []store.AuditEvent) {
	for _, e := range events {
		s.metrics.audit.WithLabelValues(e.Name).Inc()
		logAudit(ctx, s.log, e)
	}
}

// pruneAudit is the janitor job enforcing AUTHZ_AUDIT_RETENTION.
func (s *Server) pruneAudit(ctx context.Context, now time.Time) error {
	n, err := s.store.DeleteAuditEventsBefore(ctx, now.Add(-s.opts.AuditRetention))
	if err != nil {
		return err
	}
	s.log.Debug("deleted old audit events", "count", n)
	return nil
}

// refreshReused records a refresh token replayed after the grace window:
// refresh.reused, and grant.revoked (reason reuse_detected) for the grant
// the store revoked. The grant is looked up by the token's hash; this is
// the rare path, so one more read is cheap.
func (s *Server) refreshReused(ctx context.Context, c store.Client, token string) {
	e := store.AuditEvent{Name: EventRefreshReused, Actor: ActorClient, ClientID: c.ID, Outcome: "grant_revoked"}
	_, g, err := s.store.GetRefreshToken(ctx, tokens.Hash(token))
	if err == nil {
		e.Subject, e.Details = g.UserID, map[string]string{"grant_id": g.ID}
	}
	s.audit(ctx, e)
	if err == nil {
		s.audit(ctx, store.AuditEvent{Name: EventGrantRevoked, Actor: ActorSystem, Subject: g.UserID, ClientID: c.ID,
			Details: map[string]string{"grant_id": g.ID, "reason": "reuse_detected"}})
	}
}

// codeRefused reports a code exchange that failed one of its checks (r
// says which), after the store spent the code and revoked its grant.
//
// WARN, as a replay is: a code presented by another client, to another
// redirect_uri or without its verifier is what an attacker holding an
// intercepted or injected code does (RFC 7636 §1, RFC 9700 §4.5), and
// this line is the only trace of the attempt; a grant was also revoked,
// which its user will notice. The log and the event carry the fixed
// reason, never the code, the verifier or anything else the request sent.
//
// The event cannot grow the trail without bound: a code fails its checks
// at most once (the same transaction deletes it; a retry is ErrCodeSpent,
// which records nothing), so there is at most one per code issued, and
// codes are issued only on a signed-in user's consent.
func (s *Server) codeRefused(ctx context.Context, c store.Client, r *codeRefusal) {
	s.log.WarnContext(ctx, "authorization code refused: it failed a check, so it is spent and its grant revoked",
		"client_id", c.ID, "grant_id", r.grantID, "reason", r.reason)
	s.audit(ctx, store.AuditEvent{Name: EventCodeRefused, Actor: ActorClient, Subject: r.userID, ClientID: c.ID, Outcome: "grant_revoked",
		Details: map[string]string{"grant_id": r.grantID, "reason": r.reason}})
}

// loginAttempt records a sign-in attempt (event is login.succeeded or
// login.failed) in the audit trail and the metrics.
// userID is empty when the account is unknown or was not looked up; the
// name typed is kept as a detail, never the password.
func (s *Server) loginAttempt(ctx context.Context, event, userID, username string) {
	outcome := map[string]string{EventLoginSucceeded: "ok", EventLoginFailed: "failed"}[event]
	s.metrics.logins.WithLabelValues(outcome).Inc()
	s.audit(ctx, store.AuditEvent{Name: event, Actor: ActorUser, Subject: userID, Outcome: outcome,
		Details: map[string]string{"username": username}})
}

func consentEvent(name string, user store.User, req *authorizeRequest) store.AuditEvent {
	return store.AuditEvent{Name: name, Actor: ActorUser, Subject: user.ID, ClientID: req.client.ID,
		Outcome: map[string]string{EventConsentGranted: "ok", EventConsentDenied: "denied"}[name],
		Details: map[string]string{"scope": strings.Join(req.scopes, " "), "resource": strings.Join(req.resources, " ")}}
}

// clientTrust is the trust level recorded for c: store.Trust*, or
// "untrusted" when none is set (the provider treats it as such).
func clientTrust(c store.Client) string {
	if c.Trust == "" {
		return "untrusted"
	}
	return c.Trust
}

// ClientEvent is a client.registered / client.updated / client.deleted
// event for c; cmd/authz records the administrator's with ActorAdmin.
// Client deletion revokes every grant of the client, which the event says.
func ClientEvent(name, actor string, c store.Client) store.AuditEvent {
	d := map[string]string{"trust": clientTrust(c), "client_name": c.Metadata.Name}
	if name == EventClientDeleted {
		d["grants"] = "revoked"
	}
	return store.AuditEvent{Name: name, Actor: actor, ClientID: c.ID, Outcome: "ok", Details: d}
}
