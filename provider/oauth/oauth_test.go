package oauth

import (
	"errors"
	"net/http"
	"testing"
)

func TestStatus(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		code   string
		status int
	}{
		{CodeInvalidRequest, 400}, {CodeInvalidClient, 401}, {CodeInvalidGrant, 400}, {CodeUnauthorizedClient, 400},
		{CodeUnsupportedGrantType, 400}, {CodeUnsupportedResponseType, 400}, {CodeInvalidScope, 400},
		{CodeInvalidTarget, 400}, {CodeAccessDenied, 403}, {CodeServerError, 500}, {CodeTemporarilyUnavailable, 503},
		{CodeInvalidToken, 401}, {CodeInvalidRedirectURI, 400}, {CodeInvalidClientMetadata, 400}, {CodeSlowDown, 429},
		{CodeLoginRequired, 400}, {CodeConsentRequired, 400}, {CodeRequestNotSupported, 400},
		{CodeRequestURINotSupported, 400}, {CodeInsufficientScope, 403},
		{"made_up", 400},
	} {
		if got := Status(tc.code); got != tc.status {
			t.Errorf("Status(%s) = %d, want %d", tc.code, got, tc.status)
		}
	}
	if got := (&Error{Code: CodeAccessDenied, Status: http.StatusNotFound}).HTTPStatus(); got != 404 {
		t.Errorf("Status override: %d", got)
	}
	if !Retryable(CodeTemporarilyUnavailable) || !Retryable(CodeSlowDown) || Retryable(CodeInvalidGrant) {
		t.Error("Retryable")
	}
}

func TestError(t *testing.T) {
	t.Parallel()
	cause := errors.New("db down")
	e := &Error{Code: CodeServerError, Description: "internal error", Cause: cause}
	if !errors.Is(e, cause) || e.Error() != "server_error: internal error: db down" {
		t.Fatalf("Error() = %q, Is(cause) = %v", e.Error(), errors.Is(e, cause))
	}
	if got := Errorf(CodeInvalidScope, "scope %q", "x").Error(); got != `invalid_scope: scope "x"` {
		t.Fatalf("Errorf: %q", got)
	}
}

func TestWireDescription(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, in, want string }{
		{"plain", "unknown scope: bogus", "unknown scope: bogus"},
		{"every allowed byte kept", " !#[]~", " !#[]~"},
		{"quotes become single quotes", `redirect_uris: "x:/cb" has a fragment`, `redirect_uris: 'x:/cb' has a fragment`},
		{"backslash", `a\b`, `a%5Cb`},
		{"non-ASCII", "é", "%C3%A9"},
		{"controls", "a\nb\tc\x7f", "a%0Ab%09c%7F"},
		{"empty", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := (&Error{Description: tc.in}).WireDescription(); got != tc.want {
				t.Fatalf("WireDescription(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}
