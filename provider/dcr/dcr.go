package dcr

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/authzd/authz/provider/oauth"
)

// Application types (OpenID Connect Registration §2, as RFC 7591 clients
// send them).
const (
	AppWeb    = "web"
	AppNative = "native"
)

// Limits on what one registration may carry.
const (
	maxString    = 2048
	maxList      = 20
	maxJWKSBytes = 16 << 10
)

// MaxScopeValues bounds the scope values of one registration or one
// request. No server offers this many; the bound keeps the cost of a
// hostile scope parameter (tens of thousands of distinct values in a
// 64 KiB request) to a few microseconds.
const MaxScopeValues = 256

// Metadata is the RFC 7591 §2 client metadata this server understands.
// Fields it does not know are dropped while decoding.
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
	// TokenEndpointAuthMethodsSupported is the "RP metadata choices" form
	// some clients publish instead of token_endpoint_auth_method (ChatGPT's
	// documents: ["none","private_key_jwt"]). Normalize picks one and
	// clears it.
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported,omitempty"`
	// OpenID Connect Dynamic Client Registration §2 and RP-Initiated
	// Logout §3.1.
	IDTokenSignedResponseAlg string   `json:"id_token_signed_response_alg,omitempty"`
	PostLogoutRedirectURIs   []string `json:"post_logout_redirect_uris,omitempty"`
}

// Errors are *oauth.Error with one of the RFC 7591 §3.2.2 codes; the
// description names the offending field.

func metaErr(field, format string, args ...any) *oauth.Error {
	return oauth.New(oauth.CodeInvalidClientMetadata, field+": "+fmt.Sprintf(format, args...))
}

func redirectErr(format string, args ...any) *oauth.Error {
	return oauth.New(oauth.CodeInvalidRedirectURI, "redirect_uris: "+fmt.Sprintf(format, args...))
}

// Decode reads one JSON object of client metadata. Malformed JSON and
// fields of the wrong type are invalid_client_metadata.
func Decode(r io.Reader) (Metadata, error) {
	var m Metadata
	raw, err := io.ReadAll(r)
	if err != nil {
		return Metadata{}, oauth.New(oauth.CodeInvalidClientMetadata, "body: unreadable")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&m); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			want := "string"
			if te.Type.Kind() == reflect.Slice {
				want = "array of strings"
			}
			return Metadata{}, metaErr(te.Field, "must be a JSON %s", want)
		}
		return Metadata{}, oauth.New(oauth.CodeInvalidClientMetadata, "body: not a JSON object")
	}
	if !bytes.HasPrefix(bytes.TrimLeft(raw, " \t\r\n"), []byte("{")) {
		return Metadata{}, oauth.New(oauth.CodeInvalidClientMetadata, "body: not a JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return Metadata{}, oauth.New(oauth.CodeInvalidClientMetadata, "body: trailing data after the JSON object")
	}
	return m, nil
}

