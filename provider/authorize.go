package provider

import (
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/authzd/authz/internal/resourceid"

	"github.com/authzd/authz/provider/dcr"
	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/pkce"
	"github.com/authzd/authz/provider/store"
	"github.com/authzd/authz/provider/tokens"
)

// authorizeRequest is an authorization request (RFC 6749 §4.1.1, RFC 7636
// §4.3, RFC 8707 §2) parsed once from the form.
type authorizeRequest struct {
	client       store.Client
	redirectURI  string // as sent; "" when omitted
	redirect     string // where responses go (the matched redirect URI)
	state        string
	responseType string
	challenge    string
	method       string
	scopes       []string
	resources    []string
	// form is the original request, replayed through the consent page.
	form url.Values
	// oidc is the OpenID Connect part; nil unless openid was requested.
	oidc *oidcRequest
	// authTime is when the signed-in user authenticated.
	authTime time.Time
}

// untrusted is an error shown as a page: the client or redirect URI cannot
// be trusted, so redirecting would make us an open redirector (RFC 6749
// §4.1.2.1, §10.15).
type untrusted struct{ title, message string }

func (u *untrusted) Error() string { return u.message }

// errUnknownClient is the page for a client_id the store does not hold:
// never registered, or deleted (see vanished).
var errUnknownClient = &untrusted{"Unknown application", "The application that sent you here is not registered with this server."}

// authorizeParams are the single-valued parameters of an authorization request.
var authorizeParams = []string{"response_type", "state", "code_challenge", "code_challenge_method", "scope", "response_mode"}

// parseAuthorize reads an authorization request. It returns *untrusted until
// the client and redirect URI are established; after that, an *oauth.Error with
// req.redirect set, to be redirected.
func (s *Server) parseAuthorize(r *http.Request, form url.Values) (*authorizeRequest, error) {
	if name, ok := singleValued(form, "client_id", "redirect_uri"); !ok {
		return nil, &untrusted{"Invalid request", "The parameter " + name + " was sent more than once."}
	}
	clientID := form.Get("client_id")
	if clientID == "" {
		return nil, &untrusted{"Invalid request", "The request names no client (client_id is missing)."}
	}
	// Through the per-process cache, as the token endpoint: the client is
	// read from the store at most once per ClientCacheTTL (issue 13).
	c, _, err := s.clients.get(r.Context(), clientID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errUnknownClient
	}
	var de *documentError
	if errors.As(err, &de) {
		return nil, &untrusted{"Application not recognised", "The application that sent you here identifies itself by " + cutText(clientID, maxShownClientID) +
			", but its metadata document was refused: " + de.rule + "."}
	}
	if err != nil {
		return nil, err
	}
	req := &authorizeRequest{client: c, redirectURI: form.Get("redirect_uri"), form: form}
	switch {
	case req.redirectURI != "":
		m, ok := dcr.MatchRedirectURI(c.Metadata.RedirectURIs, req.redirectURI)
		if !ok {
			return nil, &untrusted{"Invalid redirect", "The application asked to return to an address it has not registered. For your safety you were not sent there."}
		}
		req.redirect = m
	case len(c.Metadata.RedirectURIs) == 1 && !isLoopback(c.Metadata.RedirectURIs[0]):
		// RFC 6749 §3.1.2.3: optional when exactly one is registered.
		req.redirect = c.Metadata.RedirectURIs[0]
	default:
		return nil, &untrusted{"Invalid request", "The application did not say where to return to (redirect_uri is missing)."}
	}
	if refusedRedirect(req.redirect) {
		// Registered before the scheme was denied: an OS protocol handler
		// is never a redirect target (RFC 9700 §4.11.2).
		return nil, &untrusted{"Invalid redirect", "The application asked to return to an address this server no longer sends anyone to."}
	}

	// From here on, errors are redirected to the client.
	req.state = form.Get("state")
	if name, ok := singleValued(form, append(authorizeParams, oidcParams...)...); !ok {
		return req, oauth.New(oauth.CodeInvalidRequest, "parameter "+name+" must not be repeated")
	}
	req.responseType = form.Get("response_type")
	switch {
	case req.responseType == "":
		return req, oauth.New(oauth.CodeInvalidRequest, "response_type is required")
	case req.responseType != oauth.ResponseCode:
		return req, oauth.New(oauth.CodeUnsupportedResponseType, "only response_type=code is supported")
	}
	if rm := form.Get("response_mode"); rm != "" && rm != oauth.ResponseModeQuery {
		return req, oauth.New(oauth.CodeInvalidRequest, "only response_mode=query is supported")
	}
	if !allowedGrant(c, oauth.GrantAuthorizationCode) {
		return req, oauth.New(oauth.CodeUnauthorizedClient, "the client is not registered for the authorization_code grant")
	}
	req.challenge, req.method = form.Get("code_challenge"), form.Get("code_challenge_method")
	switch {
	case req.challenge == "":
		return req, oauth.New(oauth.CodeInvalidRequest, "code_challenge is required (PKCE, RFC 7636)")
	case req.method != oauth.CodeChallengeS256:
		return req, oauth.New(oauth.CodeInvalidRequest, "code_challenge_method must be S256")
	case !pkce.ValidChallenge(req.challenge):
		return req, oauth.New(oauth.CodeInvalidRequest, "code_challenge is not a valid S256 challenge (RFC 7636 §4.2)")
	}
	if req.scopes, err = s.requestedScopes(c, form["scope"]); err != nil {
		return req, err
	}
	if req.resources, err = s.requestedResources(c, form["resource"]); err != nil {
		return req, err
	}
	if req.oidc, err = s.parseOIDC(r.Context(), form, req.scopes); err != nil {
		return req, err
	}
	return req, nil
}

