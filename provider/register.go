package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/authzd/authz/provider/dcr"
	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/store"
	"github.com/authzd/authz/provider/tokens"
)

// registration is the RFC 7591 §3.2.1 response (and RFC 7592 §3's).
type registration struct {
	ClientID                string  `json:"client_id"`
	ClientIDIssuedAt        int64   `json:"client_id_issued_at"`
	ClientSecret            *string `json:"client_secret,omitempty"`
	ClientSecretExpiresAt   *int64  `json:"client_secret_expires_at,omitempty"`
	RegistrationAccessToken string  `json:"registration_access_token,omitempty"`
	RegistrationClientURI   string  `json:"registration_client_uri"`
	dcr.Metadata
	// Notice says what a registration or an RFC 7592 update kept or
	// narrowed (RFC 7591 §3.2.1 and RFC 7592 §2.2 let the server replace
	// values; this says which and why).
	Notice string `json:"notice,omitempty"`
}

func (s *Server) registrationView(c store.Client, secret, regToken string) registration {
	v := registration{
		ClientID: c.ID, ClientIDIssuedAt: c.CreatedAt.Unix(), RegistrationAccessToken: regToken,
		RegistrationClientURI: s.url(PathRegister + "/" + c.ID), Metadata: toDCR(c.Metadata),
	}
	if secret != "" {
		var exp int64
		if !c.SecretExpiresAt.IsZero() {
			exp = c.SecretExpiresAt.Unix()
		}
		v.ClientSecret, v.ClientSecretExpiresAt = &secret, &exp
	}
	return v
}

// bearerToken returns the token of an "Authorization: Bearer" header.
func bearerToken(r *http.Request) (string, bool) {
	h := r.Header.Values("Authorization")
	if len(h) != 1 {
		return "", false
	}
	scheme, tok, ok := strings.Cut(h[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "", false
	}
	return strings.TrimSpace(tok), true
}

// maxRegistrationBytes bounds a registration or update document: real
// metadata is a few hundred bytes, and every stored byte is kept for as long
// as the client lives (issue 11: 56 KB registrations by the thousand).
const maxRegistrationBytes = 16 << 10

var errBadRegistrationToken = &oauth.Error{Code: oauth.CodeInvalidToken, Description: "missing or invalid access token"}

// handleRegister is RFC 7591 §3.1.
func (s *Server) handleRegister(w http.ResponseWriter, r *http.Request) error {
	var policy registrationPolicy
	switch s.opts.RegistrationPolicy {
	case RegistrationOff:
		return &oauth.Error{Code: oauth.CodeAccessDenied, Description: "dynamic client registration is disabled", Status: http.StatusForbidden}
	}
	if err := s.registrationAllowed(r); err != nil {
		return err
	}
	switch s.opts.RegistrationPolicy {
	case RegistrationToken:
		tok, ok := bearerToken(r)
		if !ok {
			return errBadRegistrationToken
		}
		iat, err := s.store.GetInitialAccessToken(r.Context(), tokens.Hash(tok), s.opts.Now())
		if err != nil {
			if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrExpired) {
				return errBadRegistrationToken
			}
			return err
		}
		policy = policyOf(iat)
	case RegistrationOpen:
		// An initial access token is optional here (RFC 7591 §3); a good
		// one brings its administrator's policy, anything else registers
		// anonymously, as before tokens carried policies.
		if tok, ok := bearerToken(r); ok {
			iat, err := s.store.GetInitialAccessToken(r.Context(), tokens.Hash(tok), s.opts.Now())
			switch {
			case err == nil:
				policy = policyOf(iat)
			case !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrExpired):
				return err
			}
		}
	}
	m, err := s.decodeMetadata(r)
	if err != nil {
		return err
	}
	now := s.opts.Now()
	c, secret, err := NewClient(m, now, s.opts.Rand)
	if err != nil {
		return err
	}
	c.Trust = store.TrustRegistered
	note, err := s.checkRegistration(&c.Metadata, policy)
	if err != nil {
		return err
	}
	regToken, err := tokens.NewSecret(s.opts.Rand, tokens.PrefixRegistrationToken)
	if err != nil {
		return err
	}
	c.RegistrationTokenHash = tokens.Hash(regToken)
	c.Trust = store.TrustRegistered // RFC 9700 §4.11.2: anyone may have made it
	if err := s.store.CreateClient(r.Context(), c); err != nil {
		return err
	}
	s.audit(r.Context(), ClientEvent(EventClientRegistered, ActorClient, c))
	v := s.registrationView(c, secret, regToken)
	v.Notice = note
	writeTokenJSON(w, http.StatusCreated, v)
	return nil
}