// Normalize fills the RFC 7591 defaults and checks m against the rules of
// RFC 7591 §2 and OAuth 2.1. It returns an *oauth.Error naming the first bad field.
func (m *Metadata) Normalize() error {
	if err := m.checkStrings(); err != nil {
		return err
	}

	// Authentication method. A client that lists the methods it can use
	// gets none (public) when it lists it, else private_key_jwt: never a
	// shared secret it did not ask for.
	if m.TokenEndpointAuthMethod == "" && len(m.TokenEndpointAuthMethodsSupported) > 0 {
		m.TokenEndpointAuthMethod = oauth.AuthPrivateKeyJWT
		if slices.Contains(m.TokenEndpointAuthMethodsSupported, oauth.AuthNone) {
			m.TokenEndpointAuthMethod = oauth.AuthNone
		}
	}
	m.TokenEndpointAuthMethodsSupported = nil
	if m.TokenEndpointAuthMethod == "" {
		m.TokenEndpointAuthMethod = oauth.AuthClientSecretBasic
	}
	if !slices.Contains(oauth.AuthMethods, m.TokenEndpointAuthMethod) {
		return metaErr("token_endpoint_auth_method", "unsupported value %q (supported: %s)", m.TokenEndpointAuthMethod, strings.Join(oauth.AuthMethods, ", "))
	}

	// Grant and response types. Grant types this server does not support
	// are ignored, not fatal: shipping clients list extras by habit
	// (claude.ai: urn:ietf:params:oauth:grant-type:jwt-bearer) and get the
	// supported ones.
	if len(m.GrantTypes) == 0 {
		m.GrantTypes = slices.Clone(oauth.DefaultGrantTypes)
	}
	listed := m.GrantTypes
	m.GrantTypes = slices.DeleteFunc(dedupe(m.GrantTypes), func(g string) bool { return !slices.Contains(oauth.GrantTypes, g) })
	if len(m.GrantTypes) == 0 {
		return metaErr("grant_types", "no supported grant type among %q (supported: %s)", listed, strings.Join(oauth.GrantTypes, ", "))
	}
	code := slices.Contains(m.GrantTypes, oauth.GrantAuthorizationCode)
	if slices.Contains(m.GrantTypes, oauth.GrantClientCredentials) && m.TokenEndpointAuthMethod == oauth.AuthNone {
		return metaErr("grant_types", "client_credentials needs a confidential client (token_endpoint_auth_method other than none)")
	}
	if slices.Contains(m.GrantTypes, oauth.GrantRefreshToken) && !code {
		return metaErr("grant_types", "refresh_token needs authorization_code")
	}
	if len(m.ResponseTypes) == 0 && code {
		m.ResponseTypes = []string{oauth.ResponseCode}
	}
	m.ResponseTypes = dedupe(m.ResponseTypes)
	for _, rt := range m.ResponseTypes {
		if rt != oauth.ResponseCode {
			return metaErr("response_types", "unsupported response type %q (only code)", rt)
		}
	}
	if code != slices.Contains(m.ResponseTypes, oauth.ResponseCode) {
		return metaErr("response_types", "response type code goes with grant type authorization_code and only with it")
	}

	// Application type and redirect URIs. A missing application_type is
	// inferred, since clients publish none (Claude Code's document).
	if m.ApplicationType == "" {
		m.ApplicationType = InferApplicationType(m.RedirectURIs)
	}
	if m.ApplicationType != AppWeb && m.ApplicationType != AppNative {
		return metaErr("application_type", "must be web or native, not %q", m.ApplicationType)
	}
	if code && len(m.RedirectURIs) == 0 {
		return redirectErr("at least one is required for the authorization_code grant")
	}
	if !code && len(m.RedirectURIs) > 0 {
		return redirectErr("only clients of the authorization_code grant use redirect URIs")
	}
	m.RedirectURIs = dedupe(m.RedirectURIs)
	for _, r := range m.RedirectURIs {
		if err := ValidateRedirectURI(r, m.ApplicationType); err != nil {
			return err
		}
	}

	// Informational URIs.
	for _, f := range []struct{ name, value string }{
		{"client_uri", m.ClientURI}, {"logo_uri", m.LogoURI}, {"tos_uri", m.TOSURI}, {"policy_uri", m.PolicyURI},
	} {
		if f.value != "" && !webURL(f.value) {
			return metaErr(f.name, "must be an absolute http or https URL")
		}
	}

	// Scope: space-separated scope tokens (RFC 6749 §3.3).
	if n := len(strings.Fields(m.Scope)); n > MaxScopeValues {
		return metaErr("scope", "more than %d values", MaxScopeValues)
	}
	for _, s := range strings.Fields(m.Scope) {
		if !ValidScopeToken(s) {
			return metaErr("scope", "invalid scope token %q", s)
		}
	}
	m.Scope = strings.Join(dedupe(strings.Fields(m.Scope)), " ")

	// Keys.
	if m.JWKSURI != "" && len(m.JWKS) > 0 {
		return metaErr("jwks", "jwks and jwks_uri must not both be present")
	}
	if m.JWKSURI != "" {
		u, err := url.Parse(m.JWKSURI)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.Fragment != "" {
			return metaErr("jwks_uri", "must be an absolute https URL")
		}
	}
	if len(m.JWKS) > 0 {
		if len(m.JWKS) > maxJWKSBytes {
			return metaErr("jwks", "larger than %d bytes", maxJWKSBytes)
		}
		var set struct {
			Keys []json.RawMessage `json:"keys"`
		}
		if err := json.Unmarshal(m.JWKS, &set); err != nil || len(set.Keys) == 0 {
			return metaErr("jwks", "must be a JWK Set with at least one key")
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, m.JWKS); err == nil {
			m.JWKS = buf.Bytes()
		}
	}
	// OpenID Connect: never "none" (OIDC Registration §2 allows it only
	// without a token endpoint, which a code client always uses).
	if m.IDTokenSignedResponseAlg != "" && !slices.Contains(oauth.IDTokenAlgorithms, m.IDTokenSignedResponseAlg) {
		return metaErr("id_token_signed_response_alg", "unsupported value %q (supported: %s)", m.IDTokenSignedResponseAlg, strings.Join(oauth.IDTokenAlgorithms, ", "))
	}
	// Logout returns are redirects like any other: the same rules apply.
	m.PostLogoutRedirectURIs = dedupe(m.PostLogoutRedirectURIs)
	for _, r := range m.PostLogoutRedirectURIs {
		if err := ValidateRedirectURI(r, m.ApplicationType); err != nil {
			var e *oauth.Error
			if errors.As(err, &e) {
				return metaErr("post_logout_redirect_uris", "%s", strings.TrimPrefix(e.Description, "redirect_uris: "))
			}
			return err
		}
	}
	if m.TokenEndpointAuthMethod == oauth.AuthPrivateKeyJWT && m.JWKSURI == "" && len(m.JWKS) == 0 {
		return metaErr("jwks", "private_key_jwt needs jwks or jwks_uri")
	}
	return nil
}

