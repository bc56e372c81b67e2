-- Client ID Metadata Documents.
--
-- A metadata-document client (trust 'metadata-document', see 0006) has the
-- document's https URL as its id and is kept only as long as the document's
-- HTTP cache lifetime allows: document_expires_at is when it must be
-- fetched again. NULL for every other client.
ALTER TABLE clients ADD COLUMN document_expires_at timestamptz;