// requestedScopes checks the scope parameter against what the server offers
// and the client may ask for; none sent means the client's defaults.
func (s *Server) requestedScopes(c store.Client, values []string) ([]string, error) {
	if len(values) == 0 || strings.TrimSpace(values[0]) == "" {
		var out []string
		for _, sc := range c.Metadata.Scopes {
			if slices.Contains(s.opts.Scopes, sc) {
				out = append(out, sc)
			}
		}
		return out, nil
	}
	scopes, ok := parseScope(values[0])
	if !ok {
		return nil, errMalformedScope()
	}
	scopes = s.dropUnhandled(scopes)
	allowed := s.allowedScopes(c)
	var kept, refused []string
	for _, sc := range scopes {
		if !s.offersScope(sc) {
			return nil, oauth.New(oauth.CodeInvalidScope, "unknown scope: "+sc)
		}
		switch {
		case sc == ScopeOfflineAccess || (s.oidcOn() && slices.Contains(oidcScopes, sc)):
			// About the grant or about the user, not a permission at a
			// resource: any client may ask.
			kept = append(kept, sc)
		case allowed == nil || slices.Contains(allowed, sc):
			kept = append(kept, sc)
		default:
			refused = append(refused, sc)
		}
	}
	// An offered scope this client may not have is left out rather than
	// refused (RFC 6749 §3.3: the server MAY partially ignore the
	// requested scope, and the token response then names what was
	// issued): MCP clients ask for every scope a resource lists, admin-only
	// ones included. Fewer is always safe; a request of nothing this
	// client may have is still refused.
	switch {
	case len(refused) == 0:
		return scopes, nil
	case len(kept) == 0:
		return nil, oauth.New(oauth.CodeInvalidScope, "the client may not request scope "+strings.Join(refused, " "))
	}
	return kept, nil
}

// requestedResources checks RFC 8707 resource indicators: each must be a
// configured protected resource the client may use. None sent means the
// first configured resource the client may use: a token never has an empty
// audience.
func (s *Server) requestedResources(c store.Client, values []string) ([]string, error) {
	allowed := s.clientResources(c)
	if len(values) == 0 {
		if len(allowed) == 0 {
			return nil, oauth.New(oauth.CodeInvalidTarget, "the client may not request tokens for any configured resource")
		}
		return allowed[:1], nil
	}
	return matchResources(values, allowed, "unknown or not permitted resource: ")
}

