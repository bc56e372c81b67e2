package provider

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/authzd/authz/internal/resourceid"

	"github.com/authzd/authz/provider/dcr"
	"github.com/authzd/authz/provider/store"
)

// Registration policies for POST /oauth2/register (RFC 7591 §3).
const (
	RegistrationOpen  = "open"  // anyone may register (what MCP clients need)
	RegistrationToken = "token" // an initial access token is required
	RegistrationOff   = "off"   // the endpoint answers 403 and is not advertised
)

// Proxy header families for Options.ProxyHeaders: which one header a trusted
// proxy names the client in. Exactly one is read, so a proxy that sets one
// family and passes the client's own copy of the other through cannot be
// fooled by it (Keycloak's proxy-headers=forwarded|xforwarded).
const (
	ProxyHeadersXForwarded = "xforwarded" // X-Forwarded-For only
	ProxyHeadersForwarded  = "forwarded"  // RFC 7239 Forwarded (for=) only
)

// Options configures a Server. Zero durations take the documented defaults.
type Options struct {
	// Issuer is the server's identifier (RFC 8414 §2): an absolute http(s)
	// URL without query or fragment. Every endpoint lives under it.
	Issuer string
	Store  store.Store
	// Resources are the protected resources (RFC 8707) tokens may be issued
	// for. Default: the issuer URL alone. The first is used when a request
	// names none, so a token never has an empty audience.
	Resources []string
	// Scopes the server offers. offline_access is always added.
	Scopes []string
	// ScopeDescriptions are the sentences the consent page shows for
	// scopes ("read" → "Read your files"). openid and offline_access have
	// built-in ones; a scope without one is shown by its name.
	ScopeDescriptions map[string]string
	// EncryptionKey (32 bytes) encrypts signing keys at rest. When nil a
	// random key is made, so keys do not survive a restart (memory store only;
	// cmd/authz requires a key with Postgres).
	EncryptionKey []byte
	// PreviousEncryptionKeys (32 bytes each) are keys EncryptionKey
	// replaced: they only open what they sealed or made before (signing
	// keys, CSRF tokens, upstream sign-in cookies, refresh-token
	// successors within the grace window); everything new is sealed and
	// signed with EncryptionKey. See README "Rotating the encryption key".
	PreviousEncryptionKeys [][]byte
	// SigningAlgorithm is "ES256" (default) or "EdDSA".
	SigningAlgorithm string

	AccessTokenTTL time.Duration // default 15m
	AuthCodeTTL    time.Duration // default 60s, at most 10m
	RefreshIdleTTL time.Duration // default 30 days
	GrantTTL       time.Duration // absolute grant lifetime, default 90 days
	// RefreshGrace is how long after its first rotation a refresh token
	// may still be exchanged, for the same successor (concurrent refreshes,
	// a lost response). Zero means no grace window: every second
	// presentation is reuse. Unlike the other durations zero is not "the
	// default": callers set DefaultRefreshGrace explicitly, as cmd/authz
	// does. Otherwise it must be at least RetryAfter (see
	// CheckRefreshGrace).
	RefreshGrace time.Duration
	SessionTTL   time.Duration // login session, default 12h
	// KeyRefreshInterval is how often the signing keys are re-read from the
	// store, so `authz keys rotate` takes effect without a restart. A rotated
	// key signs only KeyActivationDelay (twice this) after the rotation, so
	// every replica must use the same value. Default 30s.
	KeyRefreshInterval time.Duration
	// JanitorInterval is how often RunJanitor runs the periodic jobs
	// (removing expired records, old signing keys). Default 5m.
	JanitorInterval time.Duration

	// StoreTimeout bounds every store call (default 5s): when the database
	// hangs, a request answers 503 temporarily_unavailable with Retry-After
	// after this long instead of waiting as long as it hangs. New wraps Store
	// with store.WithDeadline, so Options() returns the bounded store.
	StoreTimeout time.Duration

	// RegistrationPolicy: RegistrationOpen (default), RegistrationToken or RegistrationOff.
	RegistrationPolicy string
	// AdminScopes are offered scopes only an administrator's clients (or
	// an initial access token's policy) may be allowed. Default: none.
	AdminScopes []string
	// RegistrationScopes are the scopes a self-registered client may ask
	// for. nil: every offered scope except AdminScopes; empty: none.
	RegistrationScopes []string
	// RedirectSchemes are the single-word private-use redirect schemes a
	// self-registered client may use besides reverse-DNS ones (RFC 8252
	// §7.1). nil: dcr.DefaultRedirectSchemes; empty: none.
	RedirectSchemes []string
	// A self-registered client that never completed an authorization is
	// deleted RegistrationUnusedTTL after registering (default 24h); one
	// without a live grant, RegistrationIdleTTL after its last use
	// (default 90 days), by the janitor (RunJanitor).
	RegistrationUnusedTTL time.Duration
	RegistrationIdleTTL   time.Duration

	// Failed logins allowed per (account, client IP) and per client IP in
	// LoginWindow before further attempts from there get 429. Counted in
	// the store, so replicas share them. Defaults 5 and 20 in 15 minutes.
	LoginFailuresPerAccount int
	LoginFailuresPerIP      int
	LoginWindow             time.Duration

	// RegistrationsPerIP dynamic registrations are allowed per client IP in
	// RegistrationWindow; more get 429. Defaults 10 per hour.
	RegistrationsPerIP int
	RegistrationWindow time.Duration

	// TrustedProxies are the peers whose forwarding header (ProxyHeaders)
	// names the client IP that limits count, and whose X-Request-ID is kept
	// (README, "Operating authz"). Default none: the peer address, and a
	// new request id for every request.
	TrustedProxies []netip.Prefix
	// ProxyHeaders is the one header family a trusted proxy's client
	// address is read from: ProxyHeadersXForwarded (default, what most
	// load balancers set) or ProxyHeadersForwarded. The other is ignored
	// even when present: the proxy that sets one usually passes a client's
	// copy of the other through untouched.
	ProxyHeaders string

	// HTTPClient fetches what clients point to (a private_key_jwt client's
	// jwks_uri, a client ID metadata document). Redirects are never
	// followed, whatever the client says. Default: TLS verified against
	// FetchRootCAs, short timeouts, and only public addresses (the IANA
	// special-purpose registries are refused on the address dialled), plus
	// loopback when the issuer's own host is loopback (local development).
	// A client given here bypasses that address check.
	HTTPClient *http.Client
	// FetchRootCAs are the roots the default HTTPClient trusts; nil means
	// the system roots (SSL_CERT_FILE and SSL_CERT_DIR are honoured).
	FetchRootCAs *x509.CertPool

	// DisableClientMetadataDocuments turns off Client ID Metadata Documents
	// (an https client_id naming the client's metadata document,
	// draft-ietf-oauth-client-id-metadata-document). On by default: MCP
	// clients (Claude, ChatGPT, VS Code, opencode) identify themselves so.
	DisableClientMetadataDocuments bool

	// DisableAccessLog turns off the per-request INFO line.
	DisableAccessLog bool
	// AuditRetention is how long audit events are kept; the janitor deletes
	// older ones. Default 90 days.
	AuditRetention time.Duration
	// DisableOIDC switches the OpenID Connect layer off (AUTHZ_OIDC=off):
	// no ID tokens, UserInfo, end-session endpoint or OpenID discovery, and
	// the openid scope is dropped from requests rather than refused.
	DisableOIDC bool
	// DisableLocalLogin removes the password form (AUTHZ_LOCAL_LOGIN=off):
	// users sign in through Upstreams only.
	DisableLocalLogin bool
	// Upstreams are the identity providers users may sign in through.
	Upstreams []Upstream
	// UpstreamHTTPClient talks to the upstream providers (operator-chosen
	// URLs, so private addresses are allowed). Default: 10s timeout.
	UpstreamHTTPClient *http.Client

	// Now and Rand are inputs so tests control time and randomness.
	Now    func() time.Time
	Rand   io.Reader
	Logger *slog.Logger
}

