-- OpenID Connect: standard claims on users, upstream identities, the
-- nonce and auth_time an ID token needs, and ID-token signing keys.

ALTER TABLE users
    ADD COLUMN name           text    NOT NULL DEFAULT '',
    ADD COLUMN email          text    NOT NULL DEFAULT '',
    ADD COLUMN email_verified boolean NOT NULL DEFAULT false,
    ADD COLUMN provider       text    NOT NULL DEFAULT '';
-- Linking by verified email looks users up by address.
CREATE INDEX users_email ON users (lower(email)) WHERE email_verified;

-- (provider, subject) identifies a person at an upstream provider; the
-- subject is never reassigned to another local user.
CREATE TABLE user_identities (
    provider   text NOT NULL,
    subject    text NOT NULL,
    user_id    text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (provider, subject)
);
CREATE INDEX user_identities_user_id ON user_identities (user_id);

ALTER TABLE auth_codes
    ADD COLUMN nonce     text NOT NULL DEFAULT '',
    ADD COLUMN auth_time timestamptz;
ALTER TABLE grants
    ADD COLUMN auth_time timestamptz;

-- One ID-token key per algorithm (RS256 by default, ES256 and EdDSA on a
-- client's request), sealed with AUTHZ_ENCRYPTION_KEY like signing_keys.
CREATE TABLE id_token_keys (
    algorithm             text PRIMARY KEY,
    id                    text NOT NULL UNIQUE,
    public_jwk            jsonb NOT NULL,
    encrypted_private_key bytea NOT NULL,
    created_at            timestamptz NOT NULL
);
