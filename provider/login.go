package provider

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/store"
	"github.com/authzd/authz/provider/tokens"
)

const (
	sessionCookie = "authz_session"
	csrfCookie    = "authz_csrf"
	csrfField     = "csrf_token"
)

// cookieName is name itself over http, and __Host-name when the issuer is
// https: the browser then accepts the cookie only from this origin, Secure
// and with Path=/, so a sibling subdomain or a network attacker cannot plant
// one (RFC 6265bis §4.1.3.2).
func (s *Server) cookieName(name string) string {
	if s.secureCookie {
		return "__Host-" + name
	}
	return name
}

func (s *Server) cookiePath() string {
	if s.issuerPath == "" || s.secureCookie {
		return "/" // __Host- cookies must have Path=/
	}
	return s.issuerPath + "/"
}

func (s *Server) setCookie(w http.ResponseWriter, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: s.cookieName(name), Value: value, Path: s.cookiePath(), MaxAge: maxAge,
		HttpOnly: true, Secure: s.secureCookie, SameSite: http.SameSiteLaxMode,
	})
}

// cookie returns the value of one of our cookies, "" when absent.
func (s *Server) cookie(r *http.Request, name string) string {
	c, err := r.Cookie(s.cookieName(name))
	if err != nil {
		return ""
	}
	return c.Value
}

// deriveKey is HMAC-SHA256(key, label): a key for one purpose from the
// server's encryption key, the same on every replica that shares it.
func deriveKey(key []byte, label string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(label))
	return m.Sum(nil)
}

// csrfToken returns the CSRF token forms must echo. It is bound to the
// browser's session: an HMAC, under a server key, of the session cookie when
// there is one, else of a random pre-session cookie (set here when missing,
// for the sign-in form). A cross-site page can neither read the cookie nor
// compute the token, and a planted cookie/field pair is refused because the
// field is not an HMAC of the cookie.
func (s *Server) csrfToken(w http.ResponseWriter, r *http.Request) (string, error) {
	if v := s.csrfBinding(r); v != "" {
		return s.csrfFor(v), nil
	}
	v, err := tokens.NewSecret(s.opts.Rand, tokens.PrefixCSRF)
	if err != nil {
		return "", err
	}
	s.setCookie(w, csrfCookie, v, 0)
	return s.csrfFor("pre:" + v), nil
}

// csrfBinding is what the browser's CSRF token is bound to, "" for none.
func (s *Server) csrfBinding(r *http.Request) string {
	if v := s.cookie(r, sessionCookie); v != "" {
		return "session:" + v
	}
	if v := s.cookie(r, csrfCookie); strings.HasPrefix(v, tokens.PrefixCSRF) {
		return "pre:" + v
	}
	return ""
}

// The labels of the keys derived from the encryption key.
const (
	labelCSRF      = "authz csrf v1"
	labelSuccessor = "authz refresh-token successor v1"
	labelUpstream  = "authz upstream sign-in cookie v1"
)

func (s *Server) csrfFor(binding string) string {
	return csrfUnder(s.csrfKeys[0], binding)
}

func csrfUnder(key []byte, binding string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(binding))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// checkCSRF reports whether a POST is same-origin (net/http's
// CrossOriginProtection: Sec-Fetch-Site or Origin) and carries the token
// bound to the browser's session, compared in constant time.
func (s *Server) checkCSRF(r *http.Request, form url.Values) bool {
	if s.crossOrigin.Check(r) != nil {
		return false
	}
	b := s.csrfBinding(r)
	if b == "" {
		return false
	}
	sent := []byte(form.Get(csrfField))
	// A form served before the encryption key changed carries a token
	// made under a previous key. Every key is tried, whichever matches,
	// so the time taken does not say which one did.
	ok := 0
	for _, k := range s.csrfKeys {
		ok |= subtle.ConstantTimeCompare(sent, []byte(csrfUnder(k, b)))
	}
	return ok == 1
}

