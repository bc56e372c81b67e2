package tokens

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// AccessTokenClaims are the claims of an RFC 9068 access token.
type AccessTokenClaims struct {
	Issuer    string
	Subject   string
	Audience  []string
	ClientID  string
	Scope     string
	ID        string
	GrantID   string
	IssuedAt  time.Time
	NotBefore time.Time
	ExpiresAt time.Time
}

// wireClaims is the JSON form. aud is always an array: RFC 9068 §2.2 allows
// a string, but an array is unambiguous for resource servers.
type wireClaims struct {
	Iss      string   `json:"iss"`
	Sub      string   `json:"sub"`
	Aud      []string `json:"aud"`
	ClientID string   `json:"client_id"`
	Scope    string   `json:"scope,omitempty"`
	Jti      string   `json:"jti"`
	Sid      string   `json:"sid,omitempty"`
	Iat      int64    `json:"iat"`
	Nbf      int64    `json:"nbf"`
	Exp      int64    `json:"exp"`
}

// AccessTokenType is the JWT typ of RFC 9068 §2.1.
const AccessTokenType = "at+jwt"

// Signer signs access tokens with one key. It is safe for concurrent use.
//
// It writes the compact JWS (RFC 7515 §7.1) itself instead of going through
// go-jose's signer, which marshals the same protected header by reflection
// for every token and copies the payload several times: per refresh that
// was about 60 of authz's 250 allocations (README, Benchmarks, "Per-request
// work"). The header never changes for a key, so it is encoded once here;
// the signature is the standard library's (crypto/ecdsa, crypto/ed25519),
// and tokens are verified by go-jose as before (TestSignerMatchesGoJose).
type Signer struct {
	kid string
	// header is the base64url protected header {"alg","kid","typ"}, the
	// same bytes go-jose writes for this key.
	header string
	// sign returns the JWS signature of the signing input (RFC 7518 §3.4
	// for ES256: R||S, 32 bytes each; RFC 8037 §3.1 for EdDSA).
	sign func(signingInput []byte) ([]byte, error)
}

// NewSigner prepares a signer for k: ES256 on a P-256 key or EdDSA on an
// Ed25519 key, the access-token algorithms (GenerateKey).
func NewSigner(k Key) (*Signer, error) {
	s := &Signer{kid: k.ID}
	switch priv := k.Private.(type) {
	case *ecdsa.PrivateKey:
		if k.Algorithm != string(jose.ES256) || priv.Curve != elliptic.P256() {
			return nil, fmt.Errorf("tokens: a P-256 key signs ES256, not %q", k.Algorithm)
		}
		s.sign = func(in []byte) ([]byte, error) {
			digest := sha256.Sum256(in)
			r, ss, err := ecdsa.Sign(rand.Reader, priv, digest[:])
			if err != nil {
				return nil, err
			}
			sig := make([]byte, 64)
			r.FillBytes(sig[:32])
			ss.FillBytes(sig[32:])
			return sig, nil
		}
	case ed25519.PrivateKey:
		if k.Algorithm != string(jose.EdDSA) {
			return nil, fmt.Errorf("tokens: an Ed25519 key signs EdDSA, not %q", k.Algorithm)
		}
		s.sign = func(in []byte) ([]byte, error) { return ed25519.Sign(priv, in), nil }
	default:
		return nil, fmt.Errorf("tokens: unsupported access-token key type %T", k.Private)
	}
	hdr, err := json.Marshal(struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}{k.Algorithm, k.ID, AccessTokenType})
	if err != nil {
		return nil, err
	}
	s.header = base64.RawURLEncoding.EncodeToString(hdr)
	return s, nil
}

// KeyID is the kid of the signing key.
func (s *Signer) KeyID() string { return s.kid }

// ErrEmptyAudience: a token never has an empty audience.
var ErrEmptyAudience = errors.New("tokens: refusing to sign an access token without an audience")

// Sign returns a compact JWS.
func (s *Signer) Sign(c AccessTokenClaims) (string, error) {
	if len(c.Audience) == 0 || slices.Contains(c.Audience, "") {
		return "", ErrEmptyAudience
	}
	payload := appendClaims(make([]byte, 0, 512), c)
	enc := base64.RawURLEncoding
	tok := make([]byte, 0, len(s.header)+1+enc.EncodedLen(len(payload))+1+enc.EncodedLen(64))
	tok = append(tok, s.header...)
	tok = append(tok, '.')
	tok = enc.AppendEncode(tok, payload)
	sig, err := s.sign(tok)
	if err != nil {
		return "", err
	}
	tok = append(tok, '.')
	tok = enc.AppendEncode(tok, sig)
	return string(tok), nil
}