// registrationAllowed counts a registration attempt against the client IP's
// limit, in the store so every replica shares it (one atomic hit: no read
// then write). Open registration means anyone on the internet can make
// clients; the limit keeps that from filling the database.
func (s *Server) registrationAllowed(r *http.Request) error {
	return s.registrationAllowedFrom(r.Context(), s.clientIP(r))
}

// registrationAllowedFrom is registrationAllowed for a known client IP; the
// first fetch of a client ID metadata document counts against the same
// limit, since it makes a client row just as a registration does.
func (s *Server) registrationAllowedFrom(ctx context.Context, ip netip.Addr) error {
	now := s.opts.Now()
	var until time.Time
	for _, n := range limitNets(ip) {
		c, err := s.store.HitCounter(ctx, "register:ip:"+n.key, s.opts.RegistrationWindow, now)
		if err != nil {
			return err
		}
		if c.Count > s.opts.RegistrationsPerIP*n.factor && c.ExpiresAt.After(until) {
			until = c.ExpiresAt
		}
	}
	if !until.IsZero() {
		return &oauth.Error{Code: oauth.CodeSlowDown, Status: http.StatusTooManyRequests, RetryAfter: until.Sub(now),
			Description: "too many registrations from this address; retry after " + until.UTC().Format(time.RFC3339)}
	}
	return nil
}

// decodeMetadata reads an RFC 7591 metadata document from the body.
func (s *Server) decodeMetadata(r *http.Request) (store.ClientMetadata, error) {
	return s.decodeMetadataKeeping(r, nil)
}

// decodeMetadataKeeping also decodes the raw document into raw when it is
// not nil (RFC 7592 updates carry client_id and client_secret).
func (s *Server) decodeMetadataKeeping(r *http.Request, raw *map[string]any) (store.ClientMetadata, error) {
	ct := r.Header.Get("Content-Type")
	if ct != "" && !strings.HasPrefix(strings.ToLower(ct), "application/json") {
		return store.ClientMetadata{}, oauth.New(oauth.CodeInvalidClientMetadata, "the body must be application/json")
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRegistrationBytes+1))
	if err != nil {
		return store.ClientMetadata{}, oauth.New(oauth.CodeInvalidClientMetadata, "the body could not be read")
	}
	if len(body) > maxRegistrationBytes {
		return store.ClientMetadata{}, &oauth.Error{Code: oauth.CodeInvalidClientMetadata, Status: http.StatusRequestEntityTooLarge,
			Description: "body: larger than 16 KiB"}
	}
	d, err := dcr.Decode(bytes.NewReader(body))
	if err != nil {
		return store.ClientMetadata{}, err
	}
	if raw != nil {
		if err := json.Unmarshal(body, raw); err != nil {
			return store.ClientMetadata{}, oauth.New(oauth.CodeInvalidClientMetadata, "the body is not a JSON object")
		}
	}
	if err := d.Normalize(); err != nil {
		return store.ClientMetadata{}, err
	}
	var m store.ClientMetadata
	fromDCR(&m, d)
	return m, nil
}

