package provider

import (
	"slices"

	"github.com/authzd/authz/internal/resourceid"
	"github.com/authzd/authz/provider/store"
)

// CheckOffered reports the first scope or resource in a client's
// allowances that the server does not offer (scopes; resources, which
// default to the issuer), so an administrator cannot allow a client what no
// request could ever get. which is "scope" or "resource".
func CheckOffered(m store.ClientMetadata, issuer string, scopes, resources []string) (which, value string, ok bool) {
	for _, s := range m.Scopes {
		if !slices.Contains(scopes, s) {
			return "scope", s, false
		}
	}
	if len(resources) == 0 {
		resources = []string{issuer}
	}
	var offered []string
	for _, r := range resources {
		if n, err := resourceid.Canonical(r); err == nil {
			offered = append(offered, n)
		}
	}
	for _, r := range m.Resources {
		if _, ok, err := resourceid.Match(r, offered); err != nil || !ok {
			return "resource", r, false
		}
	}
	return "", "", true
}
