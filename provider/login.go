package provider

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/authzd/authz/provider/store"
	"github.com/authzd/authz/provider/tokens"
)

const (
	sessionCookie = "authz_session"
	csrfCookie    = "authz_csrf"
	csrfField     = "csrf_token"
)

func (s *Server) cookiePath() string {
	if s.issuerPath == "" {
		return "/"
	}
	return s.issuerPath + "/"
}

func (s *Server) setCookie(w http.ResponseWriter, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: s.cookiePath(), MaxAge: maxAge,
		HttpOnly: true, Secure: s.secureCookie, SameSite: http.SameSiteLaxMode,
	})
}

// csrfToken returns the browser's CSRF token, setting one when it has none.
// Forms echo it in a hidden field (double-submit): a cross-site page can
// neither read the cookie nor make the browser send a matching field.
func (s *Server) csrfToken(w http.ResponseWriter, r *http.Request) (string, error) {
	if c, err := r.Cookie(csrfCookie); err == nil && strings.HasPrefix(c.Value, tokens.PrefixCSRF) {
		return c.Value, nil
	}
	v, err := tokens.NewSecret(s.opts.Rand, tokens.PrefixCSRF)
	if err != nil {
		return "", err
	}
	s.setCookie(w, csrfCookie, v, 0)
	return v, nil
}

// checkCSRF reports whether a POST carries the browser's CSRF token.
func checkCSRF(r *http.Request, form url.Values) bool {
	c, err := r.Cookie(csrfCookie)
	if err != nil || c.Value == "" {
		return false
	}
	got := form.Get(csrfField)
	return subtle.ConstantTimeCompare([]byte(got), []byte(c.Value)) == 1
}

// currentUser returns the signed-in user, or ok=false when there is none.
func (s *Server) currentUser(r *http.Request) (store.User, bool, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return store.User{}, false, nil
	}
	sess, err := s.store.GetSession(r.Context(), tokens.Hash(c.Value), s.opts.Now())
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrExpired) {
		return store.User{}, false, nil
	}
	if err != nil {
		return store.User{}, false, err
	}
	u, err := s.store.GetUser(r.Context(), sess.UserID)
	if errors.Is(err, store.ErrNotFound) {
		return store.User{}, false, nil
	}
	if err != nil {
		return store.User{}, false, err
	}
	return u, true, nil
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
}

func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		s.renderError(w, http.StatusBadRequest, "Bad request", "The request could not be read.", errInvalidRequest)
		return
	}
	returnTo := s.safeReturnTo(r.Form.Get("return_to"))
	csrf, err := s.csrfToken(w, r)
	if err != nil {
		s.renderError(w, http.StatusInternalServerError, "Something went wrong", "Please try again.", errServerError)
		return
	}
	page := loginPage{
		pageData: pageData{Title: "Sign in"}, Action: s.issuerPath + PathLogin,
		CSRF: csrf, ReturnTo: returnTo, ClientName: s.clientNameFor(r, returnTo),
	}
	if r.Method == http.MethodGet {
		s.render(w, http.StatusOK, "login", page)
		return
	}
	if !checkCSRF(r, r.PostForm) {
		page.Error = "Your session expired. Please try again."
		s.render(w, http.StatusBadRequest, "login", page)
		return
	}
	username := strings.TrimSpace(r.PostForm.Get("username"))
	page.Username = username
	ip := clientIP(r)
	now := s.opts.Now()
	if blocked, wait := s.limiter.blocked(username, ip, now); blocked {
		minutes := int(math.Ceil(wait.Minutes()))
		w.Header().Set("Retry-After", fmt.Sprint(int(math.Ceil(wait.Seconds()))))
		page.Error = fmt.Sprintf("Too many failed sign-in attempts. Try again in %d minute(s).", minutes)
		s.render(w, http.StatusTooManyRequests, "login", page)
		return
	}
	u, err := s.store.GetUserByUsername(r.Context(), username)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.logFailure(r, "login lookup failed", "cause", err)
		page.Error = "Sign-in is temporarily unavailable. Please try again shortly."
		s.render(w, http.StatusServiceUnavailable, "login", page)
		return
	}
	hash := dummyHash
	if err == nil {
		hash = u.PasswordHash
	}
	if !checkPassword(hash, r.PostForm.Get("password")) || err != nil {
		s.limiter.fail(username, ip, now)
		page.Error = "Wrong username or password."
		s.render(w, http.StatusUnauthorized, "login", page)
		return
	}
	s.limiter.succeed(username)
	secret, err := tokens.NewSecret(s.opts.Rand, tokens.PrefixSession)
	if err == nil {
		err = s.store.CreateSession(r.Context(), store.Session{
			Hash: tokens.Hash(secret), UserID: u.ID, CreatedAt: now, ExpiresAt: now.Add(s.opts.SessionTTL),
		})
	}
	if err != nil {
		s.logFailure(r, "creating session failed", "cause", err)
		page.Error = "Sign-in is temporarily unavailable. Please try again shortly."
		s.render(w, http.StatusServiceUnavailable, "login", page)
		return
	}
	s.setCookie(w, sessionCookie, secret, int(s.opts.SessionTTL.Seconds()))
	http.Redirect(w, r, returnTo, http.StatusSeeOther)
}

func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || !checkCSRF(r, r.PostForm) {
		s.renderError(w, http.StatusBadRequest, "Bad request", "The form expired. Go back, reload the page and try again.", errInvalidRequest)
		return
	}
	if c, err := r.Cookie(sessionCookie); err == nil && c.Value != "" {
		if err := s.store.DeleteSession(r.Context(), tokens.Hash(c.Value)); err != nil {
			s.logFailure(r, "deleting session failed", "cause", err)
		}
	}
	s.setCookie(w, sessionCookie, "", -1)
	http.Redirect(w, r, s.issuerPath+PathLogin, http.StatusSeeOther)
}

// clientNameFor names the app a login will continue to, when returnTo is an
// authorization request.
func (s *Server) clientNameFor(r *http.Request, returnTo string) string {
	u, err := url.Parse(returnTo)
	if err != nil || u.Path != s.issuerPath+PathAuthorize {
		return ""
	}
	id := u.Query().Get("client_id")
	if id == "" {
		return ""
	}
	c, err := s.store.GetClient(r.Context(), id)
	if err != nil {
		return ""
	}
	return clientDisplayName(c)
}

func clientDisplayName(c store.Client) string {
	if c.Metadata.Name != "" {
		return c.Metadata.Name
	}
	return c.ID
}

// clientIP is the peer address. Proxy headers are not trusted: behind a
// reverse proxy, limits apply per proxy address (README, "Scaling out").
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