// matchResources maps each requested resource to the entry of allowed it
// names (resourceid.Match: the canonical form, a final slash aside), once
// each; one that is not there is invalid_target, described as unknown+value.
func matchResources(requested, allowed []string, unknown string) ([]string, error) {
	var out []string
	for _, v := range requested {
		n, ok, err := resourceid.Match(v, allowed)
		if err != nil {
			return nil, oauth.New(oauth.CodeInvalidTarget, err.Error())
		}
		if !ok {
			return nil, oauth.New(oauth.CodeInvalidTarget, unknown+v)
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, nil
}

// clientResources are the configured resources the client may use, in the
// configured order.
func (s *Server) clientResources(c store.Client) []string {
	if len(c.Metadata.Resources) == 0 {
		return s.opts.Resources
	}
	var out []string
	for _, r := range s.opts.Resources {
		for _, cr := range c.Metadata.Resources {
			if _, ok, _ := resourceid.Match(cr, []string{r}); ok {
				out = append(out, r)
				break
			}
		}
	}
	return out
}

func isLoopback(uri string) bool {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "http" {
		return false
	}
	return dcr.IsLoopback(u.Hostname())
}

type hiddenField struct{ Name, Value string }

type consentPage struct {
	pageData
	Action, CSRF, ClientName, RedirectHost, Username string
	// DocumentHost is, for a client identified by its metadata document,
	// the host that published it: the one thing about the client that is
	// not self-asserted, so the page shows it prominently.
	DocumentHost string
	// LoopbackOnly warns that every redirect URI is on this computer: any
	// local program could be behind such a client, whatever host it names.
	LoopbackOnly bool
	Scopes       []scopeLine
	Resources    []string
	Hidden       []hiddenField
	// What the page tells about the client (README, "Pages").
	Verified                     bool // an administrator created it
	Logo                         template.URL
	ClientURI, PolicyURI, TOSURI string
	SignOut                      string // the sign-out page, coming back here
}

// handleAuthorize serves GET (start or resume an authorization) and POST
// (the consent decision, or a form-encoded authorization request).
func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		s.renderError(w, http.StatusBadRequest, "Invalid request", "The request could not be read.", oauth.CodeInvalidRequest)
		return
	}
	// r.Form merges the query with a POST body, as RFC 6749 §3.1 allows.
	req, perr := s.parseAuthorize(r, r.Form)
	if perr != nil && (req == nil || req.redirect == "") {
		s.authorizeFailed(w, r, req, perr)
		return
	}
	setClientID(r.Context(), req.client.ID)
	user, sess, ok, err := s.currentSession(r)
	if err != nil {
		if req.client.Trust != store.TrustAdmin {
			// Not known to be signed in: no redirect to a client nobody vouches for.
			s.pageError(w, r, "authorization: session lookup failed", err)
			return
		}
		s.authorizeFailed(w, r, req, err)
		return
	}
	// RFC 9700 §4.11.2: an error redirect to a client that is not
	// admin-trusted waits until the user has signed in, so a crafted link
	// through this server lands on our sign-in page, not on whatever URI
	// someone registered.
	if perr != nil && (ok || req.client.Trust == store.TrustAdmin) {
		s.errorToClient(w, r, req, perr)
		return
	}
	if perr == nil && (!ok || req.oidc.needsLogin(user, sess.CreatedAt, s.opts.Now())) && req.oidc.promptNone() {
		// OIDC Core §3.1.2.6: no page may be shown, so the answer is
		// login_required; to a client nobody vouches for it is a page, for
		// the same reason as above (a silent bounce to any registered URI).
		if !ok && req.client.Trust != store.TrustAdmin {
			s.renderError(w, http.StatusBadRequest, "Sign-in required", "The application asked to continue without showing you a page, but you are not signed in here.", oauth.CodeLoginRequired)
			return
		}
		s.errorToClient(w, r, req, oauth.New(oauth.CodeLoginRequired, "the user must sign in"))
		return
	}
	if !ok || (perr == nil && req.oidc.needsLogin(user, sess.CreatedAt, s.opts.Now())) {
		s.toSignIn(w, r, perr == nil && req.oidc != nil)
		return
	}
	req.authTime = sess.CreatedAt
	decision := ""
	if r.Method == http.MethodPost {
		decision = r.PostForm.Get("decision")
	}
	if decision != "" {
		if !s.checkCSRF(r, r.PostForm) {
			s.renderError(w, http.StatusBadRequest, "Form expired", "The consent form expired. Go back to the application and start again.", oauth.CodeInvalidRequest)
			return
		}
		if decision != "allow" {
			s.audit(r.Context(), consentEvent(EventConsentDenied, user, req))
			s.redirectError(w, r, req.redirect, req.state, oauth.New(oauth.CodeAccessDenied, "the user denied the request"))
			return
		}
		if err := s.rememberConsent(r, user, req); err != nil {
			s.codeFailed(w, r, req, err)
			return
		}
		s.audit(r.Context(), consentEvent(EventConsentGranted, user, req))
		s.issueCode(w, r, user, req)
		return
	}
	if consentMayBeRemembered(req) && !req.oidc.forceConsent() {
		consent, err := s.store.GetConsent(r.Context(), user.ID, req.client.ID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			s.authorizeFailed(w, r, req, err)
			return
		}
		if err == nil && subset(req.scopes, consent.Scopes) && subset(req.resources, consent.Resources) {
			s.issueCode(w, r, user, req)
			return
		}
	}
	if req.oidc.promptNone() {
		s.errorToClient(w, r, req, oauth.New(oauth.CodeConsentRequired, "the user must approve this request"))
		return
	}
	csrf, err := s.csrfToken(w, r)
	if err != nil {
		s.authorizeFailed(w, r, req, err)
		return
	}
	page := consentPage{
		pageData: pageData{Title: "Authorize " + clientDisplayName(req.client)},
		Action:   s.issuerPath + PathAuthorize, CSRF: csrf,
		ClientName: clientDisplayName(req.client), RedirectHost: redirectHost(req.redirect),
		Username: user.Username, Scopes: s.scopeLines(req.scopes), Resources: req.resources,
		Verified: req.client.Trust == store.TrustAdmin, Logo: s.clientLogo(r.Context(), shownURI(req, req.client.Metadata.LogoURI)),
		ClientURI: webLink(shownURI(req, req.client.Metadata.ClientURI)), PolicyURI: webLink(shownURI(req, req.client.Metadata.PolicyURI)),
		TOSURI:  webLink(shownURI(req, req.client.Metadata.TOSURI)),
		SignOut: s.issuerPath + PathLogout + "?" + url.Values{"return_to": {s.issuerPath + PathAuthorize + "?" + stripConsentFields(r.Form).Encode()}}.Encode(),
	}
	if req.client.Trust == store.TrustMetadataDocument {
		if u, err := url.Parse(req.client.ID); err == nil {
			page.DocumentHost = u.Hostname()
		}
		page.LoopbackOnly = !slices.ContainsFunc(req.client.Metadata.RedirectURIs, func(r string) bool { return !isLoopback(r) })
	}
	for name, vals := range stripConsentFields(r.Form) {
		for _, v := range vals {
			page.Hidden = append(page.Hidden, hiddenField{name, v})
		}
	}
	slices.SortFunc(page.Hidden, func(a, b hiddenField) int { return strings.Compare(a.Name, b.Name) })
	s.render(w, http.StatusOK, "consent", page)
}