// The defaults, exported so the CLI shows and documents the values the
// server uses rather than copies of them (house rule 13: each is chosen for
// a public server with open registration). A zero Options field takes its
// default, except RefreshGrace, where zero means no grace window.
const (
	DefaultSigningAlgorithm        = "ES256"
	DefaultAccessTokenTTL          = 15 * time.Minute
	DefaultAuthCodeTTL             = 60 * time.Second
	DefaultRefreshIdleTTL          = 30 * 24 * time.Hour
	DefaultGrantTTL                = 90 * 24 * time.Hour
	DefaultRefreshGrace            = 30 * time.Second
	DefaultSessionTTL              = 12 * time.Hour
	DefaultKeyRefreshInterval      = 30 * time.Second
	DefaultJanitorInterval         = 5 * time.Minute
	DefaultStoreTimeout            = 5 * time.Second
	DefaultRegistrationPolicy      = RegistrationOpen
	DefaultProxyHeaders            = ProxyHeadersXForwarded
	DefaultLoginFailuresPerAccount = 5
	DefaultLoginFailuresPerIP      = 20
	DefaultLoginWindow             = 15 * time.Minute
	DefaultRegistrationsPerIP      = 10
	DefaultRegistrationWindow      = time.Hour
	DefaultRegistrationUnusedTTL   = 24 * time.Hour
	DefaultRegistrationIdleTTL     = 90 * 24 * time.Hour
	DefaultAuditRetention          = 90 * 24 * time.Hour
)

