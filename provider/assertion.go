package provider

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/store"
)

// jwtBearerAssertion is the client_assertion_type of RFC 7523 §2.2.
const jwtBearerAssertion = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// assertionAlgs are the signature algorithms accepted for client assertions
// (asymmetric only: a shared-secret HMAC assertion is not private_key_jwt).
var assertionAlgs = []jose.SignatureAlgorithm{jose.RS256, jose.PS256, jose.ES256, jose.ES384, jose.EdDSA}

func assertionAlgNames() []string {
	out := make([]string, len(assertionAlgs))
	for i, a := range assertionAlgs {
		out[i] = string(a)
	}
	return out
}

// maxAssertionLifetime bounds how far in the future an assertion's exp may
// be, so the replay cache stays small.
const maxAssertionLifetime = 10 * time.Minute

// assertionLeeway is the clock skew allowed on an assertion's exp, nbf and iat.
const assertionLeeway = 30 * time.Second

// authenticateAssertion authenticates a client with a JWT assertion
// (private_key_jwt, RFC 7523 §2.2 and §3).
func (s *Server) authenticateAssertion(ctx context.Context, form url.Values) (store.Client, error) {
	if form.Get("client_assertion_type") != jwtBearerAssertion {
		return store.Client{}, oauth.New(oauth.CodeInvalidClient, "unsupported client_assertion_type")
	}
	tok, err := jwt.ParseSigned(form.Get("client_assertion"), assertionAlgs)
	if err != nil {
		return store.Client{}, errBadClient
	}
	var unverified jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil || unverified.Issuer == "" {
		return store.Client{}, errBadClient
	}
	if id := form.Get("client_id"); id != "" && id != unverified.Issuer {
		return store.Client{}, errBadClient
	}
	c, _, err := s.clients.get(ctx, unverified.Issuer)
	if errors.Is(err, store.ErrNotFound) {
		return store.Client{}, errBadClient
	}
	if de := (*documentError)(nil); errors.As(err, &de) {
		return store.Client{}, oauth.New(oauth.CodeInvalidClient, de.Error())
	}
	if err != nil {
		return store.Client{}, err
	}
	if c.Metadata.TokenEndpointAuthMethod != oauth.AuthPrivateKeyJWT {
		return store.Client{}, errBadClient
	}
	keys, err := s.keysOf(ctx, c)
	if retryableFetch(err) {
		// Our own capacity, or the key set's host unreachable or saying
		// "not now": nothing about the client's keys. 503, never
		// invalid_client (the client would discard its credentials).
		return store.Client{}, err
	}
	if err != nil {
		s.log.Warn("client keys unavailable", "client_id", c.ID, "cause", err)
		return store.Client{}, errBadClient
	}
	var cl jwt.Claims
	verified := false
	for _, k := range keys.Keys {
		if len(tok.Headers) == 1 && tok.Headers[0].KeyID != "" && k.KeyID != "" && k.KeyID != tok.Headers[0].KeyID {
			continue
		}
		if err := tok.Claims(k.Key, &cl); err == nil {
			verified = true
			break
		}
	}
	if !verified {
		return store.Client{}, errBadClient
	}
	now := s.opts.Now()
	// RFC 7523 §3: iss and sub are the client, aud names this server, and
	// the assertion has not expired.
	audOK := slices.ContainsFunc(cl.Audience, func(a string) bool {
		return a == s.opts.Issuer || a == s.url(PathToken) || a == s.url(PathRevoke) || a == s.url(PathIntrospect)
	})
	if cl.Subject != c.ID || !audOK || cl.Expiry == nil || cl.ID == "" {
		return store.Client{}, errBadClient
	}
	if err := cl.ValidateWithLeeway(jwt.Expected{Time: now}, assertionLeeway); err != nil {
		return store.Client{}, errBadClient
	}
	exp := cl.Expiry.Time()
	if exp.After(now.Add(maxAssertionLifetime)) {
		return store.Client{}, oauth.New(oauth.CodeInvalidClient, "the client assertion lives too long")
	}
	// A jti is single use (RFC 7523 §3 item 7). One atomic store operation
	// checks and records it, so concurrent copies of one assertion cannot all
	// pass. The record outlives the last instant the assertion is accepted
	// (exp + leeway, inclusive) by a second.
	jti := sha256.Sum256([]byte(cl.ID))
	err = s.store.UseClientAssertion(ctx, store.ClientAssertion{
		ClientID: c.ID, JTIHash: jti[:], ExpiresAt: exp.Add(assertionLeeway + time.Second),
	}, now)
	if errors.Is(err, store.ErrAlreadyExists) {
		return store.Client{}, oauth.New(oauth.CodeInvalidClient, "the client assertion was already used")
	}
	if err != nil {
		return store.Client{}, err
	}
	return c, nil
}

// clientKeys returns the client's registered public keys, inline (jwks) or
// fetched from jwks_uri.
func (s *Server) keysOf(ctx context.Context, c store.Client) (jose.JSONWebKeySet, error) {
	var ks jose.JSONWebKeySet
	if len(c.Metadata.JWKS) > 0 {
		err := json.Unmarshal(c.Metadata.JWKS, &ks)
		return ks, err
	}
	if c.Metadata.JWKSURI == "" {
		return ks, errors.New("the client has no keys")
	}
	return s.fetchClientKeys(ctx, c.Metadata.JWKSURI)
}