// toSignIn sends the browser to the sign-in page, returning to this
// authorization request (without the consent form's fields). reauth: the
// OIDC request asked for a fresh sign-in (see reauthReturn).
func (s *Server) toSignIn(w http.ResponseWriter, r *http.Request, reauth bool) {
	back := stripConsentFields(r.Form)
	if reauth {
		back = reauthReturn(back)
	}
	http.Redirect(w, r, s.loginURL(s.issuerPath+PathAuthorize+"?"+back.Encode()), http.StatusSeeOther)
}

// codeFailed answers a failure to store the consent or the code. Both
// return ErrNotFound when the client or the user is gone: deleted since
// this request read them, on another replica (RFC 7592 DELETE, `authz
// client delete`, the janitor's sweep) while this one still holds the
// client in its cache (ClientCacheTTL), or the user deleted after the
// session check. That is not a server error: the request is answered
// again from the store, as a request arriving now would be. A client
// gone is the unknown-application page (no redirect: nobody vouches for
// the redirect URI any more, RFC 6749 §4.1.2.1); a user gone, with the
// sessions that cascade with it, is the sign-in page.
func (s *Server) codeFailed(w http.ResponseWriter, r *http.Request, req *authorizeRequest, err error) {
	if !errors.Is(err, store.ErrNotFound) {
		s.authorizeFailed(w, r, req, err)
		return
	}
	s.clients.forget(req.client.ID)
	fresh, perr := s.parseAuthorize(r, r.Form)
	if perr != nil && (fresh == nil || fresh.redirect == "") {
		s.authorizeFailed(w, r, fresh, perr)
		return
	}
	_, _, ok, serr := s.currentSession(r)
	if serr == nil && !ok {
		s.toSignIn(w, r, perr == nil && fresh.oidc != nil)
		return
	}
	// Both are there again (a metadata-document client fetched anew):
	// nothing to explain but the original failure.
	s.authorizeFailed(w, r, req, err)
}

