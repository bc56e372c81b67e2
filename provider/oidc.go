package provider

import (
	"context"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/store"
	"github.com/authzd/authz/provider/tokens"
	"github.com/authzd/authz/wellknown"
)

// OpenID Connect scopes (OIDC Core §3.1.2.1, §5.4). They are offered
// whenever the OpenID Connect layer is on, to every client: they name
// claims about the user, not permissions at a resource.
const (
	ScopeProfile = "profile"
	ScopeEmail   = "email"
)

// oidcScopes are the scopes the OpenID Connect layer answers.
var oidcScopes = []string{ScopeOpenID, ScopeProfile, ScopeEmail}

// oidcOn reports whether the OpenID Connect layer answers.
func (s *Server) oidcOn() bool { return !s.opts.DisableOIDC }

// offersScope reports whether sc is a scope this server knows.
func (s *Server) offersScope(sc string) bool {
	return slices.Contains(s.opts.Scopes, sc) || (s.oidcOn() && slices.Contains(oidcScopes, sc))
}

// offeredScopes is scopes_supported: the configured scopes, then the
// OpenID Connect ones.
func (s *Server) offeredScopes() []string {
	out := slices.Clone(s.opts.Scopes)
	if s.oidcOn() {
		for _, sc := range oidcScopes {
			if !slices.Contains(out, sc) {
				out = append(out, sc)
			}
		}
	}
	return out
}

// claimsSupported lists every claim an ID token or UserInfo may carry.
var claimsSupported = []string{"sub", "iss", "aud", "azp", "exp", "iat", "auth_time", "nonce", "at_hash", "sid",
	"name", "preferred_username", "email", "email_verified"}

// promptValues are the prompt values understood (OIDC Core §3.1.2.1).
var promptValues = []string{"none", "login", "consent", "select_account"}

// addOpenIDMetadata adds the OpenID Connect fields that do not name an
// endpoint (OIDC Discovery §3); the endpoints come from the route table.
func (s *Server) addOpenIDMetadata(m *wellknown.OpenIDProviderMetadata) {
	m.IDTokenSigningAlgValuesSupported = oauth.IDTokenAlgorithms
	m.SubjectTypesSupported = []string{"public"}
	m.ClaimsSupported = claimsSupported
	m.PromptValuesSupported = promptValues
	// OIDC Discovery §3: request_uri_parameter_supported defaults to true,
	// so "false" must be said.
	m.RequestParameterSupported = false
	m.RequestURIParameterSupported = false
	m.ClaimsParameterSupported = false
}

// oidcRequest is the OpenID Connect part of an authorization request
// (OIDC Core §3.1.2.1), present when openid is among the granted scopes.
type oidcRequest struct {
	nonce     string
	prompt    []string
	maxAge    time.Duration
	hasMaxAge bool
	loginHint string
	hint      *tokens.IDTokenClaims
}

func (o *oidcRequest) promptNone() bool { return o != nil && slices.Contains(o.prompt, "none") }

func (o *oidcRequest) forceLogin() bool {
	return o != nil && (slices.Contains(o.prompt, "login") || slices.Contains(o.prompt, "select_account"))
}

func (o *oidcRequest) forceConsent() bool { return o != nil && slices.Contains(o.prompt, "consent") }

// oidcParams are single-valued OpenID Connect authorization parameters.
var oidcParams = []string{"nonce", "prompt", "max_age", "login_hint", "id_token_hint", "display", "ui_locales", "claims_locales", "acr_values"}

// maxNonce bounds the nonce: it is echoed into a token and stored.
const maxNonce = 512