// currentUser returns the signed-in user, or ok=false when there is none.
func (s *Server) currentUser(r *http.Request) (store.User, bool, error) {
	u, _, ok, err := s.currentSession(r)
	return u, ok, err
}

// currentSession returns the signed-in user and their session, whose
// CreatedAt is when they authenticated (OIDC auth_time). One store read
// (issue 13): an unknown or expired session, or one whose user was
// deleted, is "not signed in".
func (s *Server) currentSession(r *http.Request) (store.User, store.Session, bool, error) {
	v := s.cookie(r, sessionCookie)
	if v == "" {
		return store.User{}, store.Session{}, false, nil
	}
	sess, u, err := s.store.GetSessionUser(r.Context(), tokens.Hash(v), s.opts.Now())
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrExpired) {
		return store.User{}, store.Session{}, false, nil
	}
	if err != nil {
		return store.User{}, store.Session{}, false, err
	}
	return u, sess, true, nil
}

// safeReturnTo accepts only a path on this server, so the login page can
// never be used as an open redirector.
func (s *Server) safeReturnTo(v string) string {
	def := s.issuerPath + PathApps
	if v == "" || strings.ContainsAny(v, "\\\r\n") || strings.HasPrefix(v, "//") || !strings.HasPrefix(v, s.issuerPath+"/") {
		return def
	}
	u, err := url.Parse(v)
	if err != nil || u.Scheme != "" || u.Host != "" {
		return def
	}
	return v
}

// loginURL is where an anonymous browser is sent, returning to returnTo.
func (s *Server) loginURL(returnTo string) string {
	return s.issuerPath + PathLogin + "?" + url.Values{"return_to": {returnTo}}.Encode()
}

type loginPage struct {
	pageData
	Action, CSRF, ReturnTo, Username, Error, ClientName string
	// ForAccount: the sign-in leads to the account pages, not to an app.
	ForAccount bool
	// SignedOut: the browser just signed out (the page says so).
	SignedOut bool
	// LocalLogin shows the password form (AUTHZ_LOCAL_LOGIN).
	LocalLogin bool
	Upstreams  []upstreamButton
}

