-- authz schema, version 1.
--
-- Secrets (client secrets, codes, refresh tokens, registration and initial
-- access tokens, session cookies) are stored only as SHA-256 digests in
-- bytea columns and looked up by them. Every timestamp is timestamptz; the
-- application passes "now" in and the SQL never calls now().

CREATE TABLE clients (
    id                      text PRIMARY KEY,
    secret_hash             bytea,
    secret_expires_at       timestamptz,
    registration_token_hash bytea,
    metadata                jsonb NOT NULL,
    created_at              timestamptz NOT NULL,
    updated_at              timestamptz NOT NULL
);

CREATE TABLE users (
    id            text PRIMARY KEY,
    username      text NOT NULL UNIQUE,
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL
);

-- One row per authorization (per device): a user may hold many grants for
-- one client, so a second device never logs the first out.
CREATE TABLE grants (
    id           text PRIMARY KEY,
    client_id    text NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    user_id      text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    scopes       text[] NOT NULL,
    resources    text[] NOT NULL,
    -- kept after the code is consumed, so a replayed code finds its grant
    code_hash    bytea NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX grants_user_id ON grants (user_id, created_at DESC);
CREATE INDEX grants_client_id ON grants (client_id);
CREATE INDEX grants_expires_at ON grants (expires_at);

CREATE TABLE auth_codes (
    hash           bytea PRIMARY KEY,
    grant_id       text NOT NULL REFERENCES grants (id) ON DELETE CASCADE,
    client_id      text NOT NULL,
    user_id        text NOT NULL,
    redirect_uri   text NOT NULL,
    code_challenge text NOT NULL,
    scopes         text[] NOT NULL,
    resources      text[] NOT NULL,
    created_at     timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL
);
CREATE INDEX auth_codes_grant_id ON auth_codes (grant_id);
CREATE INDEX auth_codes_expires_at ON auth_codes (expires_at);

CREATE TABLE refresh_tokens (
    hash       bytea PRIMARY KEY,
    id         text NOT NULL UNIQUE,
    grant_id   text NOT NULL REFERENCES grants (id) ON DELETE CASCADE,
    client_id  text NOT NULL,
    parent_id  text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    rotated_at timestamptz
);
CREATE INDEX refresh_tokens_grant_id ON refresh_tokens (grant_id);
CREATE INDEX refresh_tokens_expires_at ON refresh_tokens (expires_at);

CREATE TABLE revoked_access_tokens (
    jti        text PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
CREATE INDEX revoked_access_tokens_expires_at ON revoked_access_tokens (expires_at);

CREATE TABLE consents (
    user_id    text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id  text NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    scopes     text[] NOT NULL,
    resources  text[] NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, client_id)
);
CREATE INDEX consents_client_id ON consents (client_id);

CREATE TABLE signing_keys (
    id                    text PRIMARY KEY,
    algorithm             text NOT NULL,
    public_jwk            jsonb NOT NULL,
    -- sealed with AUTHZ_ENCRYPTION_KEY by the application
    encrypted_private_key bytea NOT NULL,
    created_at            timestamptz NOT NULL,
    retired_at            timestamptz
);

CREATE TABLE sessions (
    hash       bytea PRIMARY KEY,
    user_id    text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_user_id ON sessions (user_id);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

CREATE TABLE initial_access_tokens (
    hash       bytea PRIMARY KEY,
    created_at timestamptz NOT NULL,
    expires_at timestamptz
);
