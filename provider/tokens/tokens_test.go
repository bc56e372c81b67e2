package tokens

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/authzd/authz/provider/oauth"
)

func TestNewSecret(t *testing.T) {
	prefixes := []string{PrefixAuthCode, PrefixRefreshToken, PrefixClientSecret, PrefixRegistrationToken,
		PrefixInitialAccessToken, PrefixSession, PrefixCSRF}
	seen := map[string]bool{}
	for _, p := range prefixes {
		t.Run(p, func(t *testing.T) {
			for range 50 {
				s, err := NewSecret(rand.Reader, p)
				if err != nil {
					t.Fatalf("NewSecret: %v", err)
				}
				if !strings.HasPrefix(s, p) {
					t.Fatalf("secret %q lacks prefix %q", s, p)
				}
				body := strings.TrimPrefix(s, p)
				if len(body) != 43 {
					t.Fatalf("body %q has %d chars, want 43", body, len(body))
				}
				b, err := base64.RawURLEncoding.DecodeString(body)
				if err != nil || len(b) != 32 {
					t.Fatalf("body %q is not base64url of 32 bytes (%d bytes, %v)", body, len(b), err)
				}
				if seen[s] {
					t.Fatalf("secret %q repeated", s)
				}
				seen[s] = true
			}
		})
	}
}

func TestNewSecretDeterministicReaderAndShortRead(t *testing.T) {
	zero := bytes.NewReader(make([]byte, 32))
	s, err := NewSecret(zero, PrefixCSRF)
	if err != nil {
		t.Fatalf("NewSecret: %v", err)
	}
	if want := PrefixCSRF + strings.Repeat("A", 43); s != want {
		t.Errorf("NewSecret(zeros) = %q, want %q", s, want)
	}
	if _, err := NewSecret(bytes.NewReader(make([]byte, 31)), PrefixCSRF); err == nil {
		t.Error("NewSecret with a short reader: want an error")
	}
}

func TestHashAndEqual(t *testing.T) {
	tests := []struct {
		name string
		a, b string
		eq   bool
	}{
		{"same secret", "authz_rt_abc", "authz_rt_abc", true},
		{"different secret", "authz_rt_abc", "authz_rt_abd", false},
		{"different prefix", "authz_rt_abc", "authz_ac_abc", false},
		{"empty", "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ha, hb := Hash(tt.a), Hash(tt.b)
			if len(ha) != 32 || len(hb) != 32 {
				t.Fatalf("hash lengths %d, %d, want 32", len(ha), len(hb))
			}
			if !bytes.Equal(ha, Hash(tt.a)) {
				t.Error("Hash is not deterministic")
			}
			if got := Equal(ha, hb); got != tt.eq {
				t.Errorf("Equal = %v, want %v", got, tt.eq)
			}
		})
	}
	// SHA-256("") is well known.
	const emptySHA = "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"
	if got := base64.RawURLEncoding.EncodeToString(Hash("")); got != emptySHA {
		t.Errorf("Hash(\"\") = %s, want %s", got, emptySHA)
	}
	if Equal(Hash("x"), Hash("x")[:31]) {
		t.Error("Equal of different lengths must be false")
	}
}

func TestParseEncryptionKey(t *testing.T) {
	raw := make([]byte, 32)
	for i := range raw {
		raw[i] = byte(0xf0 + i%16) // produces + / or - _ in the encodings
	}
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"std padded", base64.StdEncoding.EncodeToString(raw), true},
		{"std padded with newline", base64.StdEncoding.EncodeToString(raw) + "\n", true},
		{"raw std", base64.RawStdEncoding.EncodeToString(raw), true},
		{"url padded", base64.URLEncoding.EncodeToString(raw), true},
		{"raw url", base64.RawURLEncoding.EncodeToString(raw), true},
		{"16 bytes", base64.StdEncoding.EncodeToString(raw[:16]), false},
		{"33 bytes", base64.StdEncoding.EncodeToString(append(raw, 1)), false},
		{"not base64", "not base64 at all!", false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := ParseEncryptionKey(tt.in)
			if !tt.ok {
				if err == nil {
					t.Fatalf("ParseEncryptionKey(%q) = %x, want an error", tt.in, b)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseEncryptionKey(%q): %v", tt.in, err)
			}
			if !bytes.Equal(b, raw) {
				t.Errorf("ParseEncryptionKey(%q) = %x, want %x", tt.in, b, raw)
			}
		})
	}
}