// RetryAfter is what a client is told to wait (Retry-After) after a
// transient failure such as a database outage.
const RetryAfter = 5 * time.Second

// CheckRefreshGrace accepts 0 (no grace window) or a window of at least
// RetryAfter. A shorter window would punish the client that does what the
// server asked: a refresh whose commit the server could not confirm is
// answered 503 with Retry-After, and its retry presents the same token,
// which must then still be inside the window to get the same successor
// rather than be taken for reuse and revoke the grant (RFC 9700 §4.14.2).
func CheckRefreshGrace(d time.Duration) error {
	switch {
	case d < 0:
		return fmt.Errorf("refresh grace %s is negative (0 disables the grace window)", d)
	case d > 0 && d < RetryAfter:
		return fmt.Errorf("refresh grace %s is shorter than the %s Retry-After sent on a transient failure; use 0 (off) or at least %s", d, RetryAfter, RetryAfter)
	}
	return nil
}

// MaxAuthCodeTTL bounds AuthCodeTTL (RFC 6749 §4.1.2: "a maximum
// authorization code lifetime of 10 minutes is RECOMMENDED").
const MaxAuthCodeTTL = 10 * time.Minute

// OptionError is an invalid Options value. Option is the field's name, so
// a caller with its own names for the settings (the CLI's AUTHZ_*
// variables) can say which one to fix.
type OptionError struct {
	Option string
	Err    error
}

func (e *OptionError) Error() string { return "provider: Options." + e.Option + ": " + e.Err.Error() }
func (e *OptionError) Unwrap() error { return e.Err }

func optErr(option, format string, args ...any) *OptionError {
	return &OptionError{Option: option, Err: fmt.Errorf(format, args...)}
}

// ResolveOptions validates o as New does, without a store or keys, and
// returns it with the defaults filled in: the one validation of the
// settings, which the CLI runs before opening anything. Errors are
// *OptionError.
func ResolveOptions(o Options) (Options, error) {
	o.Resources = slices.Clone(o.Resources)
	if err := o.setDefaults(); err != nil {
		return Options{}, err
	}
	return o, nil
}

// orDefault sets a zero *v to def and refuses a negative one: a lifetime,
// interval or limit is positive.
func orDefault[T int | time.Duration](name string, v *T, def T) error {
	if *v < 0 {
		return optErr(name, "%v is negative; it must be positive", *v)
	}
	if *v == 0 {
		*v = def
	}
	return nil
}