// checkStrings bounds lengths and list sizes and rejects control
// characters, invisible format characters and invalid UTF-8 in every string
// the client sends.
func (m *Metadata) checkStrings() error {
	single := []struct{ name, value string }{
		{"token_endpoint_auth_method", m.TokenEndpointAuthMethod}, {"application_type", m.ApplicationType},
		{"client_name", m.ClientName}, {"client_uri", m.ClientURI}, {"logo_uri", m.LogoURI}, {"scope", m.Scope},
		{"tos_uri", m.TOSURI}, {"policy_uri", m.PolicyURI}, {"software_id", m.SoftwareID},
		{"software_version", m.SoftwareVersion}, {"jwks_uri", m.JWKSURI},
		{"id_token_signed_response_alg", m.IDTokenSignedResponseAlg},
	}
	for _, f := range single {
		if err := checkString(f.name, f.value); err != nil {
			return err
		}
	}
	lists := []struct {
		name   string
		values []string
	}{
		{"redirect_uris", m.RedirectURIs}, {"grant_types", m.GrantTypes}, {"response_types", m.ResponseTypes}, {"contacts", m.Contacts},
		{"post_logout_redirect_uris", m.PostLogoutRedirectURIs},
	}
	for _, l := range lists {
		if len(l.values) > maxList {
			return metaErr(l.name, "more than %d entries", maxList)
		}
		for _, v := range l.values {
			if v == "" {
				return metaErr(l.name, "empty entry")
			}
			if err := checkString(l.name, v); err != nil {
				if l.name == "redirect_uris" {
					err.Code = oauth.CodeInvalidRedirectURI
				}
				return err
			}
		}
	}
	return nil
}

func checkString(name, v string) *oauth.Error {
	if len(v) > maxString {
		return metaErr(name, "longer than %d bytes", maxString)
	}
	if !utf8.ValidString(v) {
		return metaErr(name, "not valid UTF-8")
	}
	for _, r := range v {
		if unicode.IsControl(r) {
			return metaErr(name, "contains a control character")
		}
		// Bidi overrides and isolates, zero-width characters and other
		// format characters (category Cf), and line and paragraph
		// separators, make a name on the consent page read differently
		// from what it is ("Google" + U+202E …): a spoofing tool, never a
		// legitimate part of a name or URI (issue 11, Unicode TR #36 §2.4).
		if unicode.Is(unicode.Cf, r) || unicode.In(r, unicode.Zl, unicode.Zp) {
			return metaErr(name, "contains an invisible formatting character (U+%04X)", r)
		}
	}
	return nil
}

