package provider

import (
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/store"
)

// retryAfterSeconds is RetryAfter as the header says it.
var retryAfterSeconds = strconv.Itoa(int(RetryAfter / time.Second))

// asOAuthError maps any error to the OAuth error to show. A store outage is
// temporarily_unavailable (never invalid_grant: clients such as x/oauth2
// throw the token away on invalid_grant); anything else unknown is
// server_error. The boolean reports whether the cause must be logged.
func asOAuthError(err error) (*oauth.Error, bool) {
	var oe *oauth.Error
	if errors.As(err, &oe) {
		return oe, oe.Code == oauth.CodeServerError || oe.Code == oauth.CodeTemporarilyUnavailable
	}
	if errors.Is(err, store.ErrUnavailable) {
		return &oauth.Error{Code: oauth.CodeTemporarilyUnavailable, Description: "the service is temporarily unavailable, retry later", Cause: err}, true
	}
	return &oauth.Error{Code: oauth.CodeServerError, Description: "internal error", Cause: err}, true
}

// formError is the answer to a request body ParseForm refused: over the
// body limit is 413, anything else (a malformed escape) says what is wrong
// with it. Both are invalid_request, the code RFC 6749 §5.2 gives a
// malformed request.
func formError(err error) *oauth.Error {
	if tooLarge := (*http.MaxBytesError)(nil); errors.As(err, &tooLarge) {
		return &oauth.Error{Code: oauth.CodeInvalidRequest, Status: http.StatusRequestEntityTooLarge,
			Description: "the request body is larger than " + strconv.Itoa(maxBodyBytes>>10) + " KiB"}
	}
	msg := err.Error()
	if uerr := (url.EscapeError)(""); errors.As(err, &uerr) {
		msg = "invalid URL escape " + strconv.Quote(string(uerr))
	}
	return oauth.New(oauth.CodeInvalidRequest, "the request body is not valid application/x-www-form-urlencoded: "+msg)
}

// logFailure logs a request that failed on the server's side as an error,
// except when the client went away first: a disconnect cancels the
// request's context, so whatever ran next (a store call) failed because
// nobody was waiting any more. That says nothing about the server's health
// and is logged at debug level.
func (s *Server) logFailure(r *http.Request, msg string, args ...any) {
	ctx := r.Context()
	if ctx.Err() != nil {
		s.log.DebugContext(ctx, "client went away before the answer", append([]any{"path", r.URL.Path, "during", msg}, args...)...)
		return
	}
	for _, a := range args {
		if err, ok := a.(error); ok {
			setCause(ctx, unavailableCause(err)) // counted if the answer is 503
		}
	}
	s.log.ErrorContext(ctx, msg, append([]any{"path", r.URL.Path}, args...)...)
}

// retryAfter is a Retry-After value in whole seconds, rounded up.
func retryAfter(d time.Duration) string {
	if d <= 0 {
		return retryAfterSeconds
	}
	return strconv.Itoa(int(math.Ceil(d.Seconds())))
}

// writeJSONError writes an RFC 6749 §5.2 error response.
func (s *Server) writeJSONError(w http.ResponseWriter, r *http.Request, err error) {
	oe, logIt := asOAuthError(err)
	if logIt {
		s.logFailure(r, "request failed", "error", oe.Code, "cause", err)
	}
	if oe.Code == oauth.CodeTemporarilyUnavailable {
		setCause(r.Context(), unavailableCause(err))
	}
	h := w.Header()
	h.Set("Content-Type", "application/json;charset=UTF-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	switch oe.Code {
	case oauth.CodeInvalidClient:
		// RFC 6749 §5.2: a 401 carries a challenge for the scheme the client
		// may use. Built from the code, never from the message.
		h.Set("WWW-Authenticate", `Basic realm="authz"`)
	case oauth.CodeInvalidToken:
		h.Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	case oauth.CodeInsufficientScope:
		// RFC 6750 §3.1 (UserInfo wants the openid scope).
		h.Set("WWW-Authenticate", `Bearer error="insufficient_scope", scope="openid"`)
	case oauth.CodeTemporarilyUnavailable, oauth.CodeSlowDown:
		h.Set("Retry-After", retryAfter(oe.RetryAfter))
	}
	w.WriteHeader(oe.HTTPStatus())
	body := map[string]string{"error": oe.Code}
	if oe.Description != "" {
		body["error_description"] = oe.WireDescription()
	}
	_ = json.NewEncoder(w).Encode(body)
}

// redirectError sends an authorization error back to a trusted redirect URI
// (RFC 6749 §4.1.2.1) with state and iss (RFC 9207).
func (s *Server) redirectError(w http.ResponseWriter, r *http.Request, redirectURI, state string, err error) {
	oe, logIt := asOAuthError(err)
	if logIt {
		s.logFailure(r, "authorization failed", "error", oe.Code, "cause", err)
	}
	s.redirect(w, r, redirectURI, state, errorParams(oe))
}

// redirect sends the browser to redirectURI with params, state and iss added
// to its query, keeping any query the registered URI already has.
func (s *Server) redirect(w http.ResponseWriter, r *http.Request, redirectURI, state string, params url.Values) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Location", s.redirectTarget(redirectURI, state, params))
	w.WriteHeader(http.StatusFound)
}

// redirectTarget is redirectURI with params, state and iss added to its query.
func (s *Server) redirectTarget(redirectURI, state string, params url.Values) string {
	if state != "" {
		params.Set("state", state)
	}
	params.Set("iss", s.opts.Issuer)
	sep := "?"
	if strings.Contains(redirectURI, "?") {
		sep = "&"
	}
	return redirectURI + sep + params.Encode()
}

// errorParams are the RFC 6749 §4.1.2.1 parameters of an error redirect.
func errorParams(oe *oauth.Error) url.Values {
	params := url.Values{"error": {oe.Code}}
	if oe.Description != "" {
		params.Set("error_description", oe.WireDescription())
	}
	return params
}
