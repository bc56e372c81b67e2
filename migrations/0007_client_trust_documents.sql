-- Client trust levels and client ID metadata documents.
--
-- trust records how a client came to exist ('admin', 'registered',
-- 'metadata-document'); rows made before it are the administrator's or
-- self-registered (those have a registration access token). IF NOT EXISTS:
-- another change adds the same column, and either may be applied first.
ALTER TABLE clients ADD COLUMN IF NOT EXISTS trust text NOT NULL DEFAULT 'admin';
UPDATE clients SET trust = 'registered' WHERE trust = 'admin' AND registration_token_hash IS NOT NULL;

-- For a metadata-document client (its id is the document's https URL):
-- when the cached document must be fetched again.
ALTER TABLE clients ADD COLUMN IF NOT EXISTS document_expires_at timestamptz;