// dangerousSchemes are never accepted as redirect targets, not even from
// an administrator: schemes that run script or read local content,
// well-known schemes that belong to other applications (mail, telephony,
// file and network shares, web sockets), which a private-use scheme
// (RFC 8252 §7.1) must not be, and operating-system protocol handlers that
// an attacker-registered redirect would open with attacker-chosen
// arguments (RFC 9700 §4.11.2: `ms-officecmd:`, `search-ms:`, `intent:`).
var dangerousSchemes = []string{
	"javascript", "data", "file", "vbscript", "blob", "about", "filesystem", "view-source",
	"mailto", "tel", "sms", "ftp", "ws", "wss",
	"search-ms", "search", "shell", "intent", "android-app", "chrome", "jar", "mhtml", "mk", "its",
	"hcp", "help", "res", "smb", "nfs", "afp", "webdav", "ldap", "ldaps", "telnet", "ssh", "sftp",
	"gopher", "news", "nntp", "callto", "sip", "sips", "facetime", "facetime-audio", "steam",
	"resource", "wyciwyg", "jnlp", "jnlps", "vnc", "rdp", "itms-services", "snews", "irc", "ircs",
}

// dangerousSchemePrefixes are families of OS and browser handlers refused
// like dangerousSchemes: every Windows ms-* handler (ms-officecmd,
// ms-msdt, ms-settings, …), Safari's and Apple's x-* launchers, browser
// internals and extensions, and the itms-* store installers.
var dangerousSchemePrefixes = []string{
	"ms-", "x-safari-", "x-apple-", "microsoft-", "chrome-", "moz-", "edge-", "opera-", "itms",
}

// DeniedScheme reports whether scheme is one that no client, whoever
// created it, may use as a redirect URI.
func DeniedScheme(scheme string) bool {
	scheme = strings.ToLower(scheme)
	if slices.Contains(dangerousSchemes, scheme) {
		return true
	}
	for _, p := range dangerousSchemePrefixes {
		if strings.HasPrefix(scheme, p) {
			return true
		}
	}
	return false
}

// DefaultRedirectSchemes are the single-word private-use schemes a
// self-registered client may use without the reverse-DNS form RFC 8252 §7.1
// asks for: the IDEs and agents that register them today.
var DefaultRedirectSchemes = []string{"jetbrains", "vscode", "vscode-insiders", "cursor", "windsurf", "zed"}