func TestGenerateKey(t *testing.T) {
	if _, err := GenerateKey(rand.Reader, "RS256"); err == nil {
		t.Error("GenerateKey(RS256): want an error")
	}
	for _, alg := range []string{"ES256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			k, err := GenerateKey(rand.Reader, alg)
			if err != nil {
				t.Fatalf("GenerateKey: %v", err)
			}
			if k.Algorithm != alg {
				t.Errorf("Algorithm = %q", k.Algorithm)
			}
			raw, err := k.PublicJWK()
			if err != nil {
				t.Fatalf("PublicJWK: %v", err)
			}
			var jwk jose.JSONWebKey
			if err := jwk.UnmarshalJSON(raw); err != nil {
				t.Fatalf("unmarshal JWK: %v", err)
			}
			if !jwk.IsPublic() || jwk.KeyID != k.ID || jwk.Algorithm != alg || jwk.Use != "sig" {
				t.Errorf("JWK public=%v kid=%q alg=%q use=%q", jwk.IsPublic(), jwk.KeyID, jwk.Algorithm, jwk.Use)
			}
			// The kid is the RFC 7638 thumbprint.
			tp, err := jwk.Thumbprint(crypto.SHA256)
			if err != nil {
				t.Fatal(err)
			}
			if got := base64.RawURLEncoding.EncodeToString(tp); got != k.ID {
				t.Errorf("kid %q is not the thumbprint %q", k.ID, got)
			}
			k2, err := GenerateKey(rand.Reader, alg)
			if err != nil {
				t.Fatal(err)
			}
			if k2.ID == k.ID {
				t.Error("two generated keys share a kid")
			}
		})
	}
}

func TestPublicJWKSet(t *testing.T) {
	a := mustKey(t, "ES256")
	b := mustKey(t, "EdDSA")
	ja, _ := a.PublicJWK()
	jb, _ := b.PublicJWK()
	doc, err := PublicJWKSet(ja, jb)
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(doc, &set); err != nil {
		t.Fatalf("unmarshal set: %v", err)
	}
	if len(set.Keys) != 2 || set.Keys[0].KeyID != a.ID || set.Keys[1].KeyID != b.ID {
		t.Errorf("set = %s", doc)
	}
	empty, err := PublicJWKSet()
	if err != nil || string(empty) != `{"keys":[]}` {
		t.Errorf("PublicJWKSet() = %s, %v; want {\"keys\":[]}", empty, err)
	}
}

func TestEncryptPrivateKey(t *testing.T) {
	encKey := bytes.Repeat([]byte{7}, 32)
	otherKey := bytes.Repeat([]byte{8}, 32)
	for _, alg := range []string{"ES256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			k := mustKey(t, alg)
			ct, err := EncryptPrivateKey(k, encKey, rand.Reader)
			if err != nil {
				t.Fatalf("EncryptPrivateKey: %v", err)
			}
			got, err := DecryptPrivateKey(k.ID, k.Algorithm, ct, encKey)
			if err != nil {
				t.Fatalf("DecryptPrivateKey: %v", err)
			}
			if got.ID != k.ID || got.Algorithm != k.Algorithm {
				t.Errorf("decrypted key id/alg = %q/%q", got.ID, got.Algorithm)
			}
			type equaler interface {
				Equal(x crypto.PrivateKey) bool
			}
			if e, ok := got.Private.(equaler); !ok || !e.Equal(k.Private) {
				t.Error("decrypted private key differs from the original")
			}
			// The decrypted key still signs tokens the original's JWK verifies.
			s, err := NewSigner(got)
			if err != nil {
				t.Fatal(err)
			}
			tok, err := s.Sign(validClaims(time.Now()))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := keySet(t, k).Verify(tok, testIssuer, time.Now(), time.Minute); err != nil {
				t.Errorf("token from the decrypted key: %v", err)
			}

			failures := []struct {
				name   string
				id     string
				ct     []byte
				encKey []byte
			}{
				{"wrong encryption key", k.ID, ct, otherKey},
				{"wrong kid (additional data)", k.ID + "x", ct, encKey},
				{"tampered ciphertext", k.ID, flipLast(ct), encKey},
				{"truncated ciphertext", k.ID, ct[:5], encKey},
				{"short encryption key", k.ID, ct, encKey[:16]},
			}
			for _, f := range failures {
				t.Run(f.name, func(t *testing.T) {
					if _, err := DecryptPrivateKey(f.id, alg, f.ct, f.encKey); err == nil {
						t.Error("DecryptPrivateKey succeeded, want an error")
					}
				})
			}
		})
	}
	if _, err := EncryptPrivateKey(mustKey(t, "ES256"), encKey[:31], rand.Reader); err == nil {
		t.Error("EncryptPrivateKey with a 31-byte key: want an error")
	}
	k := mustKey(t, "EdDSA")
	c1, _ := EncryptPrivateKey(k, encKey, rand.Reader)
	c2, _ := EncryptPrivateKey(k, encKey, rand.Reader)
	if bytes.Equal(c1, c2) {
		t.Error("two encryptions of one key are identical (nonce reuse)")
	}
}

