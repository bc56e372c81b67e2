-- authz schema, version 3: signing keys are published before they sign.
--
-- `authz keys rotate` adds a key that every replica publishes at once but
-- signs with only from activates_at (at least two key-reload intervals
-- later), so no replica meets a token whose key it has not loaded yet.
-- Existing keys were signing from their creation.

ALTER TABLE signing_keys ADD COLUMN activates_at timestamptz;
UPDATE signing_keys SET activates_at = created_at;
ALTER TABLE signing_keys ALTER COLUMN activates_at SET NOT NULL;
