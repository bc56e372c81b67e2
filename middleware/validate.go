package middleware

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"github.com/authzd/authz/internal/resourceid"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Token is a validated access token. Handlers get it from the request
// context with TokenFromContext. It is shared between requests that
// present the same token: treat it as read-only.
type Token struct {
	Subject   string
	ClientID  string
	Scopes    []string
	Audience  []string
	Issuer    string
	ID        string // jti
	IssuedAt  time.Time
	ExpiresAt time.Time
	// Claims is the JWT payload, or the introspection response for an
	// opaque token, for claims this type has no field for.
	Claims json.RawMessage
}

// HasScope reports whether the token carries scope s.
func (t *Token) HasScope(s string) bool {
	for _, have := range t.Scopes {
		if have == s {
			return true
		}
	}
	return false
}

// Validation errors. Every error Validate returns wraps one of them; its
// message says why without ever quoting the token.
var (
	// ErrInvalidToken: expired, revoked, malformed, for another audience,
	// or signed by a key or algorithm we do not accept (RFC 6750 §3.1).
	ErrInvalidToken = errors.New("invalid_token")
	// ErrUnavailable: the authorization server could not be asked (its
	// keys or its introspection endpoint). The token may well be good;
	// callers should answer 503 so clients retry instead of logging out.
	ErrUnavailable = errors.New("temporarily_unavailable")
)

type validationError struct {
	kind   error
	reason string
}

func (e *validationError) Error() string { return e.reason }
func (e *validationError) Unwrap() error { return e.kind }

func invalid(reason string) error     { return &validationError{ErrInvalidToken, reason} }
func unavailable(reason string) error { return &validationError{ErrUnavailable, reason} }

// Validate checks a bearer token for this resource: a JWT access token
// (RFC 9068) by signature and claims, an opaque token by introspection
// (RFC 7662). Repeated JWTs are answered from a cache of verified tokens
// until they expire or their signing key is withdrawn.
func (v *Validator) Validate(ctx context.Context, raw string) (*Token, error) {
	now := v.cfg.Now()
	if e, ok := v.tokens.get(raw, now); ok && v.keys.stillHas(e.kid) {
		if v.cfg.CheckRevocation {
			if _, err := v.introspect(ctx, raw, now); err != nil {
				return nil, err
			}
		}
		return e.tok, nil
	}
	if strings.Count(raw, ".") != 2 {
		if v.cfg.ClientID == "" {
			return nil, invalid("the token is not a JWT and this service does not introspect")
		}
		return v.introspect(ctx, raw, now)
	}
	tok, kid, err := v.verifyJWT(ctx, raw, now)
	if err != nil {
		return nil, err
	}
	if v.cfg.CheckRevocation {
		if _, err := v.introspect(ctx, raw, now); err != nil {
			return nil, err
		}
	}
	v.tokens.put(raw, cacheEntry{tok: tok, kid: kid, until: tok.ExpiresAt.Add(v.cfg.Leeway)}, now)
	return tok, nil
}

// stillHas reports whether the key that signed a cached token is still
// published: withdrawing a key ends its tokens' cache entries.
func (ks *keyStore) stillHas(kid string) bool {
	s := ks.cur.Load()
	if s == nil {
		return false
	}
	if kid == "" {
		return s.only != nil
	}
	return s.has(kid)
}

// jwtClaims are the RFC 9068 §2.2 claims we check.
type jwtClaims struct {
	Iss      string    `json:"iss"`
	Sub      string    `json:"sub"`
	Aud      audience  `json:"aud"`
	ClientID string    `json:"client_id"`
	Scope    string    `json:"scope"`
	Jti      string    `json:"jti"`
	Exp      *jsonTime `json:"exp"`
	Nbf      *jsonTime `json:"nbf"`
	Iat      *jsonTime `json:"iat"`
}

// audience is aud as a string or an array of strings (RFC 7519 §4.1.3).
type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*a = audience{s}
		return nil
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return err
	}
	*a = list
	return nil
}

// jsonTime is a NumericDate (seconds, possibly fractional).
type jsonTime float64

func (t *jsonTime) time() time.Time {
	sec := float64(*t)
	return time.Unix(int64(sec), int64((sec-float64(int64(sec)))*1e9))
}

