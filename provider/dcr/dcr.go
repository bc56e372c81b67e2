package dcr

import (
	"encoding/json"
	"io"
	"net/url"
	"slices"
	"strings"
)

type Metadata struct {
	RedirectURIs            []string        `json:"redirect_uris,omitempty"`
	TokenEndpointAuthMethod string          `json:"token_endpoint_auth_method,omitempty"`
	GrantTypes              []string        `json:"grant_types,omitempty"`
	ResponseTypes           []string        `json:"response_types,omitempty"`
	ApplicationType         string          `json:"application_type,omitempty"`
	ClientName              string          `json:"client_name,omitempty"`
	ClientURI               string          `json:"client_uri,omitempty"`
	LogoURI                 string          `json:"logo_uri,omitempty"`
	Scope                   string          `json:"scope,omitempty"`
	Contacts                []string        `json:"contacts,omitempty"`
	TOSURI                  string          `json:"tos_uri,omitempty"`
	PolicyURI               string          `json:"policy_uri,omitempty"`
	SoftwareID              string          `json:"software_id,omitempty"`
	SoftwareVersion         string          `json:"software_version,omitempty"`
	JWKSURI                 string          `json:"jwks_uri,omitempty"`
	JWKS                    json.RawMessage `json:"jwks,omitempty"`
}

type Error struct{ Code, Description string }

func (e *Error) Error() string { return e.Code + ": " + e.Description }

func Decode(r io.Reader) (Metadata, error) {
	var m Metadata
	if err := json.NewDecoder(r).Decode(&m); err != nil {
		return m, &Error{"invalid_client_metadata", err.Error()}
	}
	return m, nil
}

func (m *Metadata) Normalize() error {
	if m.TokenEndpointAuthMethod == "" {
		m.TokenEndpointAuthMethod = "client_secret_basic"
	}
	if len(m.GrantTypes) == 0 {
		m.GrantTypes = []string{"authorization_code"}
	}
	if len(m.ResponseTypes) == 0 {
		m.ResponseTypes = []string{"code"}
	}
	if m.ApplicationType == "" {
		m.ApplicationType = "web"
	}
	for _, r := range m.RedirectURIs {
		if err := ValidateRedirectURI(r, m.ApplicationType); err != nil {
			return err
		}
	}
	if slices.Contains(m.GrantTypes, "authorization_code") && len(m.RedirectURIs) == 0 {
		return &Error{"invalid_redirect_uri", "redirect_uris: required"}
	}
	return nil
}

func ValidateRedirectURI(uri, appType string) error {
	u, err := url.Parse(uri)
	if err != nil || !u.IsAbs() || strings.Contains(uri, "#") {
		return &Error{"invalid_redirect_uri", "redirect_uris: " + uri}
	}
	switch strings.ToLower(u.Scheme) {
	case "javascript", "data", "file", "vbscript":
		return &Error{"invalid_redirect_uri", "redirect_uris: dangerous scheme"}
	case "https":
		return nil
	case "http":
		h := u.Hostname()
		if h == "127.0.0.1" || h == "::1" || h == "localhost" {
			return nil
		}
		return &Error{"invalid_redirect_uri", "redirect_uris: http only for loopback"}
	}
	if appType != "native" {
		return &Error{"invalid_redirect_uri", "redirect_uris: custom scheme needs native"}
	}
	return nil
}

func MatchRedirectURI(registered []string, requested string) (string, bool) {
	if slices.Contains(registered, requested) {
		return requested, true
	}
	ru, err := url.Parse(requested)
	if err != nil || ru.Scheme != "http" || ru.User != nil {
		return "", false
	}
	for _, r := range registered {
		u, err := url.Parse(r)
		if err != nil || u.Scheme != "http" {
			continue
		}
		h := u.Hostname()
		if (h == "127.0.0.1" || h == "::1" || h == "localhost") && h == ru.Hostname() && u.Path == ru.Path && u.RawQuery == ru.RawQuery {
			return requested, true
		}
	}
	return "", false
}
