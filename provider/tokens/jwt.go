package tokens

import (
	"encoding/json"
	"errors"
	"slices"
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
type Signer struct {
	s   jose.Signer
	kid string
}

// NewSigner prepares a signer for k.
func NewSigner(k Key) (*Signer, error) {
	alg := jose.SignatureAlgorithm(k.Algorithm)
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: k.Private, KeyID: k.ID}},
		(&jose.SignerOptions{}).WithType(AccessTokenType))
	if err != nil {
		return nil, err
	}
	return &Signer{s: s, kid: k.ID}, nil
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
	payload, err := json.Marshal(wireClaims{
		Iss: c.Issuer, Sub: c.Subject, Aud: c.Audience, ClientID: c.ClientID, Scope: c.Scope, Jti: c.ID, Sid: c.GrantID,
		Iat: c.IssuedAt.Unix(), Nbf: c.NotBefore.Unix(), Exp: c.ExpiresAt.Unix(),
	})
	if err != nil {
		return "", err
	}
	jws, err := s.s.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
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
