package provider

import (
	"bytes"
	"embed"
	"html/template"
	"net/http"
	"net/url"

	"github.com/authzd/authz/provider/oauth"
)

//go:embed templates/*.html
var templateFS embed.FS

// pages renders the server's HTML. Every page is self-contained (inline CSS,
// no fonts or scripts from elsewhere).
type pages struct {
	t map[string]*template.Template
}

func newPages() (*pages, error) {
	p := &pages{t: map[string]*template.Template{}}
	for _, name := range []string{"login", "consent", "error", "apps", "signout", "home", "logout"} {
		t, err := template.ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, err
		}
		p.t[name] = t
	}
	return p, nil
}

// pageData is what every page shares; Content is the page's own data.
type pageData struct {
	Title string
	Wide  bool
}

// render writes a page. The page is rendered into a buffer first so a
// template error never leaves half a page behind.
func (s *Server) render(w http.ResponseWriter, status int, name string, data any) {
	var buf bytes.Buffer
	if err := s.pages.t[name].ExecuteTemplate(&buf, "layout", data); err != nil {
		s.log.Error("rendering page", "page", name, "cause", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	// No form-action directive: browsers apply it to the redirect that
	// follows the consent POST, which would block private-use scheme and
	// loopback callbacks.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	if status == http.StatusServiceUnavailable && h.Get("Retry-After") == "" {
		// A page answered 503 is a transient failure, as on the JSON
		// endpoints: say when to retry (RFC 9110 §10.2.3).
		h.Set("Retry-After", retryAfterSeconds)
	}
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

type errorPage struct {
	pageData
	Message string
	Code    string
	// Return is the error redirect to a client nobody vouches for, offered
	// as a link (errorToClient); ReturnHost names where it goes.
	Return     template.URL
	ReturnHost string
}

// renderError shows an error to the person at the browser: used when the
// client or redirect URI cannot be trusted, so redirecting would be unsafe
// (RFC 6749 §4.1.2.1).
func (s *Server) renderError(w http.ResponseWriter, status int, title, message, code string) {
	s.render(w, status, "error", errorPage{pageData: pageData{Title: title}, Message: message, Code: code})
}

// pageFailure classifies err for an HTML page exactly as writeJSONError
// does for the JSON endpoints (asOAuthError): a store outage is 503
// temporarily_unavailable with Retry-After, anything that is not our error
// is 500 server_error with its cause logged once (during says what
// failed), our own errors keep their code and status. It sets Retry-After
// and returns the error and what to tell the person at the browser.
func (s *Server) pageFailure(w http.ResponseWriter, r *http.Request, during string, err error) (oe *oauth.Error, title, message string) {
	oe, logIt := asOAuthError(err)
	if logIt {
		s.logFailure(r, during, "error", oe.Code, "cause", err)
	}
	if oauth.Retryable(oe.Code) {
		w.Header().Set("Retry-After", retryAfter(oe.RetryAfter))
	}
	switch oe.Code {
	case oauth.CodeTemporarilyUnavailable:
		return oe, "Temporarily unavailable", "Please try again shortly."
	case oauth.CodeServerError:
		return oe, "Something went wrong", "The request could not be completed. Please try again."
	}
	return oe, "Invalid request", oe.Description
}

// pageError answers err with the error page, classified by pageFailure:
// the one way an HTML endpoint shows a failure it did not expect.
func (s *Server) pageError(w http.ResponseWriter, r *http.Request, during string, err error) {
	oe, title, message := s.pageFailure(w, r, during, err)
	s.renderError(w, oe.HTTPStatus(), title, message, oe.Code)
}

// scopeLine is one scope on the consent page: its sentence, and its name
// for those who want it.
type scopeLine struct{ Name, Text string }

// builtinScopeText describes the scopes every OAuth/OpenID client knows.
var builtinScopeText = map[string]string{
	"openid":         "Confirm who you are (your account ID)",
	"offline_access": "Keep access while you are away: you stay signed in until you revoke it",
}

// scopeLines turns scopes into sentences: AUTHZ_SCOPES' NAME=description,
// a built-in one, or the name itself.
func (s *Server) scopeLines(scopes []string) []scopeLine {
	var out []scopeLine
	for _, sc := range scopes {
		text := s.opts.ScopeDescriptions[sc]
		if text == "" {
			text = builtinScopeText[sc]
		}
		if text == "" {
			text = "Use the “" + sc + "” permission"
		}
		out = append(out, scopeLine{Name: sc, Text: text})
	}
	return out
}

// webLink keeps an http(s) link a client registered for its home page or
// policies, and drops anything else.
func webLink(s string) string {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return ""
	}
	return s
}

type homePage struct {
	pageData
	Apps string
}

// handleHome is the issuer's root page: a person who lands here finds the
// way to their connected apps instead of "not found".
func (s *Server) handleHome(w http.ResponseWriter, _ *http.Request) {
	s.render(w, http.StatusOK, "home", homePage{pageData: pageData{Title: "Your account"}, Apps: s.issuerPath + PathApps})
}
