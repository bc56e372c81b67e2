-- ID-token keys rotate with the access-token keys (`authz keys rotate`):
-- they become rows of signing_keys, under the same rules of publication,
-- activation and retirement, told apart by purpose. A purpose is the set a
-- rotation retires within: 'access_token' (whatever the algorithm, which
-- the operator may change), or 'id_token:<alg>' (one current key per
-- algorithm, since each client picks its ID tokens' algorithm).

ALTER TABLE signing_keys ADD COLUMN purpose text NOT NULL DEFAULT 'access_token';
ALTER TABLE signing_keys ALTER COLUMN purpose DROP DEFAULT;

-- The ID-token keys made so far have signed since their creation and are
-- still current.
INSERT INTO signing_keys (id, algorithm, public_jwk, encrypted_private_key, created_at, activates_at, retired_at, purpose)
    SELECT id, algorithm, public_jwk, encrypted_private_key, created_at, created_at, NULL, 'id_token:' || algorithm
    FROM id_token_keys;
DROP TABLE id_token_keys;
