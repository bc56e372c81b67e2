package provider

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/authzd/authz/internal/resourceid"
	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/store"
	"github.com/authzd/authz/provider/tokens"
)

// handleRevoke is RFC 7009. Confidential clients authenticate; public
// clients send client_id. Whatever the token is, the answer is 200 unless
// the request itself is bad: an unknown token, or another client's, is not
// an error (§2.2) and has no effect.
func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) error {
	req, err := s.parseTokenQuery(r, false)
	if err != nil {
		return err
	}
	// token_type_hint is only a hint (§2.1): the token's own form decides.
	ev, err := s.revoke(r.Context(), req.client, req.token)
	if err != nil {
		return err
	}
	if ev != nil {
		s.audit(r.Context(), *ev)
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	return nil
}

// tokenQuery is a revocation (RFC 7009 §2.1) or introspection (RFC 7662
// §2.1) request: an authenticated client asking about one token.
type tokenQuery struct {
	client store.Client
	token  string
}

// parseTokenQuery parses either request once (house rule 1): the form,
// no repeated parameter, the client's authentication (confidential only,
// for introspection), then the token.
func (s *Server) parseTokenQuery(r *http.Request, confidential bool) (*tokenQuery, error) {
	if err := r.ParseForm(); err != nil {
		return nil, formError(err)
	}
	if name, ok := singleValued(r.PostForm, "token", "token_type_hint", "client_id", "client_secret"); !ok {
		return nil, oauth.New(oauth.CodeInvalidRequest, "parameter "+name+" must not be repeated")
	}
	c, err := s.authenticateClient(r, r.PostForm)
	if err != nil {
		return nil, err
	}
	if confidential && c.Public() {
		return nil, errBadClient
	}
	token := r.PostForm.Get("token")
	if token == "" {
		return nil, oauth.New(oauth.CodeInvalidRequest, "token is required")
	}
	return &tokenQuery{client: c, token: token}, nil
}

// revoke revokes token if it is c's and returns the token.revoked audit
// event, or nil when nothing was revoked (unknown, foreign or expired).
func (s *Server) revoke(ctx context.Context, c store.Client, token string) (*store.AuditEvent, error) {
	revoked := func(kind, subject, grantID string) *store.AuditEvent {
		return &store.AuditEvent{Name: EventTokenRevoked, Actor: ActorClient, Subject: subject, ClientID: c.ID,
			Details: map[string]string{"token_type": kind, "grant_id": grantID}}
	}
	now := s.opts.Now()
	if strings.HasPrefix(token, tokens.PrefixRefreshToken) {
		rt, g, err := s.store.GetRefreshToken(ctx, tokens.Hash(token))
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		if rt.ClientID != c.ID {
			return nil, nil
		}
		// Revoking a refresh token ends its whole grant (§2.1).
		if err := s.store.RevokeGrant(ctx, g.ID, now); err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		return revoked("refresh_token", g.UserID, g.ID), nil
	}
	// Whichever replica receives the call records the jti in the shared
	// store, so every replica answers active: false afterwards (RFC 7009
	// §2.1). A token signed with a key this replica has not loaded yet
	// makes it reload first; when it cannot tell, or cannot record the
	// revocation, the caller gets an error, never a 200 that did nothing.
	cl, ok, err := s.keys.verify(ctx, token, s.opts.Issuer, now)
	if err != nil {
		return nil, err
	}
	if !ok {
		// Malformed, foreign or expired: nothing to revoke.
		return nil, nil
	}
	if cl.ClientID != c.ID || cl.ID == "" {
		return nil, nil
	}
	if err := s.store.RevokeAccessToken(ctx, cl.ID, cl.ExpiresAt); err != nil {
		return nil, err
	}
	return revoked("access_token", cl.Subject, cl.GrantID), nil
}

// introspection is the RFC 7662 §2.2 response.
type introspection struct {
	Active    bool     `json:"active"`
	Scope     string   `json:"scope,omitempty"`
	ClientID  string   `json:"client_id,omitempty"`
	Subject   string   `json:"sub,omitempty"`
	Audience  []string `json:"aud,omitempty"`
	Issuer    string   `json:"iss,omitempty"`
	ExpiresAt int64    `json:"exp,omitempty"`
	IssuedAt  int64    `json:"iat,omitempty"`
	JTI       string   `json:"jti,omitempty"`
	TokenType string   `json:"token_type,omitempty"`
}

// handleIntrospect is RFC 7662. The caller must authenticate as a
// confidential client (resource servers are registered as such). Anything
// not active, and anything the caller may not know about, is exactly
// {"active": false}. Introspection only reads: it never rotates a refresh
// token or counts as a use of one.
func (s *Server) handleIntrospect(w http.ResponseWriter, r *http.Request) error {
	req, err := s.parseTokenQuery(r, true)
	if err != nil {
		return err
	}
	resp, err := s.introspect(r.Context(), req.client, req.token)
	if err != nil {
		return err
	}
	writeTokenJSON(w, http.StatusOK, resp)
	return nil
}

var inactive = introspection{Active: false}

// introspect answers for caller (RFC 7662 §2.2, §4: the server decides
// what a caller may learn). Every client may learn about tokens issued to
// itself; a client an administrator marked Introspect also about access
// tokens whose audience includes one of its own resources (a resource
// server checking tokens presented to it). Refresh tokens are only ever
// shown to the client holding them.
func (s *Server) introspect(ctx context.Context, caller store.Client, token string) (introspection, error) {
	now := s.opts.Now()
	if strings.HasPrefix(token, tokens.PrefixRefreshToken) {
		rt, g, err := s.store.GetRefreshToken(ctx, tokens.Hash(token))
		if errors.Is(err, store.ErrNotFound) {
			return inactive, nil
		}
		if err != nil {
			return inactive, err
		}
		if rt.ClientID != caller.ID {
			return inactive, nil
		}
		// A rotated token is spent, except inside the grace window where it
		// can still be exchanged.
		spent := !rt.RotatedAt.IsZero() && !now.Before(rt.RotatedAt.Add(s.opts.RefreshGrace))
		if !g.Active(now) || !now.Before(rt.ExpiresAt) || spent {
			return inactive, nil
		}
		return introspection{
			Active: true, Scope: strings.Join(g.Scopes, " "), ClientID: rt.ClientID, Subject: g.UserID,
			Audience: g.Resources, Issuer: s.opts.Issuer, ExpiresAt: rt.ExpiresAt.Unix(), IssuedAt: rt.CreatedAt.Unix(),
			JTI: rt.ID, TokenType: "refresh_token",
		}, nil
	}
	cl, ok, err := s.keys.verify(ctx, token, s.opts.Issuer, now)
	if err != nil || !ok {
		return inactive, err
	}
	if cl.ClientID != caller.ID && !audienceOf(caller, cl.Audience) {
		return inactive, nil
	}
	if live, err := s.accessTokenLive(ctx, cl, now); err != nil || !live {
		return inactive, err
	}
	return introspection{
		Active: true, Scope: cl.Scope, ClientID: cl.ClientID, Subject: cl.Subject, Audience: cl.Audience,
		Issuer: cl.Issuer, ExpiresAt: cl.ExpiresAt.Unix(), IssuedAt: cl.IssuedAt.Unix(), JTI: cl.ID, TokenType: "Bearer",
	}, nil
}

// audienceOf reports whether caller is a resource server an administrator
// marked Introspect and aud names one of its resources. Its resource list
// must be explicit: an empty one (any resource, for tokens it asks for)
// grants no view of other clients' tokens.
func audienceOf(caller store.Client, aud []string) bool {
	if !caller.Metadata.Introspect {
		return false
	}
	for _, r := range caller.Metadata.Resources {
		if _, ok, _ := resourceid.Match(r, aud); ok {
			return true
		}
	}
	return false
}

// accessTokenLive checks what a signature cannot: the token was not revoked,
// its grant was not revoked, and its client still exists. The store answers
// all of it in one round trip; a failure to answer is an error (503), never
// an inactive token.
func (s *Server) accessTokenLive(ctx context.Context, cl tokens.AccessTokenClaims, now time.Time) (bool, error) {
	st, err := s.store.AccessTokenStatus(ctx, cl.ID, cl.GrantID, cl.ClientID, now)
	if err != nil {
		return false, err
	}
	return st.Live(now), nil
}