// stripConsentFields removes the consent form's own fields from a request.
func stripConsentFields(form url.Values) url.Values {
	out := url.Values{}
	for k, v := range form {
		if k != csrfField && k != "decision" {
			out[k] = v
		}
	}
	return out
}

func redirectHost(uri string) string {
	u, err := url.Parse(uri)
	if err != nil {
		return uri
	}
	if u.Host != "" {
		return u.Scheme + "://" + u.Host
	}
	return u.Scheme + ":"
}

// authorizeFailed answers an authorization error: a page while the client
// or redirect URI is untrusted, otherwise a redirect with error, state and iss.
func (s *Server) authorizeFailed(w http.ResponseWriter, r *http.Request, req *authorizeRequest, err error) {
	var u *untrusted
	if errors.As(err, &u) {
		s.renderError(w, http.StatusBadRequest, u.title, u.message, oauth.CodeInvalidRequest)
		return
	}
	if req == nil || req.redirect == "" {
		s.pageError(w, r, "authorization failed before the client was known", err)
		return
	}
	s.redirectError(w, r, req.redirect, req.state, err)
}

// errorToClient answers an authorization error the user did not cause by
// a decision on our pages (a malformed request, prompt=none that cannot be
// honoured). RFC 9700 §4.11.2: anyone can register a client with a web
// redirect URI and send a signed-in user a link that fails on purpose, and
// an automatic redirect then makes this server a link to that site. So
// the error is redirected at once only where the target is vouched for:
// an administrator's client, or a redirect to the user's own computer
// (loopback, a private-use scheme), which is no web site to phish from.
// Otherwise a page shows the error and offers the way back, naming the
// host: one click for a real application, and no silent bounce.
func (s *Server) errorToClient(w http.ResponseWriter, r *http.Request, req *authorizeRequest, err error) {
	if trusted(req.client) || !isWebRedirect(req.redirect) {
		s.authorizeFailed(w, r, req, err)
		return
	}
	var oe *oauth.Error
	if !errors.As(err, &oe) {
		s.pageError(w, r, "authorization", err)
		return
	}
	if oe.Code == oauth.CodeServerError || oauth.Retryable(oe.Code) {
		s.pageError(w, r, "authorization", err)
		return
	}
	host := redirectHost(req.redirect)
	s.render(w, oe.HTTPStatus(), "error", errorPage{
		pageData: pageData{Title: "The application's request cannot be completed"},
		// Not the description: it quotes what the request carried, and
		// the link's author chose that (text on this server's page).
		Message: clientDisplayName(req.client) + " sent a request this server cannot complete. The application gets the details when you go back.",
		Code:    oe.Code, ReturnHost: host,
		Return: template.URL(s.redirectTarget(req.redirect, req.state, errorParams(oe))),
	})
}