// setDefaults fills the defaults of zero fields and validates the rest.
// Errors are *OptionError.
func (o *Options) setDefaults() error {
	iss, err := ParseIssuer(o.Issuer)
	if err != nil {
		return &OptionError{Option: "Issuer", Err: err}
	}
	if len(o.PreviousEncryptionKeys) > 0 && o.EncryptionKey == nil {
		return optErr("PreviousEncryptionKeys", "previous encryption keys need a current EncryptionKey")
	}
	for i, k := range o.PreviousEncryptionKeys {
		if len(k) != 32 {
			return optErr("PreviousEncryptionKeys", "key %d is %d bytes, not 32", i+1, len(k))
		}
		if bytes.Equal(k, o.EncryptionKey) {
			return optErr("PreviousEncryptionKeys", "key %d is the current encryption key", i+1)
		}
	}
	o.Issuer = iss
	if len(o.Resources) == 0 {
		o.Resources = []string{o.Issuer}
	}
	for i, r := range o.Resources {
		n, err := resourceid.Canonical(r)
		if err != nil {
			return optErr("Resources", "resource %q: %w", r, err)
		}
		o.Resources[i] = n
	}
	for _, s := range o.Scopes {
		if !dcr.ValidScopeToken(s) {
			return optErr("Scopes", "invalid scope %q (RFC 6749 §3.3)", s)
		}
	}
	// offline_access is always offered: clients ask for it by habit, and
	// refusing it breaks them (see scope.go).
	if !slices.Contains(o.Scopes, ScopeOfflineAccess) {
		o.Scopes = append(slices.Clone(o.Scopes), ScopeOfflineAccess)
	}
	for _, s := range o.AdminScopes {
		if !slices.Contains(o.Scopes, s) {
			return optErr("AdminScopes", "admin scope %q is not an offered scope", s)
		}
	}
	if o.RegistrationScopes == nil {
		// Never nil: nil would read as "no limit" (Server.allowedScopes).
		o.RegistrationScopes = append([]string{}, without(o.Scopes, o.AdminScopes)...)
	}
	for _, s := range o.RegistrationScopes {
		if !slices.Contains(o.Scopes, s) {
			return optErr("RegistrationScopes", "registration scope %q is not an offered scope", s)
		}
		if slices.Contains(o.AdminScopes, s) {
			return optErr("RegistrationScopes", "scope %q cannot be both admin-only and open to registration", s)
		}
	}
	if o.RedirectSchemes == nil {
		o.RedirectSchemes = slices.Clone(dcr.DefaultRedirectSchemes)
	} else {
		o.RedirectSchemes = slices.Clone(o.RedirectSchemes)
	}
	for i, s := range o.RedirectSchemes {
		s = strings.ToLower(s)
		o.RedirectSchemes[i] = s
		if !validScheme(s) || s == "http" || s == "https" {
			return optErr("RedirectSchemes", "redirect scheme %q is not a private-use URI scheme", s)
		}
		if dcr.DeniedScheme(s) {
			return optErr("RedirectSchemes", "redirect scheme %q belongs to an operating-system handler and is never allowed", s)
		}
	}
	switch o.SigningAlgorithm {
	case "":
		o.SigningAlgorithm = DefaultSigningAlgorithm
	case "ES256", "EdDSA":
	default:
		return optErr("SigningAlgorithm", "signing algorithm %q: want ES256 or EdDSA", o.SigningAlgorithm)
	}
	for _, err := range []error{
		orDefault("AccessTokenTTL", &o.AccessTokenTTL, DefaultAccessTokenTTL),
		orDefault("AuthCodeTTL", &o.AuthCodeTTL, DefaultAuthCodeTTL),
		orDefault("RefreshIdleTTL", &o.RefreshIdleTTL, DefaultRefreshIdleTTL),
		orDefault("GrantTTL", &o.GrantTTL, DefaultGrantTTL),
		orDefault("SessionTTL", &o.SessionTTL, DefaultSessionTTL),
		orDefault("KeyRefreshInterval", &o.KeyRefreshInterval, DefaultKeyRefreshInterval),
		orDefault("JanitorInterval", &o.JanitorInterval, DefaultJanitorInterval),
		orDefault("StoreTimeout", &o.StoreTimeout, DefaultStoreTimeout),
		orDefault("LoginWindow", &o.LoginWindow, DefaultLoginWindow),
		orDefault("RegistrationWindow", &o.RegistrationWindow, DefaultRegistrationWindow),
		orDefault("RegistrationUnusedTTL", &o.RegistrationUnusedTTL, DefaultRegistrationUnusedTTL),
		orDefault("RegistrationIdleTTL", &o.RegistrationIdleTTL, DefaultRegistrationIdleTTL),
		orDefault("AuditRetention", &o.AuditRetention, DefaultAuditRetention),
		orDefault("LoginFailuresPerAccount", &o.LoginFailuresPerAccount, DefaultLoginFailuresPerAccount),
		orDefault("LoginFailuresPerIP", &o.LoginFailuresPerIP, DefaultLoginFailuresPerIP),
		orDefault("RegistrationsPerIP", &o.RegistrationsPerIP, DefaultRegistrationsPerIP),
	} {
		if err != nil {
			return err
		}
	}
	// Zero is no grace window (not "the default": callers set
	// DefaultRefreshGrace explicitly); otherwise at least RetryAfter.
	if err := CheckRefreshGrace(o.RefreshGrace); err != nil {
		return &OptionError{Option: "RefreshGrace", Err: err}
	}
	if o.AuthCodeTTL > MaxAuthCodeTTL {
		return optErr("AuthCodeTTL", "authorization code lifetime %s exceeds %s (RFC 6749 §4.1.2)", o.AuthCodeTTL, MaxAuthCodeTTL)
	}
	switch o.RegistrationPolicy {
	case "":
		o.RegistrationPolicy = DefaultRegistrationPolicy
	case RegistrationOpen, RegistrationToken, RegistrationOff:
	default:
		return optErr("RegistrationPolicy", "registration policy %q: want %s, %s or %s", o.RegistrationPolicy, RegistrationOpen, RegistrationToken, RegistrationOff)
	}
	switch o.ProxyHeaders {
	case "":
		o.ProxyHeaders = DefaultProxyHeaders
	case ProxyHeadersXForwarded, ProxyHeadersForwarded:
	default:
		return optErr("ProxyHeaders", "proxy headers %q: want %s (X-Forwarded-For) or %s (RFC 7239 Forwarded)", o.ProxyHeaders, ProxyHeadersXForwarded, ProxyHeadersForwarded)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.UpstreamHTTPClient == nil {
		// Its own connection pool, not http.DefaultTransport's, which
		// anything in the process may reset (CloseIdleConnections).
		o.UpstreamHTTPClient = &http.Client{Timeout: 10 * time.Second, Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	if err := CheckUpstreams(o.Upstreams); err != nil {
		return &OptionError{Option: "Upstreams", Err: err}
	}
	if o.DisableLocalLogin && len(o.Upstreams) == 0 {
		return optErr("DisableLocalLogin", "local login is off and no upstream provider is configured: nobody could sign in")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}

// validScheme is RFC 3986 §3.1: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
func validScheme(s string) bool {
	if s == "" || !(s[0] >= 'a' && s[0] <= 'z') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// ParseIssuer checks that s is usable as an issuer identifier (RFC 8414 §2:
// https, or http for local development; no query or fragment) and returns it
// without a trailing slash.
func ParseIssuer(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || !u.IsAbs() || u.Host == "" {
		return "", fmt.Errorf("issuer %q is not an absolute URL (example: https://auth.example.com)", s)
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return "", fmt.Errorf("issuer %q must use https (or http for local development)", s)
	}
	if u.RawQuery != "" || u.Fragment != "" || strings.Contains(s, "#") || u.User != nil {
		return "", fmt.Errorf("issuer %q must not have a query, fragment or user info", s)
	}
	return strings.TrimSuffix(u.String(), "/"), nil
}