// registeredClient authenticates an RFC 7592 request by its registration
// access token. Every failure is the same 401, so the answer does not reveal
// whether a client exists.
func (s *Server) registeredClient(r *http.Request) (store.Client, error) {
	tok, ok := bearerToken(r)
	if !ok {
		return store.Client{}, errBadRegistrationToken
	}
	c, err := s.store.GetClient(r.Context(), mux.Vars(r)["client_id"])
	if errors.Is(err, store.ErrNotFound) {
		return store.Client{}, errBadRegistrationToken
	}
	if err != nil {
		return store.Client{}, err
	}
	if c.RegistrationTokenHash == nil || !tokens.Equal(tokens.Hash(tok), c.RegistrationTokenHash) {
		return store.Client{}, errBadRegistrationToken
	}
	return c, nil
}

// handleClientConfiguration is RFC 7592: read, update, delete.
func (s *Server) handleClientConfiguration(w http.ResponseWriter, r *http.Request) error {
	c, err := s.registeredClient(r)
	if err != nil {
		return err
	}
	switch r.Method {
	case http.MethodGet:
		writeTokenJSON(w, http.StatusOK, s.registrationView(c, "", ""))
		return nil
	case http.MethodDelete:
		// Deleting the client removes its grants, so every refresh token
		// stops at once and its access tokens fail introspection. The
		// delete spends the token that authorised it, checked in the same
		// store operation: an update racing it with that token rotates it,
		// and then this delete finds a bad token (RFC 7592 §2.3: 401), so
		// of the two exactly one succeeds.
		defer s.clients.forget(c.ID)
		if err := s.store.DeleteRegisteredClient(r.Context(), c.ID, c.RegistrationTokenHash); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return errBadRegistrationToken
			}
			return err
		}
		s.audit(r.Context(), ClientEvent(EventClientDeleted, ActorClient, c))
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	return s.updateRegistration(w, r, c)
}

// updateRegistration is RFC 7592 §2.2: the body replaces the metadata.
// What the update may change is decided on the client as stored, inside
// the store's one operation that also spends the registration token: an
// administrator who narrowed the client's allowances after c was read (to
// authenticate this request) has the last word, and the update never
// writes back what it read before.
func (s *Server) updateRegistration(w http.ResponseWriter, r *http.Request, c store.Client) error {
	var raw map[string]any
	wanted, err := s.decodeMetadataKeeping(r, &raw)
	if err != nil {
		return err
	}
	if id, ok := raw["client_id"].(string); !ok || id != c.ID {
		return oauth.New(oauth.CodeInvalidRequest, "client_id in the body must match the client being updated (RFC 7592 §2.2)")
	}
	sec, hasSecret := raw["client_secret"].(string)
	regToken, err := tokens.NewSecret(s.opts.Rand, tokens.PrefixRegistrationToken)
	if err != nil {
		return err
	}
	now := s.opts.Now()
	var secret, note string
	edit := func(cur *store.Client) error {
		if hasSecret && (cur.SecretHash == nil || !tokens.Equal(tokens.Hash(sec), cur.SecretHash)) {
			return oauth.New(oauth.CodeInvalidClientMetadata, "client_secret does not match")
		}
		// A fresh copy per call: the rules below write into it.
		m := cloneClient(store.Client{Metadata: wanted}).Metadata
		// The administrator's allowances are not the client's to change.
		n, err := s.keepAllowances(*cur, &m)
		if err != nil {
			return err
		}
		note = n
		secret, err = UpdateClient(cur, m, false, now, s.opts.Rand)
		return err
	}
	// The update spends the token that authorised it: the store replaces
	// the client only while that token is still the client's, so of two
	// updates with one token the second is refused like a wrong token.
	defer s.clients.forget(c.ID)
	c, err = s.store.UpdateRegisteredClient(r.Context(), c.ID, c.RegistrationTokenHash, tokens.Hash(regToken), edit)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return errBadRegistrationToken
		}
		return err
	}
	s.audit(r.Context(), ClientEvent(EventClientUpdated, ActorClient, c))
	v := s.registrationView(c, secret, regToken)
	v.Notice = note
	writeTokenJSON(w, http.StatusOK, v)
	return nil
}
