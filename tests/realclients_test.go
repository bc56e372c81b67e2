package tests

// What /work/shared/CLIENTS.md says real clients depend on, where no other
// test pinned it: each test names the client behaviour it replays.

import (
	"net/url"
	"strings"
	"testing"

	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/store"
)

// descriptionOK reports whether s uses only the characters RFC 6749
// §4.1.2.1 and §5.2 allow in error_description: %x20-21 / %x23-5B /
// %x5D-7E.
func descriptionOK(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7E || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// TestErrorDescriptionsAreShowable: IDE plugins show error_description to
// the user, and strict parsers hold it to RFC 6749's character set. A
// description that quotes what the client sent (a resource, a redirect
// URI with a quote, a backslash or non-ASCII) still stays within it, in
// the authorization redirect, at the token endpoint and at registration,
// and still names what was wrong.
func TestErrorDescriptionsAreShowable(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		user, pw := e.user("shown")
		c, _, redirect := e.loopbackClient(false)
		const odd = `https://x.example/"é\`

		u := e.browser().authorize(authRequest{clientID: c.ID, redirectURI: redirect, state: "s", verifier: testVerifier, resources: []string{odd}}.url(e.issuer), user, pw)
		q := u.Query()
		mustEqual(t, "authorize error", q.Get("error"), "invalid_target")
		if d := q.Get("error_description"); !descriptionOK(d) || !strings.Contains(d, "https://x.example/") {
			t.Fatalf("authorization error_description %q: outside RFC 6749 §4.1.2.1's characters, or not naming the resource", d)
		}
		mustEqual(t, "state", q.Get("state"), "s")
		mustEqual(t, "iss", q.Get("iss"), e.issuer)

		svc, svcSecret := e.client(store.ClientMetadata{GrantTypes: []string{oauth.GrantClientCredentials}, Scopes: []string{"read"}})
		tr := e.postToken(url.Values{"grant_type": {"client_credentials"}, "resource": {odd}}, svc.ID, svcSecret)
		mustEqual(t, "token error", tr.Error, "invalid_target")
		if !descriptionOK(tr.ErrorDescription) || !strings.Contains(tr.ErrorDescription, "https://x.example/") {
			t.Fatalf("token error_description %q", tr.ErrorDescription)
		}

		status, m := e.register(t, map[string]any{"client_name": "x", "redirect_uris": []string{`https://app.example/cb#"é\`}})
		d, _ := m["error_description"].(string)
		if status != 400 || m["error"] != "invalid_redirect_uri" || !descriptionOK(d) || !strings.HasPrefix(d, "redirect_uris") {
			t.Fatalf("registration error %d %v: description outside RFC 7591 §3.2.2's ASCII", status, m)
		}
	})
}
