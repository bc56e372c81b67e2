package tokens

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"hash"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/authzd/authz/provider/oauth"
)

// IDTokenClaims are the claims of an OpenID Connect ID token (OIDC Core §2).
type IDTokenClaims struct {
	Issuer          string
	Subject         string
	Audience        string // the client
	AuthorizedParty string // azp: the client again (OIDC Core §2)
	Nonce           string
	AccessTokenHash string
	SessionID       string
	IssuedAt        time.Time
	ExpiresAt       time.Time
	AuthTime        time.Time
}

type idWire struct {
	Iss      string `json:"iss"`
	Sub      string `json:"sub"`
	Aud      string `json:"aud"`
	Azp      string `json:"azp,omitempty"`
	Exp      int64  `json:"exp"`
	Iat      int64  `json:"iat"`
	AuthTime int64  `json:"auth_time,omitempty"`
	Nonce    string `json:"nonce,omitempty"`
	AtHash   string `json:"at_hash,omitempty"`
	Sid      string `json:"sid,omitempty"`
}

// IDTokenSigner signs ID tokens. Their typ is "JWT", never "at+jwt", so an
// ID token is never accepted as an access token (RFC 9068 §4).
type IDTokenSigner struct {
	s   jose.Signer
	alg string
}

// NewIDTokenSigner prepares a signer for k.
func NewIDTokenSigner(k Key) (*IDTokenSigner, error) {
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(k.Algorithm), Key: jose.JSONWebKey{Key: k.Private, KeyID: k.ID}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, err
	}
	return &IDTokenSigner{s: s, alg: k.Algorithm}, nil
}

// Algorithm is the JWS alg of the signer.
func (s *IDTokenSigner) Algorithm() string { return s.alg }

// Sign returns the compact JWS of c.
func (s *IDTokenSigner) Sign(c IDTokenClaims) (string, error) {
	w := idWire{
		Iss: c.Issuer, Sub: c.Subject, Aud: c.Audience, Azp: c.AuthorizedParty, Exp: c.ExpiresAt.Unix(), Iat: c.IssuedAt.Unix(),
		Nonce: c.Nonce, AtHash: c.AccessTokenHash, Sid: c.SessionID,
	}
	if !c.AuthTime.IsZero() {
		w.AuthTime = c.AuthTime.Unix()
	}
	payload, err := json.Marshal(w)
	if err != nil {
		return "", err
	}
	jws, err := s.s.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

// AccessTokenHash is at_hash (OIDC Core §3.1.3.6): the left half of the
// hash of the access token, with the hash of the ID token's algorithm
// (SHA-512 for EdDSA with Ed25519).
func AccessTokenHash(alg, accessToken string) string {
	var h hash.Hash
	if alg == "EdDSA" {
		h = sha512.New()
	} else {
		h = sha256.New()
	}
	h.Write([]byte(accessToken))
	sum := h.Sum(nil)
	return base64.RawURLEncoding.EncodeToString(sum[:len(sum)/2])
}

// idTokenJOSEAlgorithms are oauth.IDTokenAlgorithms as go-jose names them.
var idTokenJOSEAlgorithms = func() []jose.SignatureAlgorithm {
	out := make([]jose.SignatureAlgorithm, len(oauth.IDTokenAlgorithms))
	for i, a := range oauth.IDTokenAlgorithms {
		out[i] = jose.SignatureAlgorithm(a)
	}
	return out
}()

// ErrNotIDToken: the token is not an ID token of this issuer.
var ErrNotIDToken = errors.New("tokens: not an ID token of this issuer")

// VerifyIDTokenHint checks an ID token this server issued, as presented back
// in id_token_hint (OIDC Core §3.1.2.1, RP-Initiated Logout §2): signature
// and issuer, but not expiry, since a hint is often an expired token.
func (ks *KeySet) VerifyIDTokenHint(token, issuer string) (IDTokenClaims, error) {
	jws, err := jose.ParseSignedCompact(token, idTokenJOSEAlgorithms)
	if err != nil || len(jws.Signatures) != 1 {
		return IDTokenClaims{}, ErrNotIDToken
	}
	h := jws.Signatures[0].Protected
	k, ok := ks.keys[h.KeyID]
	if !ok || (k.Algorithm != "" && k.Algorithm != h.Algorithm) {
		return IDTokenClaims{}, ErrNotIDToken
	}
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != "JWT" {
		return IDTokenClaims{}, ErrNotIDToken
	}
	payload, err := jws.Verify(k.Key)
	if err != nil {
		return IDTokenClaims{}, ErrNotIDToken
	}
	var w idWire
	if err := json.Unmarshal(payload, &w); err != nil || w.Iss != issuer || w.Sub == "" {
		return IDTokenClaims{}, ErrNotIDToken
	}
	return IDTokenClaims{
		Issuer: w.Iss, Subject: w.Sub, Audience: w.Aud, AuthorizedParty: w.Azp, Nonce: w.Nonce, AccessTokenHash: w.AtHash,
		SessionID: w.Sid, IssuedAt: time.Unix(w.Iat, 0), ExpiresAt: time.Unix(w.Exp, 0), AuthTime: time.Unix(w.AuthTime, 0),
	}, nil
}
