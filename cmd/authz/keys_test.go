package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authzd/authz/provider/store"
	"github.com/authzd/authz/provider/store/postgres"
	"github.com/authzd/authz/provider/store/postgres/pgtest"
	"github.com/authzd/authz/provider/tokens"
)

// wrongEncryptionKey is 32 bytes other than testEncryptionKey's.
const wrongEncryptionKey = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="

// storeFirstIDTokenKey stores what a server stores the first time it signs
// an ID token of alg: that algorithm's first key, sealed with encKeyB64.
func storeFirstIDTokenKey(t *testing.T, dbURL, alg, encKeyB64 string) string {
	t.Helper()
	encKey, err := base64.StdEncoding.DecodeString(encKeyB64)
	if err != nil {
		t.Fatal(err)
	}
	k, err := tokens.GenerateIDTokenKey(rand.Reader, alg)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := k.PublicJWK()
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := tokens.EncryptPrivateKey(k, encKey, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := postgres.New(pool).CreateFirstSigningKey(context.Background(), store.SigningKey{
		ID: k.ID, Algorithm: alg, Purpose: store.IDTokenPurpose(alg), PublicJWK: pub, EncryptedPrivateKey: sealed, CreatedAt: time.Now(),
	}); err != nil {
		t.Fatal(err)
	}
	return k.ID
}

// TestKeysRotateRefusesUndecryptableIDTokenKey: `keys rotate` checks the
// ID-token keys as it checks the access-token keys: one it cannot decrypt
// with its AUTHZ_ENCRYPTION_KEY stops the whole rotation, named in the
// message, before any key changes.
func TestKeysRotateRefusesUndecryptableIDTokenKey(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.URL(t)
	env := []string{"AUTHZ_DATABASE_URL=" + dbURL, "AUTHZ_ENCRYPTION_KEY=" + testEncryptionKey}
	if _, stderr, code := runCmd(t, env, "", "migrate"); code != 0 {
		t.Fatalf("migrate: %s", stderr)
	}
	// An access-token key and an RS256 ID-token key the command can
	// decrypt, and an ES256 ID-token key sealed with another key.
	storeFirstIDTokenKey(t, dbURL, "RS256", testEncryptionKey)
	bad := storeFirstIDTokenKey(t, dbURL, "ES256", wrongEncryptionKey)
	before, _, code := runCmd(t, env, "", "keys", "list")
	if code != 0 || strings.Count(before, "\n") != 3 {
		t.Fatalf("keys list before: %d\n%s", code, before)
	}
	out, stderr, code := runCmd(t, env, "", "keys", "rotate")
	if code == 0 || !strings.Contains(stderr, "AUTHZ_ENCRYPTION_KEY") || !strings.Contains(stderr, bad) || strings.Contains(out, "new key") {
		t.Fatalf("keys rotate with an ID-token key it cannot decrypt: %d %q %s", code, out, stderr)
	}
	if after, _, _ := runCmd(t, env, "", "keys", "list"); after != before {
		t.Fatalf("a refused rotation changed the keys:\n%s\nbefore:\n%s", after, before)
	}
}

// TestKeysRotateOnAnEmptyDatabase: `keys rotate` before any server ran makes
// the only access-token key; with no key to hand over from it signs at
// once, and `keys list` says so (it showed "pending" while it already
// signed). A server started afterwards signs with it and makes no other.
func TestKeysRotateOnAnEmptyDatabase(t *testing.T) {
	t.Parallel()
	env := []string{"AUTHZ_DATABASE_URL=" + pgtest.URL(t), "AUTHZ_ENCRYPTION_KEY=" + testEncryptionKey}
	if out, stderr, code := runCmd(t, env, "", "migrate"); code != 0 {
		t.Fatalf("migrate: %d %s %s", code, out, stderr)
	}
	if out, stderr, code := runCmd(t, env, "", "keys", "rotate"); code != 0 {
		t.Fatalf("keys rotate: %d %s %s", code, out, stderr)
	}
	out, stderr, code := runCmd(t, env, "", "keys", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 || !strings.Contains(lines[1], "access tokens") || !strings.Contains(lines[1], "signing") {
		t.Fatalf("keys list after rotating on an empty database: %d %q %s", code, out, stderr)
	}
	kid := strings.Fields(lines[1])[0]
	s := launchServer(t, env)
	s.waitHealthy(t)
	defer s.stop(t)
	if out, _, _ := runCmd(t, env, "", "keys", "list"); strings.Count(out, "\n") != 2 || !strings.Contains(out, kid) {
		t.Fatalf("the server made another key:\n%s", out)
	}
}

// thirdEncryptionKey is 32 bytes other than the two above.
const thirdEncryptionKey = "cXdlcnR5dWlvcGFzZGZnaGprbHp4Y3Zibm0xMjM0NTY="

// sealedKeys is every signing key's ciphertext, by ID.
func sealedKeys(t *testing.T, dbURL string) map[string]string {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	keys, err := postgres.New(pool).ListSigningKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, k := range keys {
		out[k.ID] = string(k.EncryptedPrivateKey)
	}
	return out
}

// TestKeysReencrypt: after the encryption key changed from A to B, `keys
// reencrypt` with A as a previous key re-seals the signing key a server on
// A made, after which a server with only B starts; given a wrong previous
// key it refuses and changes nothing. A server with B alone refuses to
// start before, and one with B and A previous starts and says to run the
// command.
func TestKeysReencrypt(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.URL(t)
	envA := []string{"AUTHZ_DATABASE_URL=" + dbURL, "AUTHZ_ENCRYPTION_KEY=" + testEncryptionKey}
	if _, stderr, code := runCmd(t, envA, "", "migrate"); code != 0 {
		t.Fatalf("migrate: %s", stderr)
	}
	s := startServer(t, envA)
	s.stop(t)
	onlyB := []string{"AUTHZ_DATABASE_URL=" + dbURL, "AUTHZ_ENCRYPTION_KEY=" + wrongEncryptionKey}
	if _, stderr, code := runCmd(t, onlyB, "", "serve"); code == 0 || !strings.Contains(stderr, "AUTHZ_ENCRYPTION_KEY") {
		t.Fatalf("serve with only B before re-encrypting: %d %s", code, stderr)
	}
	bWithA := append(slices.Clone(onlyB), "AUTHZ_PREVIOUS_ENCRYPTION_KEYS="+testEncryptionKey)
	s = startServer(t, bWithA)
	s.stop(t)
	if log := s.stderr.String(); !strings.Contains(log, "keys reencrypt") || strings.Contains(log, testEncryptionKey) {
		t.Fatalf("serve with B and A previous: no warning to re-encrypt, or a key logged:\n%s", log)
	}

	before := sealedKeys(t, dbURL)
	wrong := append(slices.Clone(onlyB), "AUTHZ_PREVIOUS_ENCRYPTION_KEYS="+thirdEncryptionKey)
	out, stderr, code := runCmd(t, wrong, "", "keys", "reencrypt")
	if code == 0 || !strings.Contains(stderr, "AUTHZ_PREVIOUS_ENCRYPTION_KEYS") || strings.Contains(stderr, thirdEncryptionKey) {
		t.Fatalf("keys reencrypt with a wrong previous key: %d %q %s", code, out, stderr)
	}
	if after := sealedKeys(t, dbURL); !maps.Equal(after, before) {
		t.Fatal("a refused keys reencrypt changed the stored keys")
	}

	out, stderr, code = runCmd(t, bWithA, "", "keys", "reencrypt")
	if code != 0 || !strings.Contains(out, "re-sealed 1 signing keys") {
		t.Fatalf("keys reencrypt: %d %q %s", code, out, stderr)
	}
	if after := sealedKeys(t, dbURL); len(after) != len(before) || maps.Equal(after, before) {
		t.Fatalf("keys reencrypt: %d keys after, %d before, changed: %v", len(after), len(before), !maps.Equal(after, before))
	}
	s = startServer(t, onlyB)
	s.stop(t)
	if out, _, code := runCmd(t, bWithA, "", "keys", "reencrypt"); code != 0 || !strings.Contains(out, "re-sealed 0 signing keys") {
		t.Fatalf("keys reencrypt again: %d %q", code, out)
	}
}
