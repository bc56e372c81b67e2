package provider

import (
	"slices"
	"strconv"
	"strings"

	"github.com/authzd/authz/provider/dcr"
	"github.com/authzd/authz/provider/oauth"
)

// parseScope splits a scope parameter into distinct tokens, keeping order.
// More than dcr.MaxScopeValues values is malformed: anyone can send an
// authorization request, and de-duplicating tens of thousands of distinct
// values (a 64 KiB query) cost half a second of CPU per request.
func parseScope(s string) ([]string, bool) {
	var out []string
	n := 0
	for _, tok := range strings.Split(s, " ") {
		if tok == "" {
			continue
		}
		if n++; n > dcr.MaxScopeValues {
			return nil, false
		}
		if !dcr.ValidScopeToken(tok) {
			return nil, false
		}
		if !slices.Contains(out, tok) {
			out = append(out, tok)
		}
	}
	return out, true
}

// errMalformedScope is the answer to a scope parameter parseScope refuses
// (RFC 6749 §3.3, §5.2).
func errMalformedScope() error {
	return oauth.New(oauth.CodeInvalidScope, "scope is malformed or has more than "+strconv.Itoa(dcr.MaxScopeValues)+" values")
}

// subset reports whether every element of a is in b.
func subset(a, b []string) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

// Scopes clients send by habit whatever the server advertises (Cline adds
// openid to every request; some DCR clients ask for offline_access). Neither
// may fail a request.
const (
	// ScopeOfflineAccess asks for a refresh token (OpenID Connect Core §11).
	// It is always offered and shown on consent as staying signed in; it
	// names no API permission, so protected resources never list it.
	ScopeOfflineAccess = "offline_access"
	// ScopeOpenID asks for an ID token (OpenID Connect Core §3.1.2.1).
	ScopeOpenID = "openid"
)

// dropUnhandled removes the scopes no layer of this server answers, rather
// than refusing them: openid when the OpenID Connect layer is off
// (AUTHZ_OIDC=off). This is the one place that decides it.
func (s *Server) dropUnhandled(scopes []string) []string {
	if s.oidcOn() {
		return scopes
	}
	return slices.DeleteFunc(slices.Clone(scopes), func(sc string) bool { return sc == ScopeOpenID })
}

// resourceScopes are the offered scopes a protected resource advertises
// (RFC 9728 §2): offline_access is about the grant, not the resource.
func resourceScopes(offered []string) []string {
	return slices.DeleteFunc(slices.Clone(offered), func(sc string) bool { return sc == ScopeOfflineAccess })
}