// parseOIDC reads the OpenID Connect parameters. Nonce handling follows
// OIDC Core §3.1.2.1 and §15.5.2: the nonce is optional with the code flow,
// passed through unmodified, and bound to the single-use code, so an ID
// token carrying it is issued at most once. Detecting a replayed nonce is
// the relying party's check (§3.1.3.7 step 11), which that makes possible.
func (s *Server) parseOIDC(ctx context.Context, form url.Values, scopes []string) (*oidcRequest, error) {
	if form.Get("request") != "" {
		return nil, oauth.New(oauth.CodeRequestNotSupported, "request objects are not supported")
	}
	if form.Get("request_uri") != "" {
		return nil, oauth.New(oauth.CodeRequestURINotSupported, "request_uri is not supported")
	}
	if !s.oidcOn() || !slices.Contains(scopes, ScopeOpenID) {
		return nil, nil
	}
	o := &oidcRequest{nonce: form.Get("nonce"), loginHint: form.Get("login_hint")}
	if len(o.nonce) > maxNonce {
		return nil, oauth.New(oauth.CodeInvalidRequest, "nonce is longer than 512 characters")
	}
	for _, p := range strings.Fields(form.Get("prompt")) {
		if !slices.Contains(promptValues, p) {
			return nil, oauth.New(oauth.CodeInvalidRequest, "unsupported prompt value "+p)
		}
		if !slices.Contains(o.prompt, p) {
			o.prompt = append(o.prompt, p)
		}
	}
	if slices.Contains(o.prompt, "none") && len(o.prompt) > 1 {
		return nil, oauth.New(oauth.CodeInvalidRequest, "prompt=none must be alone (OIDC Core §3.1.2.1)")
	}
	if v, ok := form["max_age"]; ok {
		n, err := strconv.ParseInt(v[0], 10, 64)
		if err != nil || n < 0 || n > 1<<31 {
			return nil, oauth.New(oauth.CodeInvalidRequest, "max_age must be a non-negative number of seconds")
		}
		o.maxAge, o.hasMaxAge = time.Duration(n)*time.Second, true
	}
	if h := form.Get("id_token_hint"); h != "" {
		c, err := s.keys.verifyIDTokenHint(ctx, h, s.opts.Issuer)
		if errors.Is(err, tokens.ErrNotIDToken) {
			return nil, oauth.New(oauth.CodeInvalidRequest, "id_token_hint is not an ID token issued by this server")
		}
		if err != nil {
			return nil, err
		}
		o.hint = &c
	}
	return o, nil
}

// needsLogin reports whether the signed-in user must authenticate again
// for this request: prompt=login, an authentication older than max_age,
// or an id_token_hint naming someone else.
func (o *oidcRequest) needsLogin(user store.User, authTime, now time.Time) bool {
	if o == nil {
		return false
	}
	switch {
	case o.forceLogin():
		return true
	case o.hasMaxAge && now.Sub(authTime) > o.maxAge:
		return true
	case o.hint != nil && o.hint.Subject != user.ID:
		return true
	}
	return false
}

// reauthReturn is the authorization request to resume after a sign-in this
// request demanded: without the parameters that demanded it, which the
// sign-in just satisfied (the ID token's auth_time says when it happened,
// for the relying party's own max_age check).
func reauthReturn(form url.Values) url.Values {
	out := url.Values{}
	for k, v := range form {
		switch k {
		case "max_age", "id_token_hint":
			continue
		case "prompt":
			var keep []string
			for _, p := range strings.Fields(v[0]) {
				if p != "login" && p != "select_account" {
					keep = append(keep, p)
				}
			}
			if len(keep) > 0 {
				out.Set(k, strings.Join(keep, " "))
			}
			continue
		}
		out[k] = v
	}
	return out
}

// idTokenAlg is the client's ID-token algorithm (RS256 unless it
// registered another, OIDC Registration §2).
func idTokenAlg(c store.Client) string {
	if a := c.Metadata.IDTokenSignedResponseAlg; a != "" {
		return a
	}
	return "RS256"
}

// prepareIDToken loads the client's ID-token key before a code or refresh
// token is spent, so that a store failure can only happen while the
// client's retry is still welcome. It only reads: the key of a grant with
// openid was made when its code was (handleAuthorize), and a grant without
// openid needs none, so an exchange never writes a key.
func (s *Server) prepareIDToken(ctx context.Context, c store.Client) error {
	if !s.oidcOn() {
		return nil
	}
	return s.keys.loadIDSigner(ctx, idTokenAlg(c))
}

// idToken signs the ID token of a token response (OIDC Core §3.1.3.3):
// aud and azp are the client, sid the grant (as in the access token),
// at_hash binds it to the access token beside it. It lives as long as an
// access token: the signing keys' publication window (keyManager.tokenTTL)
// relies on that. Profile and email claims are served by UserInfo only, so
// issuing an ID token never reads the store after the code or refresh
// token was spent.
func (s *Server) idToken(ctx context.Context, c store.Client, sub, grantID, nonce string, authTime time.Time, accessToken string, now time.Time) (string, error) {
	signer, err := s.keys.idSigner(ctx, idTokenAlg(c))
	if err != nil {
		return "", err
	}
	return signer.Sign(tokens.IDTokenClaims{
		Issuer: s.opts.Issuer, Subject: sub, Audience: c.ID, AuthorizedParty: c.ID, Nonce: nonce,
		AccessTokenHash: tokens.AccessTokenHash(signer.Algorithm(), accessToken), SessionID: grantID,
		IssuedAt: now, ExpiresAt: now.Add(s.opts.AccessTokenTTL), AuthTime: authTime,
	})
}

// tokenAudience adds the UserInfo endpoint to the audience of a token that
// carries openid: UserInfo accepts only tokens naming it (see handleUserInfo).
// A client acting for itself (no grant, no user) never gets it.
func (s *Server) tokenAudience(resources, scopes []string, grantID string) []string {
	if !s.oidcOn() || grantID == "" || !slices.Contains(scopes, ScopeOpenID) {
		return resources
	}
	return append(slices.Clone(resources), s.url(PathUserInfo))
}

