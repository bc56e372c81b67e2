package provider

import (
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/authzd/authz/internal/resourceid"

	"github.com/google/uuid"

	"github.com/authzd/authz/provider/dcr"
	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/store"
	"github.com/authzd/authz/provider/tokens"
)

// NewClient checks m and builds a client ready to store, with a fresh ID
// and, for a confidential client, a fresh secret (returned once; only its
// hash is kept). The CLI and dynamic registration both use it. The client
// is TrustAdmin, as the CLI makes it; dynamic registration marks its
// clients TrustRegistered before storing them.
func NewClient(m store.ClientMetadata, now time.Time, r io.Reader) (store.Client, string, error) {
	if err := CheckClientMetadata(&m); err != nil {
		return store.Client{}, "", err
	}
	id, err := uuid.NewRandomFromReader(r)
	if err != nil {
		return store.Client{}, "", err
	}
	c := store.Client{ID: id.String(), Trust: store.TrustAdmin, Metadata: m, CreatedAt: now, UpdatedAt: now}
	var secret string
	if usesSecret(m) {
		if secret, err = tokens.NewSecret(r, tokens.PrefixClientSecret); err != nil {
			return store.Client{}, "", err
		}
		c.SecretHash = tokens.Hash(secret)
	}
	return c, secret, nil
}

// UpdateClient replaces c's metadata with m after the registration checks,
// as an RFC 7592 update and `authz client update` both do. A client stays
// public or confidential. Its secret follows its authentication method:
// moving to a secret method (or rotate) issues a new secret, returned once;
// moving to private_key_jwt drops the stored one so it cannot come back to
// life. Errors are *oauth.Error.
func UpdateClient(c *store.Client, m store.ClientMetadata, rotate bool, now time.Time, r io.Reader) (string, error) {
	if err := CheckClientMetadata(&m); err != nil {
		return "", err
	}
	if (m.TokenEndpointAuthMethod == oauth.AuthNone) != c.Public() {
		return "", &oauth.Error{Code: oauth.CodeInvalidClientMetadata, Description: "token_endpoint_auth_method: a client cannot switch between public and confidential"}
	}
	usesSecret := usesSecret(m)
	if rotate && !usesSecret {
		return "", &oauth.Error{Code: oauth.CodeInvalidClientMetadata, Description: "token_endpoint_auth_method: the client does not authenticate with a secret"}
	}
	var secret string
	switch {
	case usesSecret && (c.SecretHash == nil || rotate):
		var err error
		if secret, err = tokens.NewSecret(r, tokens.PrefixClientSecret); err != nil {
			return "", err
		}
		c.SecretHash = tokens.Hash(secret)
	case !usesSecret:
		c.SecretHash = nil
	}
	c.Metadata, c.UpdatedAt = m, now
	return secret, nil
}

// usesSecret reports whether a client with m authenticates with a secret.
func usesSecret(m store.ClientMetadata) bool {
	return m.TokenEndpointAuthMethod == oauth.AuthClientSecretBasic || m.TokenEndpointAuthMethod == oauth.AuthClientSecretPost
}

// CheckClientMetadata applies the registration rules (RFC 7591 §2, OAuth 2.1
// redirect rules) to m, filling defaults, and normalises its resources.
// Errors are *oauth.Error.
func CheckClientMetadata(m *store.ClientMetadata) error {
	d := toDCR(*m)
	if err := d.Normalize(); err != nil {
		return err
	}
	for i, r := range m.Resources {
		n, err := resourceid.Canonical(r)
		if err != nil {
			return &oauth.Error{Code: oauth.CodeInvalidClientMetadata, Description: "resources: " + err.Error()}
		}
		m.Resources[i] = n
	}
	for _, sc := range m.Scopes {
		if !dcr.ValidScopeToken(sc) {
			return &oauth.Error{Code: oauth.CodeInvalidClientMetadata, Description: "scope: invalid scope " + sc}
		}
	}
	fromDCR(m, d)
	return nil
}

// toDCR and fromDCR convert between the stored metadata and the RFC 7591
// wire form that provider/dcr validates.
func toDCR(m store.ClientMetadata) dcr.Metadata {
	return dcr.Metadata{
		RedirectURIs: m.RedirectURIs, TokenEndpointAuthMethod: m.TokenEndpointAuthMethod,
		GrantTypes: m.GrantTypes, ResponseTypes: m.ResponseTypes, ApplicationType: m.ApplicationType,
		ClientName: m.Name, ClientURI: m.ClientURI, LogoURI: m.LogoURI, Scope: strings.Join(m.Scopes, " "),
		Contacts: m.Contacts, TOSURI: m.TOSURI, PolicyURI: m.PolicyURI, SoftwareID: m.SoftwareID,
		SoftwareVersion: m.SoftwareVersion, JWKSURI: m.JWKSURI, JWKS: m.JWKS,
		IDTokenSignedResponseAlg: m.IDTokenSignedResponseAlg, PostLogoutRedirectURIs: m.PostLogoutRedirectURIs,
	}
}

func fromDCR(m *store.ClientMetadata, d dcr.Metadata) {
	scopes, _ := parseScope(d.Scope)
	*m = store.ClientMetadata{
		Name: d.ClientName, RedirectURIs: d.RedirectURIs, TokenEndpointAuthMethod: d.TokenEndpointAuthMethod,
		GrantTypes: d.GrantTypes, ResponseTypes: d.ResponseTypes, ApplicationType: d.ApplicationType,
		Scopes: scopes, Resources: m.Resources, Introspect: m.Introspect, ClientURI: d.ClientURI, LogoURI: d.LogoURI, TOSURI: d.TOSURI,
		PolicyURI: d.PolicyURI, Contacts: d.Contacts, SoftwareID: d.SoftwareID, SoftwareVersion: d.SoftwareVersion,
		JWKSURI: d.JWKSURI, JWKS: d.JWKS,
		IDTokenSignedResponseAlg: d.IDTokenSignedResponseAlg, PostLogoutRedirectURIs: d.PostLogoutRedirectURIs,
	}
}

// ApplicationTypeFor guesses the RFC 7591 application_type for redirect URIs
// given on the command line: native when any is a private-use scheme or a
// loopback address, web otherwise. An administrator mixing https and a
// private-use scheme means a native app; registrations and metadata
// documents, which nobody vouches for, use the stricter
// dcr.InferApplicationType (native only when every URI is).
func ApplicationTypeFor(redirectURIs []string) string {
	for _, r := range redirectURIs {
		u, err := url.Parse(r)
		if err != nil {
			continue
		}
		if (u.Scheme != "http" && u.Scheme != "https") || isLoopback(r) {
			return dcr.AppNative
		}
	}
	return dcr.AppWeb
}
