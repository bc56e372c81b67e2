package provider

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"hash"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/pkce"
	"github.com/authzd/authz/provider/store"
	"github.com/authzd/authz/provider/tokens"
)

// tokenRequest is a token request (RFC 6749 §4.1.3, §4.4.2, §6) parsed once
// from the body.
type tokenRequest struct {
	grantType    string
	code         string
	redirectURI  string
	verifier     string
	refreshToken string
	scope        string
	scopeSent    bool
	resources    []string
}

// tokenParams are single-valued (RFC 6749 §3.2: parameters must not repeat).
var tokenParams = []string{"grant_type", "code", "redirect_uri", "code_verifier", "refresh_token", "scope",
	"client_id", "client_secret", "client_assertion", "client_assertion_type"}

// parseTokenRequest reads the body of a token request. Parameters in the URL
// query are not read: credentials never travel in a URL.
func parseTokenRequest(r *http.Request) (url.Values, *tokenRequest, error) {
	if err := r.ParseForm(); err != nil {
		return nil, nil, formError(err)
	}
	form := r.PostForm
	if name, ok := singleValued(form, tokenParams...); !ok {
		return nil, nil, oauth.New(oauth.CodeInvalidRequest, "parameter "+name+" must not be repeated")
	}
	_, scopeSent := form["scope"]
	return form, &tokenRequest{
		grantType:    form.Get("grant_type"),
		code:         form.Get("code"),
		redirectURI:  form.Get("redirect_uri"),
		verifier:     form.Get("code_verifier"),
		refreshToken: form.Get("refresh_token"),
		scope:        form.Get("scope"),
		scopeSent:    scopeSent,
		resources:    form["resource"],
	}, nil
}

// tokenResponse is RFC 6749 §5.1.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope,omitempty"`
	// IDToken is the OpenID Connect ID token (OIDC Core §3.1.3.3), when
	// openid was granted.
	IDToken string `json:"id_token,omitempty"`
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) error {
	form, req, err := parseTokenRequest(r)
	if err != nil {
		return err
	}
	client, err := s.authenticateClient(r, form)
	if err != nil {
		return err
	}
	setClientID(r.Context(), client.ID)
	var resp *tokenResponse
	switch req.grantType {
	case "":
		return oauth.New(oauth.CodeInvalidRequest, "grant_type is required")
	case oauth.GrantAuthorizationCode:
		resp, err = s.exchangeCode(r.Context(), client, req)
	case oauth.GrantRefreshToken:
		resp, err = s.refresh(r.Context(), client, req)
	case oauth.GrantClientCredentials:
		resp, err = s.clientCredentials(r.Context(), client, req)
	default:
		return oauth.New(oauth.CodeUnsupportedGrantType, "unsupported grant_type")
	}
	if err != nil {
		return err
	}
	writeTokenJSON(w, http.StatusOK, resp)
	return nil
}

// The header values of a response carrying credentials, shared by every
// such response instead of a new slice per header per request: net/http
// only reads them, and Header.Add or Set never write into one.
var (
	credentialContentType  = []string{"application/json;charset=UTF-8"}
	credentialCacheControl = []string{"no-store"}
	credentialPragma       = []string{"no-cache"}
)

// setCredentialHeaders sets what RFC 6749 §5.1 requires of a response
// carrying credentials.
func setCredentialHeaders(h http.Header) {
	h["Content-Type"] = credentialContentType
	h["Cache-Control"] = credentialCacheControl
	h["Pragma"] = credentialPragma
}

