package tests

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/authzd/authz/provider/store"
)

// TestOversizedAndMalformedFormBodies: a token, revocation or
// introspection request whose body is over the 64 KiB limit was answered
// "the request body must be application/x-www-form-urlencoded", though it
// was; a developer chasing that looks at the wrong thing. Too large is
// now 413 invalid_request saying so, and a malformed body says what is
// wrong with it. Both are JSON errors (RFC 6749 §5.2).
func TestOversizedAndMalformedFormBodies(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		big := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {strings.Repeat("a", 70<<10)}}.Encode()
		for _, path := range []string{"/oauth2/token", "/oauth2/revoke", "/oauth2/introspect"} {
			for _, tc := range []struct {
				body   string
				status int
				want   string
			}{
				{big, http.StatusRequestEntityTooLarge, "larger than 64 KiB"},
				{"grant_type=%zz&token=x", http.StatusBadRequest, "invalid URL escape"},
			} {
				resp, err := http.Post(e.issuer+path, "application/x-www-form-urlencoded", strings.NewReader(tc.body))
				if err != nil {
					t.Fatal(err)
				}
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				var m map[string]string
				_ = json.Unmarshal(raw, &m)
				if resp.StatusCode != tc.status || m["error"] != "invalid_request" || !strings.Contains(m["error_description"], tc.want) {
					t.Errorf("POST %s (%d bytes): %d %s; want %d invalid_request mentioning %q", path, len(tc.body), resp.StatusCode, raw, tc.status, tc.want)
				}
			}
		}
	})
}