// handleUserInfo is the UserInfo endpoint (OIDC Core §5.3). It accepts an
// access token of this server in the Authorization header only (RFC 6750
// §2.1; never in a query), whose aud names the UserInfo endpoint and whose
// scope holds openid: tokens get that audience only when openid was
// granted, so a token for an API is not a UserInfo token, and a UserInfo
// token reveals the user's identity claims and nothing else. A revoked
// token or grant, a deleted client or a deleted user is invalid_token.
func (s *Server) handleUserInfo(w http.ResponseWriter, r *http.Request) error {
	if len(r.Header.Values("Authorization")) > 1 {
		return oauth.New(oauth.CodeInvalidRequest, "more than one Authorization header")
	}
	if r.URL.Query().Has("access_token") {
		return oauth.New(oauth.CodeInvalidRequest, "access tokens are accepted in the Authorization header only")
	}
	raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || raw == "" {
		return oauth.New(oauth.CodeInvalidToken, "a bearer access token is required")
	}
	now := s.opts.Now()
	cl, ok, err := s.keys.verify(r.Context(), raw, s.opts.Issuer, now)
	if err != nil {
		return err // the keys could not be reloaded: 503, nothing decided
	}
	if !ok {
		return oauth.New(oauth.CodeInvalidToken, "the access token is invalid or expired")
	}
	if !slices.Contains(cl.Audience, s.url(PathUserInfo)) {
		return oauth.New(oauth.CodeInvalidToken, "the access token was not issued for UserInfo (request the openid scope)")
	}
	scopes := strings.Fields(cl.Scope)
	// Reachable: an operator may list the UserInfo URL among the
	// resources, and a token requested for it (resource=, RFC 8707) has
	// this audience whatever its scope. Without this check it would read
	// the user's identity with an API scope (RFC 6750 §3.1: 403).
	if !slices.Contains(scopes, ScopeOpenID) {
		return &oauth.Error{Code: oauth.CodeInsufficientScope, Description: "the openid scope is required"}
	}
	st, err := s.store.AccessTokenStatus(r.Context(), cl.ID, cl.GrantID, cl.ClientID, now)
	if err != nil {
		return err
	}
	if st.Revoked {
		return oauth.New(oauth.CodeInvalidToken, "the access token was revoked")
	}
	if !st.Live(now) {
		return oauth.New(oauth.CodeInvalidToken, "the grant was revoked or the client deleted")
	}
	u, err := s.store.GetUser(r.Context(), cl.Subject)
	if errors.Is(err, store.ErrNotFound) {
		return oauth.New(oauth.CodeInvalidToken, "the user no longer exists")
	}
	if err != nil {
		return err
	}
	out := map[string]any{"sub": u.ID}
	if slices.Contains(scopes, ScopeProfile) {
		out["preferred_username"] = u.Username
		if u.Name != "" {
			out["name"] = u.Name
		}
	}
	if slices.Contains(scopes, ScopeEmail) && u.Email != "" {
		out["email"], out["email_verified"] = u.Email, u.EmailVerified
	}
	writeTokenJSON(w, http.StatusOK, out)
	return nil
}

// endSessionRequest is an RP-initiated logout request (RP-Initiated Logout
// 1.0 §2), from the query or a POSTed form.
type endSessionRequest struct {
	idTokenHint, postLogoutRedirectURI, state, clientID string
	// confirmed: the user pressed "sign out" on our confirmation page (a
	// POST; its CSRF token is checked by the handler).
	confirmed bool
}

// parseEndSession parses the request once (house rule 1), refusing a
// repeated parameter; on failure it returns nil and what to tell the user.
func parseEndSession(r *http.Request) (*endSessionRequest, string) {
	if err := r.ParseForm(); err != nil {
		return nil, "The request could not be read."
	}
	form := r.Form
	if name, ok := singleValued(form, "id_token_hint", "post_logout_redirect_uri", "state", "client_id", "logout_hint", "ui_locales"); !ok {
		return nil, "The parameter " + name + " was sent more than once."
	}
	return &endSessionRequest{
		idTokenHint: form.Get("id_token_hint"), postLogoutRedirectURI: form.Get("post_logout_redirect_uri"),
		state: form.Get("state"), clientID: form.Get("client_id"),
		confirmed: r.Method == http.MethodPost && r.PostForm.Get("decision") == "logout",
	}, ""
}

type logoutPage struct {
	pageData
	Action, CSRF, ClientName string
	Hidden                   []hiddenField
	SignedOut                bool
	// Return is where the application asked to go after signing out,
	// offered as a link when it is not followed at once; ReturnHost names
	// it (see handleEndSession).
	Return     template.URL
	ReturnHost string
}