const testIssuer = "https://auth.example.com"

func validClaims(now time.Time) AccessTokenClaims {
	return AccessTokenClaims{
		Issuer:    testIssuer,
		Subject:   "user-1",
		Audience:  []string{"https://api.example.com"},
		ClientID:  "client-1",
		Scope:     "read write",
		ID:        "jti-1",
		GrantID:   "grant-1",
		IssuedAt:  now,
		NotBefore: now,
		ExpiresAt: now.Add(10 * time.Minute),
	}
}

func mustKey(t *testing.T, alg string) Key {
	t.Helper()
	k, err := GenerateKey(rand.Reader, alg)
	if err != nil {
		t.Fatalf("GenerateKey(%s): %v", alg, err)
	}
	return k
}

func keySet(t *testing.T, keys ...Key) *KeySet {
	t.Helper()
	var jwks [][]byte
	for _, k := range keys {
		j, err := k.PublicJWK()
		if err != nil {
			t.Fatal(err)
		}
		jwks = append(jwks, j)
	}
	ks, err := NewKeySet(jwks...)
	if err != nil {
		t.Fatalf("NewKeySet: %v", err)
	}
	return ks
}

func flipLast(b []byte) []byte {
	c := slices.Clone(b)
	c[len(c)-1] ^= 1
	return c
}

// rawSign signs an arbitrary payload with k, bypassing Signer's checks.
func rawSign(t *testing.T, k Key, typ string, payload []byte) string {
	t.Helper()
	opts := &jose.SignerOptions{}
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(k.Algorithm), Key: jose.JSONWebKey{Key: k.Private, KeyID: k.ID}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func b64(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

func TestSignVerifyRoundTrip(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for _, alg := range []string{"ES256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			k := mustKey(t, alg)
			other := mustKey(t, "ES256")
			s, err := NewSigner(k)
			if err != nil {
				t.Fatalf("NewSigner: %v", err)
			}
			if s.KeyID() != k.ID {
				t.Errorf("KeyID = %q, want %q", s.KeyID(), k.ID)
			}
			want := validClaims(now)
			tok, err := s.Sign(want)
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			if strings.Count(tok, ".") != 2 {
				t.Fatalf("token %q is not compact JWS", tok)
			}
			var hdr map[string]any
			h, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
			if err := json.Unmarshal(h, &hdr); err != nil {
				t.Fatal(err)
			}
			if hdr["typ"] != AccessTokenType || hdr["alg"] != alg || hdr["kid"] != k.ID {
				t.Errorf("header = %v", hdr)
			}
			got, err := keySet(t, other, k).Verify(tok, testIssuer, now.Add(time.Minute), 30*time.Second)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got.Issuer != want.Issuer || got.Subject != want.Subject || !slices.Equal(got.Audience, want.Audience) ||
				got.ClientID != want.ClientID || got.Scope != want.Scope || got.ID != want.ID || got.GrantID != want.GrantID ||
				!got.IssuedAt.Equal(want.IssuedAt) || !got.NotBefore.Equal(want.NotBefore) || !got.ExpiresAt.Equal(want.ExpiresAt) {
				t.Errorf("Verify claims = %+v, want %+v", got, want)
			}
		})
	}
}