func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		s.renderError(w, http.StatusBadRequest, "Bad request", "The request could not be read.", oauth.CodeInvalidRequest)
		return
	}
	returnTo := s.safeReturnTo(r.Form.Get("return_to"))
	csrf, err := s.csrfToken(w, r)
	if err != nil {
		s.pageError(w, r, "sign-in: CSRF token", err)
		return
	}
	page := loginPage{
		pageData: pageData{Title: "Sign in"}, Action: s.issuerPath + PathLogin,
		CSRF: csrf, ReturnTo: returnTo, ForAccount: returnTo == s.issuerPath+PathApps,
		SignedOut:  r.Method == http.MethodGet && r.URL.Query().Get("signed_out") == "1",
		LocalLogin: !s.opts.DisableLocalLogin, Upstreams: s.upstreamButtons(returnTo),
	}
	page.ClientName = s.clientNameFor(r, returnTo)
	if r.Method == http.MethodGet {
		// OIDC Core §3.1.2.1 login_hint: pre-fill, never trust.
		if u, err := url.Parse(returnTo); err == nil && u.Path == s.issuerPath+PathAuthorize {
			page.Username = u.Query().Get("login_hint")
		}
		s.render(w, http.StatusOK, "login", page)
		return
	}
	if s.opts.DisableLocalLogin {
		page.Error = "Sign-in with a password is switched off here. Use one of the buttons."
		s.render(w, http.StatusForbidden, "login", page)
		return
	}
	if !s.checkCSRF(r, r.PostForm) {
		page.Error = "Your session expired. Please try again."
		s.render(w, http.StatusBadRequest, "login", page)
		return
	}
	username := strings.TrimSpace(r.PostForm.Get("username"))
	page.Username = username
	nets := limitNets(s.clientIP(r))
	now := s.opts.Now()
	// The form stays on the page; the status and message follow the same
	// classification as every other failure (pageFailure).
	unavailable := func(what string, err error) {
		oe, _, message := s.pageFailure(w, r, what, err)
		page.Error = "Sign-in failed. " + message
		if oe.Code == oauth.CodeTemporarilyUnavailable {
			page.Error = "Sign-in is temporarily unavailable. Please try again shortly."
		}
		s.render(w, oe.HTTPStatus(), "login", page)
	}
	attempt, wait, err := s.limiter.attempt(r.Context(), username, nets, now)
	if err != nil {
		unavailable("login limit lookup failed", err)
		return
	}
	if attempt == nil {
		minutes := int(math.Ceil(wait.Minutes()))
		w.Header().Set("Retry-After", retryAfter(wait))
		page.Error = fmt.Sprintf("Too many failed sign-in attempts. Try again in %d minute(s), after %s.",
			minutes, now.Add(wait).UTC().Format("15:04 UTC"))
		// Counted, not audited: the trail records the lockout once (below),
		// so a flood of refused attempts cannot grow it.
		s.metrics.logins.WithLabelValues("throttled").Inc()
		s.render(w, http.StatusTooManyRequests, "login", page)
		return
	}
	u, err := s.store.GetUserByUsername(r.Context(), username)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		attempt.abandon(r.Context())
		unavailable("login lookup failed", err)
		return
	}
	hash := dummyHash
	if err == nil {
		hash = u.PasswordHash
	}
	match, hashErr := checkPassword(r.Context(), hash, r.PostForm.Get("password"))
	if hashErr != nil {
		attempt.abandon(r.Context())
		unavailable("password check", hashErr)
		return
	}
	if !match || err != nil {
		locked := attempt.failed()
		s.loginAttempt(r.Context(), EventLoginFailed, u.ID, username)
		if locked {
			// login.throttled marks the start of a lockout, once per limit
			// reached; the attempts it then refuses are only counted.
			s.audit(r.Context(), store.AuditEvent{Name: EventLoginThrottled, Actor: ActorUser, Subject: u.ID, Outcome: "throttled",
				Details: map[string]string{"username": username}})
		}
		page.Error = "Wrong username or password."
		s.render(w, http.StatusUnauthorized, "login", page)
		return
	}
	if err := attempt.succeeded(r.Context()); err != nil {
		unavailable("clearing login failures failed", err)
		return
	}
	if err := s.startSession(w, r, u.ID, now); err != nil {
		unavailable("starting the session failed", err)
		return
	}
	s.loginAttempt(r.Context(), EventLoginSucceeded, u.ID, username)
	http.Redirect(w, r, returnTo, http.StatusSeeOther)
}

// startSession signs the browser in as userID (a password or an upstream
// sign-in). A sign-in replaces the browser's earlier session (whoever it
// was for): a session planted before sign-in, or left by another user of
// this browser, never outlives it.
func (s *Server) startSession(w http.ResponseWriter, r *http.Request, userID string, now time.Time) error {
	if old := s.cookie(r, sessionCookie); old != "" {
		if err := s.store.DeleteSession(r.Context(), tokens.Hash(old)); err != nil {
			return err
		}
	}
	secret, err := tokens.NewSecret(s.opts.Rand, tokens.PrefixSession)
	if err != nil {
		return err
	}
	if err := s.store.CreateSession(r.Context(), store.Session{
		Hash: tokens.Hash(secret), UserID: userID, CreatedAt: now, ExpiresAt: now.Add(s.opts.SessionTTL),
	}); err != nil {
		return err
	}
	s.setCookie(w, sessionCookie, secret, int(s.opts.SessionTTL.Seconds()))
	return nil
}

type signOutPage struct {
	pageData
	Action, CSRF, ReturnTo, Username string
}