// handleEndSession is RP-initiated logout (OpenID Connect RP-Initiated
// Logout 1.0 §2-§3). The browser is sent back only to a
// post_logout_redirect_uri the client registered, matched exactly, with
// state; an unregistered one is refused before anything happens. Without
// an id_token_hint naming the signed-in user (proof the request comes from
// that user's app), the user confirms on a page first, so a third-party
// page cannot sign people out.
func (s *Server) handleEndSession(w http.ResponseWriter, r *http.Request) {
	req, msg := parseEndSession(r)
	if req == nil {
		s.renderError(w, http.StatusBadRequest, "Invalid request", msg, oauth.CodeInvalidRequest)
		return
	}
	var hint *tokens.IDTokenClaims
	if h := req.idTokenHint; h != "" {
		c, err := s.keys.verifyIDTokenHint(r.Context(), h, s.opts.Issuer)
		if errors.Is(err, tokens.ErrNotIDToken) {
			s.renderError(w, http.StatusBadRequest, "Invalid sign-out request", "The application's sign-out request could not be verified.", oauth.CodeInvalidRequest)
			return
		}
		if err != nil {
			s.pageError(w, r, "end session: reloading the signing keys", err)
			return
		}
		hint = &c
	}
	clientID := req.clientID
	if hint != nil {
		if clientID != "" && clientID != hint.Audience {
			s.renderError(w, http.StatusBadRequest, "Invalid sign-out request", "The sign-out request names two different applications.", oauth.CodeInvalidRequest)
			return
		}
		clientID = hint.Audience
	}
	var client store.Client
	target := req.postLogoutRedirectURI
	if clientID != "" {
		c, err := s.store.GetClient(r.Context(), clientID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			s.pageError(w, r, "end session: client lookup failed", err)
			return
		}
		client = c
	}
	if target != "" && (client.ID == "" || !slices.Contains(client.Metadata.PostLogoutRedirectURIs, target)) {
		s.renderError(w, http.StatusBadRequest, "Invalid sign-out request",
			"The application asked to return to an address it has not registered for sign-out. For your safety you were not sent there, and you are still signed in.", oauth.CodeInvalidRequest)
		return
	}
	user, _, signedIn, err := s.currentSession(r)
	if err != nil {
		s.pageError(w, r, "end session: session lookup failed", err)
		return
	}
	confirmed := req.confirmed && s.checkCSRF(r, r.PostForm)
	if signedIn && !confirmed && (hint == nil || hint.Subject != user.ID) {
		csrf, err := s.csrfToken(w, r)
		if err != nil {
			s.pageError(w, r, "end session: csrf token", err)
			return
		}
		page := logoutPage{pageData: pageData{Title: "Sign out"}, Action: s.issuerPath + PathEndSession, CSRF: csrf}
		if client.ID != "" {
			page.ClientName = clientDisplayName(client)
		}
		for _, f := range []hiddenField{{"id_token_hint", req.idTokenHint}, {"post_logout_redirect_uri", req.postLogoutRedirectURI},
			{"state", req.state}, {"client_id", req.clientID}} {
			if f.Value != "" {
				page.Hidden = append(page.Hidden, f)
			}
		}
		s.render(w, http.StatusOK, "logout", page)
		return
	}
	if signedIn {
		if v := s.cookie(r, sessionCookie); v != "" {
			if err := s.store.DeleteSession(r.Context(), tokens.Hash(v)); err != nil {
				s.pageError(w, r, "end session: deleting the session failed", err)
				return
			}
		}
		s.setCookie(w, sessionCookie, "", -1)
	}
	if target != "" {
		q := url.Values{}
		if req.state != "" {
			q.Set("state", req.state)
		}
		sep := "?"
		if strings.Contains(target, "?") {
			sep = "&"
		}
		if len(q) == 0 {
			sep = ""
		}
		back := target + sep + q.Encode()
		// RFC 9700 §4.11.2: anyone can register a client and a
		// post_logout_redirect_uri, so without an ID token of the
		// signed-in user, a request naming a client nobody vouches for is
		// a link through this server to any site (and "signed out, sign
		// in again" is a phishing page's best opening). Confirming the
		// sign-out is no decision to go there. The signed-out page links
		// there instead, naming the host: one click for a real
		// application.
		if !trusted(client) && (hint == nil || !signedIn || hint.Subject != user.ID) {
			page := logoutPage{pageData: pageData{Title: "Signed out"}, SignedOut: true, ReturnHost: redirectHost(target)}
			if !refusedRedirect(target) {
				// Registered and checked as a redirect URI (private-use
				// schemes included, which html/template would blank).
				page.Return = template.URL(back)
			}
			s.render(w, http.StatusOK, "logout", page)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, back, http.StatusFound)
		return
	}
	s.render(w, http.StatusOK, "logout", logoutPage{pageData: pageData{Title: "Signed out"}, SignedOut: true})
}