func TestSignRejectsEmptyAudience(t *testing.T) {
	s, err := NewSigner(mustKey(t, "EdDSA"))
	if err != nil {
		t.Fatal(err)
	}
	c := validClaims(time.Now())
	c.Audience = nil
	if _, err := s.Sign(c); !errors.Is(err, ErrEmptyAudience) {
		t.Errorf("Sign without audience: err = %v, want ErrEmptyAudience", err)
	}
}

func TestNewKeySetRejectsPrivateKey(t *testing.T) {
	k := mustKey(t, "ES256")
	priv, err := jose.JSONWebKey{Key: k.Private, KeyID: k.ID, Algorithm: k.Algorithm}.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewKeySet(priv); err == nil {
		t.Error("NewKeySet with a private JWK: want an error")
	}
	if _, err := NewKeySet([]byte(`{"kty":"nope"}`)); err == nil {
		t.Error("NewKeySet with a bad JWK: want an error")
	}
}

func TestVerifyRejects(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	const leeway = 30 * time.Second
	for _, alg := range []string{"ES256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			k := mustKey(t, alg)
			unknown := mustKey(t, alg)
			s, err := NewSigner(k)
			if err != nil {
				t.Fatal(err)
			}
			ks := keySet(t, k)
			sign := func(mod func(*AccessTokenClaims)) string {
				c := validClaims(now)
				mod(&c)
				tok, err := s.Sign(c)
				if err != nil {
					t.Fatal(err)
				}
				return tok
			}
			wire := func(mod func(map[string]any)) []byte {
				m := map[string]any{
					"iss": testIssuer, "sub": "user-1", "aud": []string{"https://api.example.com"}, "client_id": "client-1",
					"jti": "jti-1", "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(),
				}
				mod(m)
				b, _ := json.Marshal(m)
				return b
			}
			good := sign(func(*AccessTokenClaims) {})
			parts := strings.Split(good, ".")
			tampered := parts[0] + "." + b64(map[string]any{
				"iss": testIssuer, "sub": "admin", "aud": []string{"https://api.example.com"}, "client_id": "client-1",
				"jti": "jti-1", "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(),
			}) + "." + parts[2]
			hdr, _ := base64.RawURLEncoding.DecodeString(parts[0])
			var h map[string]any
			_ = json.Unmarshal(hdr, &h)
			h["alg"] = "none"
			algNone := b64(h) + "." + parts[1] + "."
			h["alg"] = "HS256"
			algHS := b64(h) + "." + parts[1] + "." + parts[2]

			tests := []struct {
				name  string
				token string
				want  error
			}{
				{"wrong issuer", sign(func(c *AccessTokenClaims) { c.Issuer = "https://evil.example.com" }), ErrIssuer},
				{"issuer trailing slash", sign(func(c *AccessTokenClaims) { c.Issuer = testIssuer + "/" }), ErrIssuer},
				{"expired beyond leeway", sign(func(c *AccessTokenClaims) { c.ExpiresAt = now.Add(-2 * leeway) }), ErrExpired},
				{"expired exactly at leeway", sign(func(c *AccessTokenClaims) { c.ExpiresAt = now.Add(-leeway) }), ErrExpired},
				{"no exp", rawSign(t, k, AccessTokenType, wire(func(m map[string]any) { delete(m, "exp") })), ErrExpired},
				{"not yet valid (nbf)", sign(func(c *AccessTokenClaims) { c.NotBefore = now.Add(2 * leeway) }), ErrNotYet},
				{"issued in the future (iat)", sign(func(c *AccessTokenClaims) { c.IssuedAt = now.Add(2 * leeway) }), ErrNotYet},
				{"empty audience array", rawSign(t, k, AccessTokenType, wire(func(m map[string]any) { m["aud"] = []string{} })), ErrAudience},
				{"empty audience string", rawSign(t, k, AccessTokenType, wire(func(m map[string]any) { m["aud"] = "" })), ErrAudience},
				{"missing audience", rawSign(t, k, AccessTokenType, wire(func(m map[string]any) { delete(m, "aud") })), ErrAudience},
				{"audience array with an empty entry", rawSign(t, k, AccessTokenType, wire(func(m map[string]any) { m["aud"] = []string{""} })), ErrAudience},
				{"audience of wrong type", rawSign(t, k, AccessTokenType, wire(func(m map[string]any) { m["aud"] = 5 })), ErrMalformed},
				{"typ JWT", rawSign(t, k, "JWT", wire(func(map[string]any) {})), ErrType},
				{"no typ", rawSign(t, k, "", wire(func(map[string]any) {})), ErrType},
				{"unknown kid", rawSign(t, unknown, AccessTokenType, wire(func(map[string]any) {})), ErrUnknownKey},
				{"tampered payload", tampered, ErrSignature},
				{"tampered signature", parts[0] + "." + parts[1] + "." + b64("x"), ErrSignature},
				{"alg none", algNone, ErrMalformed},
				{"alg HS256", algHS, ErrMalformed},
				{"payload not JSON", rawSign(t, k, AccessTokenType, []byte("not json")), ErrMalformed},
				{"garbage", "not.a.token", ErrMalformed},
				{"empty", "", ErrMalformed},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					_, err := ks.Verify(tt.token, testIssuer, now, leeway)
					if !errors.Is(err, tt.want) {
						t.Errorf("Verify err = %v, want %v", err, tt.want)
					}
				})
			}

			// Within the leeway the same kinds of token are accepted.
			accepted := []struct {
				name  string
				token string
			}{
				{"expired within leeway", sign(func(c *AccessTokenClaims) { c.ExpiresAt = now.Add(-leeway / 2) })},
				{"nbf within leeway", sign(func(c *AccessTokenClaims) { c.NotBefore = now.Add(leeway / 2) })},
				{"typ application/at+jwt", rawSign(t, k, "application/at+jwt", wire(func(map[string]any) {}))},
				{"audience as a string", rawSign(t, k, AccessTokenType, wire(func(m map[string]any) { m["aud"] = "https://api.example.com" }))},
			}
			for _, tt := range accepted {
				t.Run(tt.name, func(t *testing.T) {
					c, err := ks.Verify(tt.token, testIssuer, now, leeway)
					if err != nil {
						t.Fatalf("Verify: %v", err)
					}
					if !slices.Equal(c.Audience, []string{"https://api.example.com"}) {
						t.Errorf("Audience = %v", c.Audience)
					}
				})
			}
		})
	}
}