// handleLogout asks "Sign out?" on GET (a link can sign nobody out) and
// signs out on POST, then shows the sign-in page saying so, continuing to
// return_to (the authorization a "Not you?" link came from) if given.
func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet {
		user, ok, err := s.currentUser(r)
		if err != nil {
			s.pageError(w, r, "sign-out page: session lookup failed", err)
			return
		}
		returnTo := s.safeReturnTo(r.URL.Query().Get("return_to"))
		if !ok {
			http.Redirect(w, r, s.loginURL(returnTo), http.StatusSeeOther)
			return
		}
		csrf, err := s.csrfToken(w, r)
		if err != nil {
			s.pageError(w, r, "sign-out page: CSRF token", err)
			return
		}
		s.render(w, http.StatusOK, "signout", signOutPage{pageData: pageData{Title: "Sign out"},
			Action: s.issuerPath + PathLogout, CSRF: csrf, ReturnTo: returnTo, Username: user.Username})
		return
	}
	if err := r.ParseForm(); err != nil || !s.checkCSRF(r, r.PostForm) {
		s.renderError(w, http.StatusBadRequest, "Bad request", "The form expired. Go back, reload the page and try again.", oauth.CodeInvalidRequest)
		return
	}
	if v := s.cookie(r, sessionCookie); v != "" {
		if sess, _, err := s.store.GetSessionUser(r.Context(), tokens.Hash(v), s.opts.Now()); err == nil {
			s.audit(r.Context(), store.AuditEvent{Name: EventLogout, Actor: ActorUser, Subject: sess.UserID})
		}
		if err := s.store.DeleteSession(r.Context(), tokens.Hash(v)); err != nil {
			s.logFailure(r, "deleting session failed", "cause", err)
		}
	}
	s.setCookie(w, sessionCookie, "", -1)
	next := s.issuerPath + PathLogin + "?signed_out=1"
	if rt := r.PostForm.Get("return_to"); rt != "" {
		next = s.loginURL(s.safeReturnTo(rt)) + "&signed_out=1"
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// clientNameFor names the app a sign-in will continue to. The name comes
// from the authorization request returnTo carries, and only when that
// request is valid (known client, registered redirect, every parameter
// acceptable): a crafted return_to cannot put an arbitrary app's name on
// our sign-in page.
func (s *Server) clientNameFor(r *http.Request, returnTo string) string {
	u, err := url.Parse(returnTo)
	if err != nil || u.Path != s.issuerPath+PathAuthorize {
		return ""
	}
	req, err := s.parseAuthorize(r, u.Query())
	if err != nil {
		return ""
	}
	return clientDisplayName(req.client)
}

func clientDisplayName(c store.Client) string {
	// A name of nothing visible (spaces, or letters that render blank,
	// such as the Hangul fillers) would leave "Allow ?" on the consent
	// page: the client ID is shown instead.
	name := strings.TrimFunc(c.Metadata.Name, blankRune)
	if name == "" {
		name = c.ID
	}
	// Metadata allows 2048 bytes, and anyone can register: a name that
	// long fills the consent page and pushes the marker saying who vouches
	// for the client, and where the answer goes, out of sight. No real
	// application's name is longer than this.
	return cutText(name, maxDisplayName)
}

// maxDisplayName is how many characters of a client's name pages show.
const maxDisplayName = 64

// maxShownClientID is how many characters of a client_id that names no
// usable client a page shows: enough for a real document URL, too few for
// a message chosen by whoever wrote the link.
const maxShownClientID = 120

// cutText is s cut to at most n characters, marked with an ellipsis.
func cutText(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return strings.TrimSpace(string(r[:n])) + "…"
	}
	return s
}

// blankRune reports whether r shows as nothing: white space, or one of the
// letters and symbols that render blank (Unicode TR #36 lists them as
// spoofing tools; dcr already refuses format characters).
func blankRune(r rune) bool {
	switch r {
	case '\u115F', '\u1160', '\u3164', '\uFFA0', '\u2800':
		return true
	}
	return unicode.IsSpace(r)
}
