-- Used private_key_jwt client assertions (RFC 7523 §3 item 7: a jti is
-- accepted once). Their own table: they used to share revoked_access_tokens
-- through a read followed by a write, which let concurrent copies of one
-- assertion all pass. The primary key makes the check and the record one
-- INSERT … ON CONFLICT. No foreign key to clients: a row lives minutes, and
-- a deleted client's assertions fail authentication anyway.
CREATE TABLE client_assertions (
    client_id  text        NOT NULL,
    jti_hash   bytea       NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (client_id, jti_hash)
);
CREATE INDEX client_assertions_expires_at ON client_assertions (expires_at);
