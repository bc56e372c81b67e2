package dcr

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/authzd/authz/provider/oauth"
)

// FuzzRegistration: any body is either refused with a registration error
// or yields metadata that obeys every rule Normalize promises. The seeds
// run under go test; `go test -fuzz FuzzRegistration ./provider/dcr`
// explores further.
func FuzzRegistration(f *testing.F) {
	for _, seed := range []string{
		`{"redirect_uris":["https://app.example.com/cb"]}`,
		`{"redirect_uris":["jetbrains://x/cb","http://127.0.0.1/cb"],"application_type":"native","token_endpoint_auth_method":"none"}`,
		`{"grant_types":["client_credentials"],"token_endpoint_auth_method":"private_key_jwt","jwks":{"keys":[{"kty":"EC"}]}}`,
		`{"redirect_uris":["javascript:alert(1)"]}`,
		`{"redirect_uris":"x"}`, `null`, `[]`, `{}}`, `{"scope":"a\u0000b"}`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		m, err := Decode(strings.NewReader(body))
		if err == nil {
			err = m.Normalize()
		}
		if err != nil {
			var de *oauth.Error
			if !errors.As(err, &de) || (de.Code != oauth.CodeInvalidClientMetadata && de.Code != oauth.CodeInvalidRedirectURI) || de.Description == "" {
				t.Fatalf("error %v is not a registration error", err)
			}
			return
		}
		if !slices.Contains(oauth.AuthMethods, m.TokenEndpointAuthMethod) || (m.ApplicationType != AppWeb && m.ApplicationType != AppNative) {
			t.Fatalf("accepted %+v", m)
		}
		code := slices.Contains(m.GrantTypes, oauth.GrantAuthorizationCode)
		if code != (len(m.RedirectURIs) > 0) || code != slices.Contains(m.ResponseTypes, oauth.ResponseCode) {
			t.Fatalf("inconsistent grant, response types and redirects: %+v", m)
		}
		for _, r := range m.RedirectURIs {
			if err := ValidateRedirectURI(r, m.ApplicationType); err != nil {
				t.Fatalf("accepted redirect %q: %v", r, err)
			}
		}
		if slices.Contains(m.GrantTypes, oauth.GrantClientCredentials) && m.TokenEndpointAuthMethod == oauth.AuthNone {
			t.Fatal("public client_credentials client accepted")
		}
	})
}
