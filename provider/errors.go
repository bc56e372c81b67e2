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

	"github.com/authzd/authz/provider/store"
)

// OAuth error codes (RFC 6749 §4.1.2.1 and §5.2, RFC 8707 §2, RFC 6750 §3.1,
// RFC 7591 §3.2.2).
const (
	errInvalidRequest          = "invalid_request"
	errInvalidClient           = "invalid_client"
	errInvalidGrant            = "invalid_grant"
	errUnauthorizedClient      = "unauthorized_client"
	errUnsupportedGrantType    = "unsupported_grant_type"
	errUnsupportedResponseType = "unsupported_response_type"
	errInvalidScope            = "invalid_scope"
	errInvalidTarget           = "invalid_target"
	errAccessDenied            = "access_denied"
	errServerError             = "server_error"
	errTemporarilyUnavailable  = "temporarily_unavailable"
	errInvalidToken            = "invalid_token"
	errInvalidRedirectURI      = "invalid_redirect_uri"
	errInvalidClientMetadata   = "invalid_client_metadata"
	errSlowDown                = "slow_down"
)

// statusByCode is the one table from error code to HTTP status.
var statusByCode = map[string]int{
	errInvalidRequest:          http.StatusBadRequest,
	errInvalidClient:           http.StatusUnauthorized,
	errInvalidGrant:            http.StatusBadRequest,
	errUnauthorizedClient:      http.StatusBadRequest,
	errUnsupportedGrantType:    http.StatusBadRequest,
	errUnsupportedResponseType: http.StatusBadRequest,
	errInvalidScope:            http.StatusBadRequest,
	errInvalidTarget:           http.StatusBadRequest,
	errAccessDenied:            http.StatusForbidden,
	errServerError:             http.StatusInternalServerError,
	errTemporarilyUnavailable:  http.StatusServiceUnavailable,
	errInvalidToken:            http.StatusUnauthorized,
	errInvalidRedirectURI:      http.StatusBadRequest,
	errInvalidClientMetadata:   http.StatusBadRequest,
	errSlowDown:                http.StatusTooManyRequests,
}

// retryAfterSeconds is RetryAfter as the header says it.
var retryAfterSeconds = strconv.Itoa(int(RetryAfter / time.Second))

// Error is the one OAuth error type. Handlers return it; writeJSONError and
// redirectError turn it into a response.
type Error struct {
	Code        string
	Description string
	// Status overrides the table (used for 403 from the registration endpoint
	// and 404 from RFC 7592); zero means statusByCode.
	Status int
	// RetryAfter, when set, is the Retry-After of a 429 or 503 (a limit
	// says exactly when it lifts); zero means retryAfterSeconds.
	RetryAfter time.Duration
	cause      error
}

func (e *Error) Error() string {
	if e.cause != nil {
		return e.Code + ": " + e.Description + ": " + e.cause.Error()
	}
	return e.Code + ": " + e.Description
}

func (e *Error) Unwrap() error { return e.cause }

func (e *Error) status() int {
	if e.Status != 0 {
		return e.Status
	}
	if s, ok := statusByCode[e.Code]; ok {
		return s
	}
	return http.StatusBadRequest
}

func oauthErr(code, description string) *Error {
	return &Error{Code: code, Description: description}
}

// asOAuthError maps any error to the OAuth error to show. A store outage is
// temporarily_unavailable (never invalid_grant: clients such as x/oauth2
// throw the token away on invalid_grant); anything else unknown is
// server_error. The boolean reports whether the cause must be logged.
func asOAuthError(err error) (*Error, bool) {
	var oe *Error
	if errors.As(err, &oe) {
		return oe, oe.Code == errServerError || oe.Code == errTemporarilyUnavailable
	}
	if errors.Is(err, store.ErrUnavailable) {
		return &Error{Code: errTemporarilyUnavailable, Description: "the service is temporarily unavailable, retry later", cause: err}, true
	}
	return &Error{Code: errServerError, Description: "internal error", cause: err}, true
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
	if oe.Code == errTemporarilyUnavailable {
		setCause(r.Context(), unavailableCause(err))
	}
	h := w.Header()
	h.Set("Content-Type", "application/json;charset=UTF-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	switch oe.Code {
	case errInvalidClient:
		// RFC 6749 §5.2: a 401 carries a challenge for the scheme the client
		// may use. Built from the code, never from the message.
		h.Set("WWW-Authenticate", `Basic realm="authz"`)
	case errInvalidToken:
		h.Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	case errTemporarilyUnavailable, errSlowDown:
		h.Set("Retry-After", retryAfter(oe.RetryAfter))
	}
	w.WriteHeader(oe.status())
	body := map[string]string{"error": oe.Code}
	if oe.Description != "" {
		body["error_description"] = oe.Description
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
	params := url.Values{"error": {oe.Code}}
	if oe.Description != "" {
		params.Set("error_description", oe.Description)
	}
	s.redirect(w, r, redirectURI, state, params)
}

// redirect sends the browser to redirectURI with params, state and iss added
// to its query, keeping any query the registered URI already has.
func (s *Server) redirect(w http.ResponseWriter, r *http.Request, redirectURI, state string, params url.Values) {
	if state != "" {
		params.Set("state", state)
	}
	params.Set("iss", s.opts.Issuer)
	sep := "?"
	if strings.Contains(redirectURI, "?") {
		sep = "&"
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Location", redirectURI+sep+params.Encode())
	w.WriteHeader(http.StatusFound)
}