// writeTokenJSON writes a response carrying credentials (RFC 6749 §5.1).
func writeTokenJSON(w http.ResponseWriter, status int, v any) {
	setCredentialHeaders(w.Header())
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// errBadClient is the one answer to every failed client authentication, so
// it reveals nothing about which part was wrong.
var errBadClient = oauth.New(oauth.CodeInvalidClient, "client authentication failed")

// authenticateClient authenticates the caller (RFC 6749 §2.3):
// client_secret_basic, client_secret_post, or none for public clients.
// Sending credentials in two places is invalid_request.
func (s *Server) authenticateClient(r *http.Request, form url.Values) (store.Client, error) {
	basicID, basicSecret, hasBasic, err := basicCredentials(r)
	if err != nil {
		return store.Client{}, err
	}
	postID, postSecret := form.Get("client_id"), form.Get("client_secret")
	_, hasPostSecret := form["client_secret"]
	if form.Get("client_assertion") != "" || form.Get("client_assertion_type") != "" {
		if hasBasic || hasPostSecret {
			return store.Client{}, oauth.New(oauth.CodeInvalidRequest, "use exactly one client authentication method")
		}
		return s.authenticateAssertion(r.Context(), form)
	}
	var id, secret string
	switch {
	case hasBasic && hasPostSecret:
		return store.Client{}, oauth.New(oauth.CodeInvalidRequest, "use exactly one client authentication method")
	case hasBasic:
		if postID != "" && postID != basicID {
			return store.Client{}, oauth.New(oauth.CodeInvalidRequest, "client_id does not match the Authorization header")
		}
		id, secret = basicID, basicSecret
	case hasPostSecret:
		id, secret = postID, postSecret
	default:
		id = postID
	}
	if id == "" {
		return store.Client{}, errBadClient
	}
	c, cached, err := s.clients.get(r.Context(), id)
	if err == nil && cached && s.checkClientSecret(c, secret, hasBasic || hasPostSecret) != nil {
		// Refused on a cached record: ask the store before saying no, so
		// a secret rotated or a client changed elsewhere works at once.
		s.clients.forget(id)
		c, _, err = s.clients.get(r.Context(), id)
	}
	if errors.Is(err, store.ErrNotFound) {
		return store.Client{}, errBadClient
	}
	if de := (*documentError)(nil); errors.As(err, &de) {
		return store.Client{}, oauth.New(oauth.CodeInvalidClient, de.Error())
	}
	if err != nil {
		return store.Client{}, err
	}
	if err := s.checkClientSecret(c, secret, hasBasic || hasPostSecret); err != nil {
		return store.Client{}, err
	}
	return c, nil
}

// checkClientSecret checks what was presented against the client record.
func (s *Server) checkClientSecret(c store.Client, secret string, sentSecret bool) error {
	if c.Public() {
		if secret != "" {
			// A public client has no secret; presenting one is a
			// misconfigured client, not a credential to ignore. An empty
			// one (Basic "id:") only identifies the client.
			return errBadClient
		}
		return nil
	}
	if !sentSecret {
		return errBadClient
	}
	if c.Metadata.TokenEndpointAuthMethod == oauth.AuthPrivateKeyJWT {
		return errBadClient
	}
	if !tokens.Equal(tokens.Hash(secret), c.SecretHash) {
		return errBadClient
	}
	if !c.SecretExpiresAt.IsZero() && !s.opts.Now().Before(c.SecretExpiresAt) {
		return oauth.New(oauth.CodeInvalidClient, "the client secret has expired")
	}
	return nil
}

// basicCredentials reads HTTP Basic client credentials, which RFC 6749
// §2.3.1 form-encodes before base64.
func basicCredentials(r *http.Request) (id, secret string, ok bool, err error) {
	if len(r.Header.Values("Authorization")) > 1 {
		return "", "", false, oauth.New(oauth.CodeInvalidRequest, "more than one Authorization header")
	}
	rawID, rawSecret, ok := r.BasicAuth()
	if !ok {
		if r.Header.Get("Authorization") != "" {
			return "", "", false, errBadClient
		}
		return "", "", false, nil
	}
	id, err1 := url.QueryUnescape(rawID)
	secret, err2 := url.QueryUnescape(rawSecret)
	if err1 != nil || err2 != nil {
		return "", "", false, errBadClient
	}
	return id, secret, true, nil
}

// exchangeCode redeems an authorization code (RFC 6749 §4.1.3).
func (s *Server) exchangeCode(ctx context.Context, c store.Client, req *tokenRequest) (*tokenResponse, error) {
	if req.code == "" {
		return nil, oauth.New(oauth.CodeInvalidRequest, "code is required")
	}
	if req.verifier == "" {
		return nil, oauth.New(oauth.CodeInvalidRequest, "code_verifier is required (PKCE, RFC 7636)")
	}
	if !allowedGrant(c, oauth.GrantAuthorizationCode) {
		return nil, oauth.New(oauth.CodeUnauthorizedClient, "the client is not registered for the authorization_code grant")
	}
	if err := s.prepareIDToken(ctx, c); err != nil {
		return nil, err
	}
	now := s.opts.Now()
	// The checks and the refresh token run inside the store's consume
	// transaction: a code that fails a check is spent and its grant
	// revoked, so a stolen code is worth nothing to anyone; a database
	// failure while storing the refresh token leaves the code redeemable,
	// so the client's retry is not mistaken for a replay.
	//
	// The grant.created event is stored by the same transaction (issue 13:
	// no second round trip or commit), so it exists if and only if the
	// grant does; its log line and metric follow once that has committed.
	//
	// What the redemption decided, in one variable: the callback shares it
	// with this function, so it lives on the heap, once rather than per
	// field.
	var out struct {
		resources []string
		events    []store.AuditEvent
		refusal   codeRefusal
	}
	resp := &tokenResponse{}
	code, err := s.store.ConsumeAuthCode(ctx, tokens.Hash(req.code), now, func(code store.AuthCode) (store.Redemption, error) {
		if code.ClientID != c.ID {
			return out.refusal.refuse(code, refusedClient, oauth.New(oauth.CodeInvalidGrant, "the authorization code was issued to another client"))
		}
		if !redirectMatchesCode(req.redirectURI, code.RedirectURI, c) {
			return out.refusal.refuse(code, refusedRedirectURI, oauth.New(oauth.CodeInvalidGrant, "redirect_uri does not match the authorization request"))
		}
		if !pkce.VerifyS256(req.verifier, code.CodeChallenge) {
			return out.refusal.refuse(code, refusedVerifier, oauth.New(oauth.CodeInvalidGrant, "code_verifier does not match the code_challenge"))
		}
		var err error
		if out.resources, err = narrowResources(code.Resources, req.resources); err != nil {
			return out.refusal.refuse(code, refusedResource, err)
		}
		red := store.Redemption{Events: []store.AuditEvent{auditEvent(ctx, store.AuditEvent{
			Name: EventGrantCreated, Actor: ActorUser, Subject: code.UserID, ClientID: c.ID,
			Details: map[string]string{"grant_id": code.GrantID, "scope": strings.Join(code.Scopes, " ")}}, now)}}
		out.events = red.Events
		if !allowedGrant(c, oauth.GrantRefreshToken) {
			return red, nil
		}
		// The grant was created with the code, so its absolute lifetime
		// ends GrantTTL after the code's creation.
		rt, secret, err := s.newRefreshToken(code.GrantID, c.ID, "", now, code.CreatedAt.Add(s.opts.GrantTTL))
		if err != nil {
			return store.Redemption{}, err
		}
		resp.RefreshToken, red.Refresh = secret, &rt
		return red, nil
	})
	switch {
	case errors.Is(err, store.ErrCodeReused):
		// The store says which grant the replay revoked (code carries it).
		s.log.WarnContext(ctx, "authorization code replayed; its grant is revoked", "client_id", c.ID, "grant_id", code.GrantID)
		s.audit(ctx, store.AuditEvent{Name: EventCodeReplayed, Actor: ActorClient, Subject: code.UserID, ClientID: c.ID, Outcome: "grant_revoked",
			Details: map[string]string{"grant_id": code.GrantID}})
		return nil, oauth.New(oauth.CodeInvalidGrant, "the authorization code has already been used")
	case errors.Is(err, store.ErrCodeSpent):
		// Nothing was revoked and no token exists to revoke: typically a
		// client retrying after its exchange failed a check (wrong
		// code_verifier), which spent the code and revoked its grant
		// then. INFO, not WARN: this request changed nothing, and WARN
		// stays the line an operator alerts on when live tokens die.
		s.log.InfoContext(ctx, "spent authorization code presented again; its grant has no live token, nothing to revoke", "client_id", c.ID, "grant_id", code.GrantID)
		return nil, oauth.New(oauth.CodeInvalidGrant, "the authorization code has already been used")
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrExpired), errors.Is(err, store.ErrGrantRevoked):
		return nil, oauth.New(oauth.CodeInvalidGrant, "the authorization code is invalid or expired")
	case out.refusal.err != nil && errors.Is(err, out.refusal.err):
		// The store returns the refusal itself only once the code's
		// deletion and its grant's revocation have committed (a failed
		// commit returns the commit's error, and nothing happened).
		s.codeRefused(ctx, c, &out.refusal)
		return nil, err
	case err != nil:
		return nil, err // the store's, or a failure inside redeem
	}
	s.markUsed(ctx, c, now)
	s.audited(ctx, out.events)
	if resp, err = s.completeTokenResponse(ctx, resp, code.UserID, c.ID, code.GrantID, code.Scopes, out.resources, now); err != nil {
		return nil, err
	}
	return s.withIDToken(ctx, resp, c, code.UserID, code.GrantID, code.Scopes, code.Nonce, code.AuthTime, now)
}

