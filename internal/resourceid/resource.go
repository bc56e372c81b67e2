package resourceid

import (
	"errors"
	"net"
	"net/url"
	"strings"
)

// Canonical checks a resource identifier (an absolute URI without a
// fragment or user information, RFC 8707 §2) and returns its canonical form
// (RFC 3986 §6.2.2, §6.2.3):
//
//   - scheme and host lower-cased, the scheme's default port dropped;
//   - percent-encodings upper-cased, and those of unreserved characters
//     decoded; a reserved character stays encoded (%2F is not "/", so
//     https://h/a%2Fb and https://h/a/b stay different resources);
//   - an empty path and "/" are the same: https://host/ is https://host;
//   - an empty query ("?" alone) is dropped.
//
// Any other trailing slash is kept: https://h/mcp/ and https://h/mcp are
// different URIs. Match decides when that difference may be ignored.
func Canonical(s string) (string, error) {
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
	scheme := strings.ToLower(u.Scheme)
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
		port = ""
	}
	if port != "" {
		host = net.JoinHostPort(host, port)
	} else if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	path := normalizeEscapes(u.EscapedPath())
	if path == "/" {
		path = ""
	}
	out := scheme + "://" + host + path
	if u.RawQuery != "" {
		out += "?" + normalizeEscapes(u.RawQuery)
	}
	return out, nil
}

// normalizeEscapes upper-cases percent-encodings and decodes those of
// unreserved characters (RFC 3986 §2.3, §6.2.2.2).
func normalizeEscapes(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			c := unhex(s[i+1])<<4 | unhex(s[i+2])
			if unreserved(c) {
				b.WriteByte(c)
			} else {
				b.WriteByte('%')
				b.WriteString(strings.ToUpper(s[i+1 : i+3]))
			}
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

// slashless is a canonical identifier without a final "/" on its path.
func slashless(canonical string) string {
	path, query, hasQuery := strings.Cut(canonical, "?")
	path = strings.TrimSuffix(path, "/")
	if hasQuery {
		return path + "?" + query
	}
	return path
}

// Match finds the configured resource (each in canonical form) that a
// requested identifier names. An exact canonical match wins; otherwise a
// request that differs from exactly one configured resource only by a final
// "/" gets that resource, so the configured form is what goes into a
// token's aud. Clients add or drop the slash by habit (claude.ai sends
// https://host/ for https://host); two configured resources that differ
// only by it make the request ambiguous, and it matches neither.
func Match(requested string, configured []string) (string, bool, error) {
	c, err := Canonical(requested)
	if err != nil {
		return "", false, err
	}
	for _, r := range configured {
		if r == c {
			return r, true, nil
		}
	}
	found, n := "", 0
	for _, r := range configured {
		if slashless(r) == slashless(c) {
			found, n = r, n+1
		}
	}
	return found, n == 1, nil
}

// Well-known URI suffixes: the server serves its documents there and the
// middleware looks for them there, so both read them from here.
const (
	AuthorizationServerSuffix = "/.well-known/oauth-authorization-server" // RFC 8414 §3
	ProtectedResourceSuffix   = "/.well-known/oauth-protected-resource"   // RFC 9728 §3
	OpenIDConfigurationSuffix = "/.well-known/openid-configuration"       // OIDC Discovery §4
)

// WellKnownPath returns the path of the well-known document for identifier
// (an issuer or a resource URL): suffix, followed by the identifier's path
// when it has one (RFC 8414 §3.1, RFC 9728 §3.1). A final "/" on the
// identifier's path is not carried over.
func WellKnownPath(identifier, suffix string) (string, error) {
	u, err := url.Parse(identifier)
	if err != nil {
		return "", err
	}
	return suffix + strings.TrimSuffix(u.EscapedPath(), "/"), nil
}

// WellKnownURL returns the absolute URL of the well-known document for
// identifier.
func WellKnownURL(identifier, suffix string) (string, error) {
	u, err := url.Parse(identifier)
	if err != nil || u.Host == "" {
		return "", errors.New("not an absolute URL")
	}
	p, err := WellKnownPath(identifier, suffix)
	if err != nil {
		return "", err
	}
	return u.Scheme + "://" + u.Host + p, nil
}