// appendClaims appends the JSON of c, byte for byte what json.Marshal
// writes for its wireClaims (TestAppendClaimsMatchesEncodingJSON): the
// shape is fixed, so the reflection is avoidable work on every token.
func appendClaims(b []byte, c AccessTokenClaims) []byte {
	b = append(b, `{"iss":`...)
	b = appendJSONString(b, c.Issuer)
	b = append(b, `,"sub":`...)
	b = appendJSONString(b, c.Subject)
	b = append(b, `,"aud":`...)
	if c.Audience == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, a := range c.Audience {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, a)
		}
		b = append(b, ']')
	}
	b = append(b, `,"client_id":`...)
	b = appendJSONString(b, c.ClientID)
	if c.Scope != "" {
		b = append(b, `,"scope":`...)
		b = appendJSONString(b, c.Scope)
	}
	b = append(b, `,"jti":`...)
	b = appendJSONString(b, c.ID)
	if c.GrantID != "" {
		b = append(b, `,"sid":`...)
		b = appendJSONString(b, c.GrantID)
	}
	b = append(b, `,"iat":`...)
	b = strconv.AppendInt(b, c.IssuedAt.Unix(), 10)
	b = append(b, `,"nbf":`...)
	b = strconv.AppendInt(b, c.NotBefore.Unix(), 10)
	b = append(b, `,"exp":`...)
	b = strconv.AppendInt(b, c.ExpiresAt.Unix(), 10)
	return append(b, '}')
}

// appendJSONString appends s as a JSON string. Printable ASCII that
// encoding/json leaves alone (every issuer, id, scope and resource authz
// makes) is copied; anything else is encoding/json's own escaping, so the
// two never differ.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// Verification errors.
var (
	ErrMalformed  = errors.New("tokens: malformed token")
	ErrType       = errors.New("tokens: not an access token (typ)")
	ErrUnknownKey = errors.New("tokens: unknown signing key")
	ErrSignature  = errors.New("tokens: bad signature")
	ErrIssuer     = errors.New("tokens: wrong issuer")
	ErrExpired    = errors.New("tokens: expired")
	ErrNotYet     = errors.New("tokens: not valid yet")
	ErrAudience   = errors.New("tokens: no audience")
)

// allowedAlgs: asymmetric only; never none, never HMAC.
var allowedAlgs = []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA}

// KeySet verifies access tokens against published keys.
type KeySet struct {
	keys map[string]jose.JSONWebKey
}

// NewKeySet builds a key set from public JWKs.
func NewKeySet(publicJWKs ...[]byte) (*KeySet, error) {
	ks := &KeySet{keys: map[string]jose.JSONWebKey{}}
	for _, raw := range publicJWKs {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil {
			return nil, err
		}
		if !k.IsPublic() {
			return nil, errors.New("tokens: key set holds a private key")
		}
		ks.keys[k.KeyID] = k
	}
	return ks, nil
}

// Verify checks signature, typ, issuer, times (with leeway) and a non-empty audience.
func (ks *KeySet) Verify(token, issuer string, now time.Time, leeway time.Duration) (AccessTokenClaims, error) {
	jws, err := jose.ParseSignedCompact(token, allowedAlgs)
	if err != nil || len(jws.Signatures) != 1 {
		return AccessTokenClaims{}, ErrMalformed
	}
	h := jws.Signatures[0].Protected
	typ, _ := h.ExtraHeaders[jose.HeaderType].(string)
	if t := strings.ToLower(typ); t != AccessTokenType && t != "application/"+AccessTokenType {
		return AccessTokenClaims{}, ErrType
	}
	k, ok := ks.keys[h.KeyID]
	if !ok {
		return AccessTokenClaims{}, ErrUnknownKey
	}
	if k.Algorithm != "" && k.Algorithm != h.Algorithm {
		return AccessTokenClaims{}, ErrSignature
	}
	payload, err := jws.Verify(k.Key)
	if err != nil {
		return AccessTokenClaims{}, ErrSignature
	}
	var w struct {
		wireClaims
		Aud json.RawMessage `json:"aud"`
	}
	if err := json.Unmarshal(payload, &w); err != nil {
		return AccessTokenClaims{}, ErrMalformed
	}
	var aud []string
	if len(w.Aud) > 0 && w.Aud[0] == '"' {
		var one string
		if json.Unmarshal(w.Aud, &one) == nil && one != "" {
			aud = []string{one}
		}
	} else if len(w.Aud) > 0 {
		if err := json.Unmarshal(w.Aud, &aud); err != nil {
			return AccessTokenClaims{}, ErrMalformed
		}
		// An empty entry names no resource; such a token is rejected
		// rather than read as "valid for anyone".
		if slices.Contains(aud, "") {
			aud = nil
		}
	}
	c := AccessTokenClaims{
		Issuer: w.Iss, Subject: w.Sub, Audience: aud, ClientID: w.ClientID, Scope: w.Scope, ID: w.Jti, GrantID: w.Sid,
		IssuedAt: time.Unix(w.Iat, 0), NotBefore: time.Unix(w.Nbf, 0), ExpiresAt: time.Unix(w.Exp, 0),
	}
	switch {
	case c.Issuer != issuer:
		return c, ErrIssuer
	case w.Exp == 0 || !now.Before(c.ExpiresAt.Add(leeway)):
		return c, ErrExpired
	case w.Nbf != 0 && now.Add(leeway).Before(c.NotBefore):
		return c, ErrNotYet
	case w.Iat != 0 && now.Add(leeway).Before(c.IssuedAt):
		return c, ErrNotYet
	case len(c.Audience) == 0:
		return c, ErrAudience
	}
	return c, nil
}