// Why an authorization code was refused inside its redemption: the
// reason logged and audited with code.refused. Fixed words, never anything
// the request carried.
const (
	// RFC 6749 §4.1.3: a code issued to another client; someone else's
	// code being tried (RFC 9700 §4.5, code injection).
	refusedClient = "client"
	// RFC 6749 §4.1.3, §10.6: not the redirect_uri the code was sent to.
	refusedRedirectURI = "redirect_uri"
	// RFC 7636 §4.6: the verifier does not hash to the code's challenge,
	// the interception PKCE exists to stop (RFC 7636 §1, RFC 9700 §4.5).
	refusedVerifier = "code_verifier"
	// RFC 8707 §2.2: a resource the grant does not cover.
	refusedResource = "resource"
)

// codeRefusal is what exchangeCode's redeem callback remembers of a code
// that failed a check: the store then spends the code and revokes its
// grant, and returns only the error, so the grant and its user come from
// here.
type codeRefusal struct {
	reason, grantID, userID string
	// err is the error the callback returned; the store returns it (and
	// nothing else) once the revocation has committed.
	err error
}

// refuse records why code was refused and returns err for the callback to
// return.
func (r *codeRefusal) refuse(code store.AuthCode, reason string, err error) (store.Redemption, error) {
	*r = codeRefusal{reason: reason, grantID: code.GrantID, userID: code.UserID, err: err}
	return store.Redemption{}, err
}