func TestVerifyRejectsAlgMismatchWithJWK(t *testing.T) {
	// A key published as EdDSA must not verify an ES256-labelled token even
	// if the kid matches.
	ed := mustKey(t, "EdDSA")
	es := mustKey(t, "ES256")
	es.ID = ed.ID
	s, err := NewSigner(es)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok, err := s.Sign(validClaims(now))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keySet(t, ed).Verify(tok, testIssuer, now, time.Minute); !errors.Is(err, ErrSignature) {
		t.Errorf("Verify err = %v, want ErrSignature", err)
	}
}

func TestIDTokenKeyAndHint(t *testing.T) {
	t.Parallel()
	for _, alg := range oauth.IDTokenAlgorithms {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			k, err := GenerateIDTokenKey(rand.Reader, alg)
			if err != nil {
				t.Fatal(err)
			}
			s, err := NewIDTokenSigner(k)
			if err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			tok, err := s.Sign(IDTokenClaims{Issuer: "https://as", Subject: "u1", Audience: "c1", IssuedAt: now, ExpiresAt: now.Add(-time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			pub, _ := k.PublicJWK()
			ks, _ := NewKeySet(pub)
			// An expired ID token is still a usable hint.
			c, err := ks.VerifyIDTokenHint(tok, "https://as")
			if err != nil || c.Subject != "u1" || c.Audience != "c1" {
				t.Fatalf("VerifyIDTokenHint = %+v, %v", c, err)
			}
			if _, err := ks.VerifyIDTokenHint(tok, "https://other"); err == nil {
				t.Fatal("hint of another issuer accepted")
			}
			// An ID token is never an access token (typ JWT, not at+jwt).
			if _, err := ks.Verify(tok, "https://as", now, time.Minute); err == nil {
				t.Fatal("an ID token verified as an access token")
			}
		})
	}
	if _, err := GenerateKey(rand.Reader, "RS256"); err == nil {
		t.Fatal("RS256 accepted for access tokens")
	}
}
