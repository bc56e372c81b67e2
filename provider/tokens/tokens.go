package tokens

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
)

// Prefixes name what a secret is, so a leaked one is recognisable and a
// token of one kind is never mistaken for another.
const (
	PrefixAuthCode           = "authz_ac_"
	PrefixRefreshToken       = "authz_rt_"
	PrefixClientSecret       = "authz_cs_"
	PrefixRegistrationToken  = "authz_reg_"
	PrefixInitialAccessToken = "authz_iat_"
	PrefixSession            = "authz_ss_"
	PrefixCSRF               = "authz_csrf_"
)

// NewSecret returns prefix + base64url of 32 random bytes from r.
func NewSecret(r io.Reader, prefix string) (string, error) {
	var b [32]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", err
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// Hash is the SHA-256 of a server-made secret. Such secrets carry 256 bits
// of entropy, so a fast hash is enough and lookups stay cheap.
func Hash(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// Equal compares two digests in constant time.
func Equal(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }

// Key is a signing key pair.
type Key struct {
	ID        string
	Algorithm string
	Private   crypto.Signer
}

// GenerateKey makes an ES256 (P-256) or EdDSA (Ed25519) key; its ID is the
// RFC 7638 thumbprint of the public key.
func GenerateKey(r io.Reader, alg string) (Key, error) {
	var priv crypto.Signer
	var err error
	switch alg {
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), r)
	case "EdDSA":
		_, priv, err = ed25519.GenerateKey(r)
	default:
		return Key{}, fmt.Errorf("unsupported signing algorithm %q (want ES256 or EdDSA)", alg)
	}
	if err != nil {
		return Key{}, err
	}
	return newKey(priv, alg)
}

// GenerateIDTokenKey makes a key for ID tokens: RS256 (RSA 2048, which
// OpenID Connect Discovery §3 requires) or an access-token algorithm.
// Access tokens never use RSA.
func GenerateIDTokenKey(r io.Reader, alg string) (Key, error) {
	if alg != "RS256" {
		return GenerateKey(r, alg)
	}
	priv, err := rsa.GenerateKey(r, 2048)
	if err != nil {
		return Key{}, err
	}
	return newKey(priv, alg)
}

func newKey(priv crypto.Signer, alg string) (Key, error) {
	jwk := jose.JSONWebKey{Key: priv.Public()}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return Key{}, err
	}
	return Key{ID: base64.RawURLEncoding.EncodeToString(tp), Algorithm: alg, Private: priv}, nil
}

// PublicJWK returns the public key as a JWK with kid, alg and use.
func (k Key) PublicJWK() ([]byte, error) {
	return jose.JSONWebKey{Key: k.Private.Public(), KeyID: k.ID, Algorithm: k.Algorithm, Use: "sig"}.MarshalJSON()
}

// ParseEncryptionKey decodes a base64 encoding of exactly 32 bytes.
func ParseEncryptionKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			if len(b) != 32 {
				return nil, fmt.Errorf("the key is %d bytes, want 32 (make one with: openssl rand -base64 32)", len(b))
			}
			return b, nil
		}
	}
	return nil, errors.New("the key is not base64 (make one with: openssl rand -base64 32)")
}

// EncryptPrivateKey seals the private key with AES-256-GCM; the kid is
// bound as additional data so ciphertexts cannot be swapped between keys.
func EncryptPrivateKey(k Key, encKey []byte, r io.Reader) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.Private)
	if err != nil {
		return nil, err
	}
	gcm, err := newGCM(encKey)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, gcm.NonceSize())
	if _, err := io.ReadFull(r, nonce); err != nil {
		return nil, err
	}
	return gcm.Seal(nonce, nonce, der, []byte(k.ID)), nil
}

// DecryptPrivateKey opens what EncryptPrivateKey sealed.
func DecryptPrivateKey(id, alg string, ciphertext, encKey []byte) (Key, error) {
	gcm, err := newGCM(encKey)
	if err != nil {
		return Key{}, err
	}
	if len(ciphertext) < gcm.NonceSize() {
		return Key{}, errors.New("ciphertext too short")
	}
	der, err := gcm.Open(nil, ciphertext[:gcm.NonceSize()], ciphertext[gcm.NonceSize():], []byte(id))
	if err != nil {
		return Key{}, errors.New("decryption failed")
	}
	priv, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return Key{}, err
	}
	s, ok := priv.(crypto.Signer)
	if !ok {
		return Key{}, errors.New("not a signing key")
	}
	return Key{ID: id, Algorithm: alg, Private: s}, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	if len(key) != 32 {
		return nil, errors.New("encryption key must be 32 bytes")
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// PublicJWKSet returns a JWK Set document of the given public JWKs.
func PublicJWKSet(publicJWKs ...[]byte) ([]byte, error) {
	keys := make([]json.RawMessage, 0, len(publicJWKs))
	for _, k := range publicJWKs {
		keys = append(keys, k)
	}
	return json.Marshal(struct {
		Keys []json.RawMessage `json:"keys"`
	}{keys})
}