func (v *Validator) verifyJWT(ctx context.Context, raw string, now time.Time) (*Token, string, error) {
	// The allowlist is enforced while parsing: "none" and HMAC never get
	// as far as a key lookup.
	jws, err := jose.ParseSignedCompact(raw, v.algs)
	if err != nil || len(jws.Signatures) != 1 {
		return nil, "", invalid("the token is malformed or uses an algorithm this service does not accept")
	}
	h := jws.Signatures[0].Protected
	// RFC 9068 §4: the typ must be at+jwt, so an ID token or another JWT
	// signed by the same issuer cannot be used as an access token.
	typ, _ := h.ExtraHeaders[jose.HeaderType].(string)
	if !strings.EqualFold(typ, "at+jwt") && !strings.EqualFold(typ, "application/at+jwt") {
		return nil, "", invalid("the token is not an access token (typ must be at+jwt)")
	}
	key, err := v.keys.lookup(ctx, h.KeyID)
	if err != nil {
		return nil, "", err
	}
	if key.Algorithm != "" && key.Algorithm != h.Algorithm {
		return nil, "", invalid("the token's algorithm does not match its key")
	}
	payload, err := jws.Verify(key)
	if err != nil {
		return nil, "", invalid("the token's signature is not valid")
	}
	var c jwtClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, "", invalid("the token's claims are malformed")
	}
	if c.Iss != v.cfg.Issuer {
		return nil, "", invalid("the token was issued by another authorization server")
	}
	tok, err := v.accept(&c, payload, now)
	return tok, h.KeyID, err
}

// accept checks the times and the audience of a token's claims, whether
// they came from a verified JWT or an introspection answer, and builds the
// Token handlers see.
func (v *Validator) accept(c *jwtClaims, raw json.RawMessage, now time.Time) (*Token, error) {
	if err := v.checkTimes(c.Exp, c.Nbf, c.Iat, now); err != nil {
		return nil, err
	}
	if err := v.checkAudience(c.Aud); err != nil {
		return nil, err
	}
	return &Token{
		Subject: c.Sub, ClientID: c.ClientID, Scopes: strings.Fields(c.Scope), Audience: c.Aud,
		Issuer: v.cfg.Issuer, ID: c.Jti, IssuedAt: timeOrZero(c.Iat), ExpiresAt: c.Exp.time(), Claims: raw,
	}, nil
}

func timeOrZero(t *jsonTime) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.time()
}

func (v *Validator) checkTimes(exp, nbf, iat *jsonTime, now time.Time) error {
	if exp == nil {
		return invalid("the token has no expiry")
	}
	if !now.Before(exp.time().Add(v.cfg.Leeway)) {
		return invalid("the token has expired")
	}
	if nbf != nil && now.Add(v.cfg.Leeway).Before(nbf.time()) {
		return invalid("the token is not valid yet")
	}
	if iat != nil && now.Add(v.cfg.Leeway).Before(iat.time()) {
		return invalid("the token was issued in the future")
	}
	return nil
}

// checkAudience: the token must name this resource (RFC 8707 §2, RFC 9068
// §4). A token without an audience is valid nowhere, not everywhere.
func (v *Validator) checkAudience(aud []string) error {
	if len(aud) == 0 {
		return invalid("the token has no audience")
	}
	for _, a := range aud {
		if a == v.cfg.Resource || a == v.resource {
			return nil
		}
		// The server's own rule (internal/resource): the same canonical
		// form, and a final "/" alone does not make it another resource.
		if _, ok, _ := resourceid.Match(a, []string{v.resource}); ok {
			return nil
		}
	}
	return invalid("the token is for another audience")
}

// introspection is the RFC 7662 §2.2 answer: the token's claims plus
// whether it is active and what kind of token it is.
type introspection struct {
	jwtClaims
	Active    bool   `json:"active"`
	TokenType string `json:"token_type"`
}

// introspect asks the authorization server about raw, through a cache
// keyed by the token's SHA-256 and bounded by IntrospectionCacheTTL and
// the token's own expiry.
func (v *Validator) introspect(ctx context.Context, raw string, now time.Time) (*Token, error) {
	key := sha256.Sum256([]byte(raw))
	if e, ok := v.intro.get(key, now); ok {
		if e.tok == nil {
			return nil, invalid("the token is not active")
		}
		return e.tok, nil
	}
	resp, body, err := v.postIntrospection(ctx, raw)
	if err != nil {
		return nil, err
	}
	until := now.Add(v.cfg.IntrospectionCacheTTL)
	if !resp.Active {
		v.intro.put(key, cacheEntry{until: until}, now)
		return nil, invalid("the token is not active")
	}
	// A refresh token is active too, but it is not an access token.
	if t := strings.ToLower(resp.TokenType); t != "" && t != "bearer" && t != "access_token" && t != "dpop" {
		return nil, invalid("the token is not an access token")
	}
	if resp.Iss != "" && resp.Iss != v.cfg.Issuer {
		return nil, invalid("the token was issued by another authorization server")
	}
	tok, err := v.accept(&resp.jwtClaims, body, now)
	if err != nil {
		return nil, err
	}
	if exp := tok.ExpiresAt; exp.Before(until) {
		until = exp
	}
	v.intro.put(key, cacheEntry{tok: tok, until: until}, now)
	return tok, nil
}
