package oauth

import (
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Grant types (RFC 6749 §4.1, §4.4, §6).
const (
	GrantAuthorizationCode = "authorization_code"
	GrantRefreshToken      = "refresh_token"
	GrantClientCredentials = "client_credentials"
)

// GrantTypes lists the grant types this server implements, in the order
// they are advertised (RFC 8414 grant_types_supported).
var GrantTypes = []string{GrantAuthorizationCode, GrantRefreshToken, GrantClientCredentials}

// DefaultGrantTypes are a client's grant types when its metadata names
// none (RFC 7591 §2: "If omitted, the default behavior is that the client
// will use only the authorization_code Grant Type"). Registration fills
// them in and the token endpoint reads an empty list the same way.
var DefaultGrantTypes = []string{GrantAuthorizationCode}

// Client authentication methods at the token endpoint (RFC 7591 §2,
// RFC 7523 §2.2 for private_key_jwt).
const (
	AuthNone              = "none"
	AuthClientSecretBasic = "client_secret_basic"
	AuthClientSecretPost  = "client_secret_post"
	AuthPrivateKeyJWT     = "private_key_jwt"
)

// AuthMethods lists the authentication methods, in the order they are
// advertised.
var AuthMethods = []string{AuthClientSecretBasic, AuthClientSecretPost, AuthPrivateKeyJWT, AuthNone}

// ConfidentialAuthMethods are the methods by which a client proves who it
// is (every method but none).
var ConfidentialAuthMethods = []string{AuthClientSecretBasic, AuthClientSecretPost, AuthPrivateKeyJWT}

// ResponseCode is the only response type (OAuth 2.1 §4.1: no implicit
// grant).
const ResponseCode = "code"

// ResponseModeQuery is the only response mode (OAuth 2.0 Multiple Response
// Type Encoding Practices §2.1: the code's default; no fragment or form_post).
const ResponseModeQuery = "query"

// CodeChallengeS256 is the only PKCE method (RFC 7636 §4.2; plain is not
// accepted).
const CodeChallengeS256 = "S256"

// IDTokenAlgorithms are the JWS algorithms ID tokens may be signed with:
// what discovery advertises (id_token_signing_alg_values_supported), what
// a client may register (id_token_signed_response_alg, OpenID Connect
// Registration §2) and what the server makes keys for. RS256 comes first:
// OpenID Connect Discovery §3 requires it, and it is the default (OIDC
// Core §3.1.3.7). Never "none": a code client always uses the token
// endpoint.
var IDTokenAlgorithms = []string{"RS256", "ES256", "EdDSA"}

// Error codes: RFC 6749 §4.1.2.1 and §5.2, RFC 6750 §3.1, RFC 7591 §3.2.2,
// RFC 8707 §2, RFC 8628 §3.5 (slow_down, used for rate limits).
const (
	CodeInvalidRequest          = "invalid_request"
	CodeInvalidClient           = "invalid_client"
	CodeInvalidGrant            = "invalid_grant"
	CodeUnauthorizedClient      = "unauthorized_client"
	CodeUnsupportedGrantType    = "unsupported_grant_type"
	CodeUnsupportedResponseType = "unsupported_response_type"
	CodeInvalidScope            = "invalid_scope"
	CodeInvalidTarget           = "invalid_target"
	CodeAccessDenied            = "access_denied"
	CodeServerError             = "server_error"
	CodeTemporarilyUnavailable  = "temporarily_unavailable"
	CodeInvalidToken            = "invalid_token"
	CodeInvalidRedirectURI      = "invalid_redirect_uri"
	CodeInvalidClientMetadata   = "invalid_client_metadata"
	CodeSlowDown                = "slow_down"
	// OpenID Connect Core §3.1.2.6 (authorization errors) and RFC 6750
	// §3.1 (a bearer token lacking a scope, at UserInfo).
	CodeLoginRequired          = "login_required"
	CodeConsentRequired        = "consent_required"
	CodeRequestNotSupported    = "request_not_supported"
	CodeRequestURINotSupported = "request_uri_not_supported"
	CodeInsufficientScope      = "insufficient_scope"
)

// statusByCode is the one table from error code to HTTP status.
var statusByCode = map[string]int{
	CodeInvalidRequest:          http.StatusBadRequest,
	CodeInvalidClient:           http.StatusUnauthorized,
	CodeInvalidGrant:            http.StatusBadRequest,
	CodeUnauthorizedClient:      http.StatusBadRequest,
	CodeUnsupportedGrantType:    http.StatusBadRequest,
	CodeUnsupportedResponseType: http.StatusBadRequest,
	CodeInvalidScope:            http.StatusBadRequest,
	CodeInvalidTarget:           http.StatusBadRequest,
	CodeAccessDenied:            http.StatusForbidden,
	CodeServerError:             http.StatusInternalServerError,
	CodeTemporarilyUnavailable:  http.StatusServiceUnavailable,
	CodeInvalidToken:            http.StatusUnauthorized,
	CodeInvalidRedirectURI:      http.StatusBadRequest,
	CodeInvalidClientMetadata:   http.StatusBadRequest,
	CodeSlowDown:                http.StatusTooManyRequests,
	CodeLoginRequired:           http.StatusBadRequest,
	CodeConsentRequired:         http.StatusBadRequest,
	CodeRequestNotSupported:     http.StatusBadRequest,
	CodeRequestURINotSupported:  http.StatusBadRequest,
	CodeInsufficientScope:       http.StatusForbidden,
}

// Status is the HTTP status an error with code is answered with; an
// unknown code is a 400.
func Status(code string) int {
	if s, ok := statusByCode[code]; ok {
		return s
	}
	return http.StatusBadRequest
}

// Retryable reports whether an error with code asks the client to come
// back later (with Retry-After) rather than change its request.
func Retryable(code string) bool {
	return code == CodeTemporarilyUnavailable || code == CodeSlowDown
}

// Error is the one OAuth error type. Handlers and leaves return it; the
// provider writes it once as JSON, as an authorization redirect or as a
// page.
type Error struct {
	Code        string
	Description string
	// Status overrides the table (403 from a closed registration endpoint,
	// 404 from RFC 7592, 405); zero means Status(Code).
	Status int
	// RetryAfter, when set, is the Retry-After of a 429 or 503 (a limit
	// says exactly when it lifts); zero means the server's default.
	RetryAfter time.Duration
	// Cause is logged, never shown.
	Cause error
}

// New returns an error with code and description.
func New(code, description string) *Error { return &Error{Code: code, Description: description} }

// Errorf returns an error with code and a formatted description.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Description: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return e.Code + ": " + e.Description + ": " + e.Cause.Error()
	}
	return e.Code + ": " + e.Description
}

func (e *Error) Unwrap() error { return e.Cause }

// WireDescription is e's description as it may be sent: RFC 6749
// §4.1.2.1 and §5.2 allow only %x20-21 / %x23-5B / %x5D-7E in
// error_description (printable ASCII without '"' and '\'), and RFC 7591
// §3.2.2 asks for ASCII. Descriptions often quote what the client sent (a
// redirect URI, a resource), so a double quote becomes a single one and
// every other byte outside the set is percent-encoded, which keeps a URL
// readable and a strict client's parser happy.
func (e *Error) WireDescription() string {
	s := e.Description
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			b.WriteByte('\'')
		case descriptionByte(c):
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// descriptionByte reports whether c may appear in an error_description
// (RFC 6749 §4.1.2.1: %x20-21 / %x23-5B / %x5D-7E).
func descriptionByte(c byte) bool {
	return c >= 0x20 && c <= 0x7E && c != '"' && c != '\\'
}

// HTTPStatus is the status to answer e with.
func (e *Error) HTTPStatus() int {
	if e.Status != 0 {
		return e.Status
	}
	return Status(e.Code)
}