// withIDToken adds the ID token when openid was granted. A refresh passes
// no nonce: the nonce belongs to one authentication request (OIDC Core
// §12.2, errata), and auth_time stays the original authentication's.
func (s *Server) withIDToken(ctx context.Context, resp *tokenResponse, c store.Client, sub, grantID string, scopes []string, nonce string, authTime, now time.Time) (*tokenResponse, error) {
	if !s.oidcOn() || !slices.Contains(scopes, ScopeOpenID) {
		return resp, nil
	}
	idt, err := s.idToken(ctx, c, sub, grantID, nonce, authTime, resp.AccessToken, now)
	if err != nil {
		return nil, err
	}
	resp.IDToken = idt
	return resp, nil
}

// refresh exchanges a refresh token (RFC 6749 §6) with rotation. The store
// decides win / grace / reuse in one transaction; the response is written
// only after it committed.
func (s *Server) refresh(ctx context.Context, c store.Client, req *tokenRequest) (*tokenResponse, error) {
	if req.refreshToken == "" {
		return nil, oauth.New(oauth.CodeInvalidRequest, "refresh_token is required")
	}
	if !allowedGrant(c, oauth.GrantRefreshToken) {
		return nil, oauth.New(oauth.CodeUnauthorizedClient, "the client is not registered for the refresh_token grant")
	}
	if err := s.prepareIDToken(ctx, c); err != nil {
		return nil, err
	}
	now := s.opts.Now()
	// What the rotation decided, in one variable: the callback shares it
	// with this function, so it lives on the heap, once rather than per
	// field.
	var out struct {
		scopes, resources []string
		secret            string
		hash              []byte
		// successorKey, when set, derives the successor instead of the
		// current key: the previous key the first rotation used
		// (graceSuccessorKey). parent is the presented token's ID.
		successorKey []byte
		parent       string
	}
	next := func(old store.RefreshToken, g store.Grant) (store.RefreshToken, error) {
		// Checked before anything is written: another client's token is
		// neither rotated nor counted as reuse.
		if old.ClientID != c.ID {
			return store.RefreshToken{}, oauth.New(oauth.CodeInvalidGrant, "the refresh token was issued to another client")
		}
		var err error
		if out.scopes, err = s.narrowScopes(g.Scopes, req.scope, req.scopeSent); err != nil {
			return store.RefreshToken{}, err
		}
		if out.resources, err = narrowResources(g.Resources, req.resources); err != nil {
			return store.RefreshToken{}, err
		}
		// One successor per token: derived from the presented secret,
		// so a replay inside the grace window gets the same one.
		switch {
		case out.successorKey != nil:
			out.secret = successorUnder(out.successorKey, req.refreshToken)
		case !old.RotatedAt.IsZero() && len(s.successorKeys) > 1:
			// A grace replay while previous encryption keys are
			// configured: the first rotation may have derived the
			// successor under one of them. Find out before writing.
			out.parent = old.ID
			return store.RefreshToken{}, errSuccessorKeyUnknown
		default:
			out.secret = s.successorSecret(req.refreshToken)
		}
		out.hash = tokens.Hash(out.secret)
		id, err := s.newID()
		if err != nil {
			return store.RefreshToken{}, err
		}
		return store.RefreshToken{
			ID: id, Hash: out.hash, GrantID: g.ID, ClientID: c.ID, ParentID: old.ID,
			CreatedAt: now, ExpiresAt: minTime(now.Add(s.opts.RefreshIdleTTL), g.ExpiresAt),
		}, nil
	}
	presented := tokens.Hash(req.refreshToken)
	rot, err := s.store.RotateRefreshToken(ctx, presented, now, s.opts.RefreshGrace, next)
	if errors.Is(err, errSuccessorKeyUnknown) {
		if out.successorKey, err = s.graceSuccessorKey(ctx, req.refreshToken, out.parent); err == nil {
			rot, err = s.store.RotateRefreshToken(ctx, presented, now, s.opts.RefreshGrace, next)
		}
	}
	switch {
	case errors.Is(err, store.ErrRefreshReused):
		s.log.WarnContext(ctx, "rotated refresh token replayed after the grace window; grant revoked", "client_id", c.ID)
		s.metrics.refresh.WithLabelValues("reuse_detected").Inc()
		s.refreshReused(ctx, c, req.refreshToken)
		return nil, oauth.New(oauth.CodeInvalidGrant, "the refresh token has already been used")
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrExpired), errors.Is(err, store.ErrGrantRevoked):
		return nil, oauth.New(oauth.CodeInvalidGrant, "the refresh token is invalid, expired or revoked")
	case err != nil:
		return nil, err
	}
	if !tokens.Equal(rot.New.Hash, out.hash) {
		return nil, errors.New("provider: the store answered with a successor that is not the derived one")
	}
	s.markUsed(ctx, c, now)
	if rot.WithinGrace {
		s.metrics.refresh.WithLabelValues("grace").Inc()
	} else {
		s.metrics.refresh.WithLabelValues("rotated").Inc()
	}
	resp, err := s.completeTokenResponse(ctx, &tokenResponse{RefreshToken: out.secret}, rot.Grant.UserID, c.ID, rot.Grant.ID, out.scopes, out.resources, now)
	if err != nil {
		return nil, err
	}
	return s.withIDToken(ctx, resp, c, rot.Grant.UserID, rot.Grant.ID, out.scopes, "", rot.Grant.AuthTime, now)
}

