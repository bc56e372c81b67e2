package provider

import (
	"errors"
	"net"
	"net/url"
	"slices"
	"strings"

	"github.com/authzd/authz/provider/dcr"
)

// parseScope splits a scope parameter into distinct tokens, keeping order.
func parseScope(s string) ([]string, bool) {
	var out []string
	for _, tok := range strings.Split(s, " ") {
		if tok == "" {
			continue
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

// subset reports whether every element of a is in b.
func subset(a, b []string) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

// normalizeResource checks an RFC 8707 resource indicator (absolute URI, no
// fragment) and returns its canonical form: scheme and host lower-cased, the
// default port dropped, a trailing slash removed. Two indicators naming the
// same resource compare equal after this; the path is kept, because an MCP
// server at https://host/mcp is not the API at https://host/other.
func normalizeResource(s string) (string, error) {
	if strings.Contains(s, "#") {
		return "", errors.New("a resource indicator must not contain a fragment (RFC 8707 §2)")
	}
	u, err := url.Parse(s)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Opaque != "" {
		return "", errors.New("a resource indicator must be an absolute URI (RFC 8707 §2)")
	}
	if u.User != nil {
		return "", errors.New("a resource indicator must not contain user info")
	}
	u.Scheme = strings.ToLower(u.Scheme)
	host, port := u.Hostname(), u.Port()
	host = strings.ToLower(host)
	if (u.Scheme == "https" && port == "443") || (u.Scheme == "http" && port == "80") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		u.Host = net.JoinHostPort(strings.Trim(host, "[]"), port)
	} else {
		u.Host = host
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return u.String(), nil
}
