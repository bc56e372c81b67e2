-- The audit trail (README, "Operating authz"): one row per security-relevant
-- action, never a secret. Append-only: rows are inserted, and deleted only
-- by age (AUTHZ_AUDIT_RETENTION, the janitor); an UPDATE changes nothing.
CREATE TABLE audit_events (
    id         bigserial   PRIMARY KEY,
    at         timestamptz NOT NULL,
    event      text        NOT NULL,
    actor      text        NOT NULL DEFAULT '',
    subject    text        NOT NULL DEFAULT '',
    client_id  text        NOT NULL DEFAULT '',
    client_ip  text        NOT NULL DEFAULT '',
    request_id text        NOT NULL DEFAULT '',
    outcome    text        NOT NULL DEFAULT '',
    details    jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_at ON audit_events (at, id);
CREATE INDEX audit_events_subject ON audit_events (subject, at) WHERE subject <> '';
CREATE INDEX audit_events_client ON audit_events (client_id, at) WHERE client_id <> '';

-- A rule, not a trigger function: it belongs to the table alone (no
-- schema-wide object to collide with), and makes an UPDATE change nothing.
CREATE RULE audit_events_append_only AS ON UPDATE TO audit_events DO INSTEAD NOTHING;