// CheckRegisteredRedirectURI applies what dynamic registration adds to
// ValidateRedirectURI for a client nobody vouches for: a private-use scheme
// must be a reverse domain name (RFC 8252 §7.1, "com.example.app") or one
// of the operator's single-word schemes (allowed). https and loopback http
// are checked by ValidateRedirectURI.
func CheckRegisteredRedirectURI(uri string, allowed []string) error {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme == "" {
		return redirectErr("%q is not an absolute URI", uri)
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme == "https" || scheme == "http" || ReverseDNSScheme(scheme) || slices.Contains(allowed, scheme) {
		return nil
	}
	return redirectErr("%q: a private-use scheme must be a reverse domain name such as com.example.app (RFC 8252 §7.1) or one this server allows (%s)",
		uri, strings.Join(allowed, ", "))
}

// ReverseDNSScheme reports whether scheme has the reverse domain name form
// of RFC 8252 §7.1: two or more dot-separated labels of letters, digits and
// hyphens, the first (a top-level domain) starting with a letter.
func ReverseDNSScheme(scheme string) bool {
	labels := strings.Split(scheme, ".")
	if len(labels) < 2 {
		return false
	}
	for i, l := range labels {
		if l == "" || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for j := 0; j < len(l); j++ {
			c := l[j]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
		if i == 0 && !(l[0] >= 'a' && l[0] <= 'z' || l[0] >= 'A' && l[0] <= 'Z') {
			return false
		}
	}
	return true
}

// ValidateRedirectURI checks one redirect URI for a client of appType (web
// or native). Every client may use https and http on a loopback address
// (RFC 8252 §7.3); only native clients may use private-use schemes (RFC 8252
// §7.1). Fragments, user information, whitespace and script-capable schemes
// are rejected.
func ValidateRedirectURI(uri, appType string) error {
	if strings.ContainsAny(uri, " \t\r\n\\") {
		return redirectErr("%q contains whitespace or a backslash", uri)
	}
	u, err := url.Parse(uri)
	if err != nil || u.Scheme == "" {
		return redirectErr("%q is not an absolute URI", uri)
	}
	scheme := strings.ToLower(u.Scheme)
	if DeniedScheme(scheme) {
		return redirectErr("scheme %q is not allowed", scheme)
	}
	if u.Fragment != "" || strings.Contains(uri, "#") {
		return redirectErr("%q has a fragment", uri)
	}
	if u.User != nil {
		return redirectErr("%q carries user information", uri)
	}
	switch scheme {
	case "https":
		if u.Host == "" {
			return redirectErr("%q has no host", uri)
		}
		return nil
	case "http":
		if !IsLoopback(u.Hostname()) {
			return redirectErr("%q: http is only allowed for a loopback address (127.0.0.1, [::1], localhost); use https", uri)
		}
		return nil
	}
	if appType != AppNative {
		return redirectErr("%q: private-use schemes need application_type native", uri)
	}
	// RFC 8252 §7.1: a private-use scheme should be a reverse domain name.
	// An administrator may vouch for any other scheme that is not denied;
	// dynamic registration adds CheckRegisteredRedirectURI.
	if u.Opaque == "" && u.Host == "" && u.Path == "" {
		return redirectErr("%q has nothing after the scheme", uri)
	}
	return nil
}

// InferApplicationType is the application_type of a client that gave none:
// native when every redirect URI is on this computer (loopback http) or a
// private-use scheme (RFC 8252 §7.1, §7.3), web otherwise.
func InferApplicationType(redirectURIs []string) string {
	if len(redirectURIs) == 0 {
		return AppWeb
	}
	for _, r := range redirectURIs {
		u, err := url.Parse(r)
		if err != nil {
			return AppWeb
		}
		switch strings.ToLower(u.Scheme) {
		case "https":
			return AppWeb
		case "http":
			if !IsLoopback(u.Hostname()) {
				return AppWeb
			}
		}
	}
	return AppNative
}

// IsLoopback reports whether host (without port or brackets) names the
// loopback interface.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// MatchRedirectURI finds requested among the registered redirect URIs. The
// comparison is an exact string match, except for http loopback redirects
// (RFC 8252 §7.3): any port matches, including a registered URI without a
// port, and localhost, 127.0.0.1 and [::1] are the same host (Claude Code
// publishes http://localhost/callback and sends
// http://127.0.0.1:52163/callback), and an empty path is "/" (RFC 3986
// §6.2.3: VS Code publishes http://127.0.0.1:33418 and its loopback server
// sends http://127.0.0.1:PORT/). It returns the URI to redirect to.
func MatchRedirectURI(registered []string, requested string) (string, bool) {
	// A fragment, even an empty one, would swallow the response
	// parameters (RFC 6749 §3.1.2).
	if strings.Contains(requested, "#") {
		return "", false
	}
	if slices.Contains(registered, requested) {
		return requested, true
	}
	ru, err := url.Parse(requested)
	if err != nil || ru.Scheme != "http" || ru.User != nil || ru.Fragment != "" || !IsLoopback(ru.Hostname()) {
		return "", false
	}
	for _, r := range registered {
		u, err := url.Parse(r)
		if err != nil || u.Scheme != "http" {
			continue
		}
		if IsLoopback(u.Hostname()) && u.User == nil && httpPath(u) == httpPath(ru) && u.RawQuery == ru.RawQuery {
			return requested, true
		}
	}
	return "", false
}

// httpPath is u's path as http compares it: empty is "/" (RFC 3986
// §6.2.3).
func httpPath(u *url.URL) string {
	if p := u.EscapedPath(); p != "" {
		return p
	}
	return "/"
}

func webURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" && u.User == nil
}

// ValidScopeToken reports whether s is one scope-token (RFC 6749 §3.3:
// 1*( %x21 / %x23-5B / %x5D-7E )).
func ValidScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c == '"' || c == '\\' || c > 0x7e {
			return false
		}
	}
	return true
}

func dedupe(in []string) []string {
	out := in[:0:0]
	for _, v := range in {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}
