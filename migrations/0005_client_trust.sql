-- Issue 11: how each client came to exist, when it was last used, and the
-- administrator's policy carried by an initial access token.
--
-- trust: 'admin' (authz client create), 'registered' (RFC 7591) or
-- 'metadata-document'. Existing clients that hold a registration access
-- token came through dynamic registration; every other one was made by an
-- administrator. IF NOT EXISTS: the client ID metadata document change
-- adds the same column; whichever runs first makes it. The column has no
-- default afterwards: every insert says how its client came to exist.
ALTER TABLE clients ADD COLUMN IF NOT EXISTS trust text NOT NULL DEFAULT 'registered';
UPDATE clients SET trust = 'admin' WHERE registration_token_hash IS NULL AND trust <> 'metadata-document';
ALTER TABLE clients ALTER COLUMN trust DROP DEFAULT;

-- used_at: when the client last completed an authorization (to within a
-- day); NULL until its first. Existing clients count as used at migration
-- time, so the janitor gives them the full idle period rather than deleting
-- them as never used. (The application passes time in everywhere else; a
-- one-off backfill has no request to take it from.)
ALTER TABLE clients ADD COLUMN IF NOT EXISTS used_at timestamptz;
UPDATE clients SET used_at = clock_timestamp();
CREATE INDEX clients_registered_used_at ON clients (used_at) WHERE trust = 'registered';

ALTER TABLE initial_access_tokens
    ADD COLUMN allow_grants text[] NOT NULL DEFAULT '{}',
    ADD COLUMN scopes       text[] NOT NULL DEFAULT '{}',
    ADD COLUMN resources    text[] NOT NULL DEFAULT '{}';
