-- authz schema, version 6: client trust levels and shared rate limits.
--
-- trust records how a client came to exist (admin: the CLI; registered:
-- RFC 7591; metadata-document: a client ID metadata document). Clients that
-- hold a registration access token were self-registered; every other
-- existing client was made by an administrator. IF NOT EXISTS: the trust
-- levels change (0005) adds the same column; whichever runs first makes it.
-- No default afterwards: every insert says how its client came to exist.
ALTER TABLE clients ADD COLUMN IF NOT EXISTS trust text NOT NULL DEFAULT 'admin';
UPDATE clients SET trust = 'registered' WHERE registration_token_hash IS NOT NULL AND trust = 'admin';
ALTER TABLE clients ALTER COLUMN trust DROP DEFAULT;

-- Fixed-window counters shared by every replica: failed logins per
-- (account, client IP) and per client IP, registrations per client IP.
-- A hit after expires_at restarts the window (the SQL never calls now()).
CREATE TABLE rate_counters (
    key        text PRIMARY KEY,
    count      integer NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX rate_counters_expires_at ON rate_counters (expires_at);