// clientCredentials issues a token to a confidential client acting for
// itself (RFC 6749 §4.4). No refresh token, no grant, and no database write.
func (s *Server) clientCredentials(ctx context.Context, c store.Client, req *tokenRequest) (*tokenResponse, error) {
	if c.Public() {
		return nil, oauth.New(oauth.CodeUnauthorizedClient, "public clients cannot use client_credentials")
	}
	if !allowedGrant(c, oauth.GrantClientCredentials) {
		return nil, oauth.New(oauth.CodeUnauthorizedClient, "the client is not registered for the client_credentials grant")
	}
	// No user consents to these tokens, so an untrusted client gets them
	// only within allowances an administrator set (an initial access
	// token's policy), never the "anything offered" of an empty list: a
	// client registered before trust levels existed stops here too.
	if !trusted(c) && (len(c.Metadata.Scopes) == 0 || len(c.Metadata.Resources) == 0) {
		return nil, oauth.New(oauth.CodeUnauthorizedClient, "client_credentials needs scope and resource allowances from an administrator")
	}
	scopes, err := s.requestedScopes(c, nonEmpty(req.scope))
	if err != nil {
		return nil, err
	}
	resources, err := s.requestedResources(c, req.resources)
	if err != nil {
		return nil, err
	}
	now := s.opts.Now()
	s.markUsed(ctx, c, now)
	return s.completeTokenResponse(ctx, &tokenResponse{}, c.ID, c.ID, "", scopes, resources, now)
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// completeTokenResponse signs the access token (RFC 9068) and fills resp.
func (s *Server) completeTokenResponse(ctx context.Context, resp *tokenResponse, sub, clientID, grantID string, scopes, resources []string, now time.Time) (*tokenResponse, error) {
	jti, err := s.newID()
	if err != nil {
		return nil, err
	}
	exp := now.Add(s.opts.AccessTokenTTL)
	scope := strings.Join(scopes, " ")
	at, err := s.keys.signer(ctx).Sign(tokens.AccessTokenClaims{
		Issuer: s.opts.Issuer, Subject: sub, Audience: s.tokenAudience(resources, scopes, grantID), ClientID: clientID, Scope: scope,
		ID: jti, GrantID: grantID, IssuedAt: now, NotBefore: now, ExpiresAt: exp,
	})
	if err != nil {
		return nil, err
	}
	resp.AccessToken, resp.TokenType, resp.ExpiresIn, resp.Scope = at, "Bearer", int64(s.opts.AccessTokenTTL/time.Second), scope
	return resp, nil
}

// successorSecret derives the secret of the refresh token that succeeds
// presented: HMAC-SHA-256 under a subkey of the encryption key (issue 10:
// one successor per refresh token). Every replica derives the same one, the
// store keeps only its SHA-256, and without the key the successor of a
// token cannot be computed from the token.
//
// The HMAC is reused from a pool: a new one per refresh allocates and
// hashes the key's two pads every time; Reset restores the keyed state.
func (s *Server) successorSecret(presented string) string {
	m := s.successorMACs.Get().(hash.Hash)
	defer s.successorMACs.Put(m)
	m.Reset()
	_, _ = io.WriteString(m, presented)
	var sum [sha256.Size]byte
	return tokens.PrefixRefreshToken + base64.RawURLEncoding.EncodeToString(m.Sum(sum[:0]))
}

// errSuccessorKeyUnknown stops a grace replay's rotation, nothing written,
// until graceSuccessorKey has found the key its successor was derived with.
var errSuccessorKeyUnknown = errors.New("provider: the successor's key is not known yet")

// successorUnder is successorSecret under a given key (not pooled: only
// grace replays across an encryption-key change use it).
func successorUnder(key []byte, presented string) string {
	m := hmac.New(sha256.New, key)
	_, _ = io.WriteString(m, presented)
	return tokens.PrefixRefreshToken + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// graceSuccessorKey returns the successor key (current or previous) under
// which the successor of the presented token, parent, was derived at its
// first rotation: the key whose derivation is stored as parent's
// successor. Looked up by hash, as every secret is. With none stored, the
// current key: the existing behaviour.
func (s *Server) graceSuccessorKey(ctx context.Context, presented, parent string) ([]byte, error) {
	for _, k := range s.successorKeys {
		rt, _, err := s.store.GetRefreshToken(ctx, tokens.Hash(successorUnder(k, presented)))
		switch {
		case errors.Is(err, store.ErrNotFound):
			continue
		case err != nil:
			return nil, err
		case rt.ParentID == parent:
			return k, nil
		}
	}
	return s.successorKeys[0], nil
}

// newRefreshToken makes a refresh token whose idle lifetime ends no later
// than the grant's absolute lifetime.
func (s *Server) newRefreshToken(grantID, clientID, parentID string, now, grantExpires time.Time) (store.RefreshToken, string, error) {
	secret, err := tokens.NewSecret(s.opts.Rand, tokens.PrefixRefreshToken)
	if err != nil {
		return store.RefreshToken{}, "", err
	}
	id, err := s.newID()
	if err != nil {
		return store.RefreshToken{}, "", err
	}
	return store.RefreshToken{
		ID: id, Hash: tokens.Hash(secret), GrantID: grantID, ClientID: clientID, ParentID: parentID,
		CreatedAt: now, ExpiresAt: minTime(now.Add(s.opts.RefreshIdleTTL), grantExpires),
	}, secret, nil
}

// narrowScopes returns the scopes for a refreshed token: the grant's, or a
// subset of them when scope is sent (RFC 6749 §6: never wider).
func (s *Server) narrowScopes(granted []string, scope string, sent bool) ([]string, error) {
	if !sent {
		return granted, nil
	}
	req, ok := parseScope(scope)
	if !ok {
		return nil, errMalformedScope()
	}
	req = s.dropUnhandled(req)
	if !subset(req, granted) {
		return nil, oauth.New(oauth.CodeInvalidScope, "scope exceeds what was granted")
	}
	return req, nil
}

// narrowResources returns the audience for a token request: all authorized
// resources, or the subset named by resource parameters (RFC 8707 §2.2).
func narrowResources(authorized, requested []string) ([]string, error) {
	if len(requested) == 0 {
		return authorized, nil
	}
	return matchResources(requested, authorized, "resource was not authorized: ")
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// redirectMatchesCode applies RFC 6749 §4.1.3: when the authorization request
// carried redirect_uri, the token request must repeat it exactly; when it did
// not (one registered URI), the token request may omit it or repeat that one.
func redirectMatchesCode(sent, atAuthorize string, c store.Client) bool {
	if atAuthorize != "" {
		return sent == atAuthorize
	}
	return sent == "" || (len(c.Metadata.RedirectURIs) == 1 && sent == c.Metadata.RedirectURIs[0])
}
