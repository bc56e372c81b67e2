-- The janitor sweeps client ID metadata document clients by the same rule
-- as self-registered ones (store.ClientStale over store.SweptTrusts):
-- anyone can publish documents at new URLs, so abandoned rows must not
-- pile up. The partial index on used_at that serves DeleteStaleClients
-- covered only 'registered'; its predicate is now the same trust list the
-- statement names, so the planner keeps using it.
CREATE INDEX clients_swept_used_at ON clients (used_at) WHERE trust IN ('registered', 'metadata-document');
DROP INDEX clients_registered_used_at;