// shownURI returns uri (a logo_uri, client_uri, policy_uri or tos_uri) when
// the consent page may show it for req's client. An administrator's client:
// always. Any other: only an https URI on the host the answer goes to (this
// request's redirect URI) or, for a metadata-document client, on the host
// that published the document. RFC 7591 §5: client metadata is
// self-asserted ("a rogue client might use the name and logo of a
// legitimate client that it is trying to impersonate"), and the server
// SHOULD check that these URIs have the same host and scheme as the
// redirect URIs. This request's redirect rather than any registered one:
// anyone can list another site's URI among its redirect_uris, where it
// never receives a code.
func shownURI(req *authorizeRequest, uri string) string {
	if uri == "" || trusted(req.client) {
		return uri
	}
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" {
		return ""
	}
	if r, err := url.Parse(req.redirect); err == nil && r.Scheme == "https" && strings.EqualFold(r.Hostname(), u.Hostname()) {
		return uri
	}
	if req.client.Trust == store.TrustMetadataDocument {
		if d, err := url.Parse(req.client.ID); err == nil && strings.EqualFold(d.Hostname(), u.Hostname()) {
			return uri
		}
	}
	return ""
}

// isWebRedirect reports whether uri is a web site's (https) rather than an
// address on the user's computer.
func isWebRedirect(uri string) bool {
	u, err := url.Parse(uri)
	return err != nil || u.Scheme == "https" || (u.Scheme == "http" && !dcr.IsLoopback(u.Hostname()))
}

// consentMayBeRemembered reports whether a remembered consent may skip the
// page for req. Only when the redirect proves who receives the code: a
// confidential client authenticates at the token endpoint, and an https
// redirect belongs to its domain's owner. Any app on the machine can listen
// on a loopback port or claim a private-use scheme, so a public client there
// is asked every time (RFC 8252 §8.6).
func consentMayBeRemembered(req *authorizeRequest) bool {
	if !req.client.Public() {
		return true
	}
	u, err := url.Parse(req.redirect)
	return err == nil && u.Scheme == "https"
}

// rememberConsent adds the decision to what the user allowed the client
// before, in one atomic store operation (concurrent consents both count).
// Nothing is kept where it could never be used.
func (s *Server) rememberConsent(r *http.Request, user store.User, req *authorizeRequest) error {
	if !consentMayBeRemembered(req) {
		return nil
	}
	return s.store.AddConsent(r.Context(), store.Consent{
		UserID: user.ID, ClientID: req.client.ID, Scopes: req.scopes, Resources: req.resources, UpdatedAt: s.opts.Now(),
	})
}

// issueCode starts a new grant (one per completed authorization, so a second
// device never replaces the first) and redirects with its code.
func (s *Server) issueCode(w http.ResponseWriter, r *http.Request, user store.User, req *authorizeRequest) {
	now := s.opts.Now()
	code, err := tokens.NewSecret(s.opts.Rand, tokens.PrefixAuthCode)
	if err != nil {
		s.authorizeFailed(w, r, req, err)
		return
	}
	grantID, err := s.newID()
	if err != nil {
		s.authorizeFailed(w, r, req, err)
		return
	}
	hash := tokens.Hash(code)
	grant := store.Grant{
		ID: grantID, ClientID: req.client.ID, UserID: user.ID, Scopes: req.scopes, Resources: req.resources,
		CodeHash: hash, CreatedAt: now, ExpiresAt: now.Add(s.opts.GrantTTL), AuthTime: req.authTime,
	}
	ac := store.AuthCode{
		Hash: hash, ClientID: req.client.ID, UserID: user.ID, GrantID: grantID, RedirectURI: req.redirectURI,
		CodeChallenge: req.challenge, Scopes: req.scopes, Resources: req.resources,
		CreatedAt: now, ExpiresAt: now.Add(s.opts.AuthCodeTTL), AuthTime: req.authTime,
	}
	if req.oidc != nil {
		ac.Nonce = req.oidc.nonce
		// The ID-token key exists before the code does, so redeeming the
		// code never has to make one.
		if _, err := s.keys.idSigner(r.Context(), idTokenAlg(req.client)); err != nil {
			s.authorizeFailed(w, r, req, err)
			return
		}
	}
	if err := s.store.CreateAuthCode(r.Context(), ac, grant); err != nil {
		s.codeFailed(w, r, req, err)
		return
	}
	s.redirect(w, r, req.redirect, req.state, url.Values{"code": {code}})
}
