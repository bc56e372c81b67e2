package middleware

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/authzd/authz/internal/resourceid"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Config configures a Validator. Issuer and Resource are required.
type Config struct {
	// Issuer is the authorization server's issuer URL, compared exactly
	// with the token's iss claim and with the issuer in its metadata.
	Issuer string
	// Resource is this service's own URL: the audience its tokens must
	// carry (RFC 8707). The comparison normalises scheme and host case, a
	// default port and a trailing slash, and otherwise uses the full URL,
	// path included.
	Resource string

	// ClientID and ClientSecret are this service's client credentials at
	// the authorization server's introspection endpoint (RFC 7662). With
	// them, opaque tokens are accepted; without them only JWTs are.
	ClientID     string
	ClientSecret string
	// CheckRevocation asks the introspection endpoint about every JWT too,
	// so a revoked token stops working within IntrospectionCacheTTL.
	// It needs ClientID and ClientSecret.
	CheckRevocation bool
	// IntrospectionCacheTTL bounds how long an introspection answer is
	// reused (never past the token's exp). Default 30s.
	IntrospectionCacheTTL time.Duration

	// JWKSURL and IntrospectionURL skip discovery when set. Otherwise both
	// come from the issuer's RFC 8414 metadata, fetched on first use.
	JWKSURL          string
	IntrospectionURL string

	// Algorithms allowed for JWT signatures. Default ES256, ES384, EdDSA,
	// RS256, PS256. "none" and HMAC algorithms are refused: a resource
	// server never shares a secret with the issuer.
	Algorithms []string
	// Leeway tolerated on exp, nbf and iat. Default 30s.
	Leeway time.Duration

	// RefreshInterval is the age after which the key set is refreshed in
	// the background while requests keep using the current one. Default 5m.
	RefreshInterval time.Duration
	// MinRefreshInterval is the least time between two fetches of the key
	// set, so tokens with made-up key IDs cannot make this service hammer
	// the authorization server. Default 5s.
	MinRefreshInterval time.Duration

	// CacheSize bounds the verified-token cache and the introspection
	// cache (entries each). Default 10000; negative disables caching.
	CacheSize int

	// ScopesSupported and ResourceName go into the protected resource
	// metadata (RFC 9728 §2). offline_access is never listed: it is about
	// the grant (a refresh token), not a permission of this resource.
	ScopesSupported []string
	ResourceName    string

	// ScopeImplies declares which scopes this service treats as including
	// others, e.g. {"write": {"read"}}: Require("read") then accepts a token
	// that carries write. It is followed transitively.
	ScopeImplies map[string][]string

	// HTTPClient talks to the authorization server. Default: a client with
	// a 10s timeout.
	HTTPClient *http.Client
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives fetch failures. Default slog.Default().
	Logger *slog.Logger
}

// DefaultAlgorithms are the signature algorithms accepted by default.
var DefaultAlgorithms = []string{"ES256", "ES384", "EdDSA", "RS256", "PS256"}

// asymmetric is every algorithm that may be allowed.
var asymmetric = []jose.SignatureAlgorithm{
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
}

// WellKnownPath is where RFC 9728 puts protected resource metadata.
const WellKnownPath = resourceid.ProtectedResourceSuffix

// Validator validates bearer tokens for one resource. It is safe for
// concurrent use.
type Validator struct {
	cfg          Config
	algs         []jose.SignatureAlgorithm
	resource     string // normalised
	metadataURL  string
	metaPaths    []string
	metadataJSON []byte

	disc   discovery
	keys   keyStore
	tokens cache[string]
	intro  cache[[32]byte]
}

// New checks cfg and returns a Validator. It does no network I/O: the
// authorization server's metadata and keys are fetched on first use, so a
// service can start while the authorization server is still coming up.
func New(cfg Config) (*Validator, error) {
	iss, err := url.Parse(cfg.Issuer)
	if cfg.Issuer == "" || err != nil || (iss.Scheme != "https" && iss.Scheme != "http") || iss.Host == "" || iss.RawQuery != "" || iss.Fragment != "" {
		return nil, fmt.Errorf("middleware: Issuer %q must be an absolute http(s) URL without query or fragment", cfg.Issuer)
	}
	res, err := resourceid.Canonical(cfg.Resource)
	if err != nil {
		return nil, fmt.Errorf("middleware: Resource %q: %w", cfg.Resource, err)
	}
	if (cfg.ClientID == "") != (cfg.ClientSecret == "") {
		return nil, errors.New("middleware: ClientID and ClientSecret go together")
	}
	if cfg.CheckRevocation && cfg.ClientID == "" {
		return nil, errors.New("middleware: CheckRevocation needs ClientID and ClientSecret for introspection")
	}
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = DefaultAlgorithms
	}
	var algs []jose.SignatureAlgorithm
	for _, a := range cfg.Algorithms {
		alg := jose.SignatureAlgorithm(a)
		if !slices.Contains(asymmetric, alg) {
			return nil, fmt.Errorf("middleware: algorithm %q is not allowed (asymmetric signatures only; never none or HMAC)", a)
		}
		algs = append(algs, alg)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&cfg.IntrospectionCacheTTL, 30*time.Second)
	def(&cfg.Leeway, 30*time.Second)
	def(&cfg.RefreshInterval, 5*time.Minute)
	def(&cfg.MinRefreshInterval, 5*time.Second)
	if cfg.CacheSize == 0 {
		cfg.CacheSize = 10000
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}

	v := &Validator{cfg: cfg, algs: algs, resource: res}
	v.disc.v = v
	v.keys.v = v
	v.tokens.init(cfg.CacheSize)
	v.intro.init(cfg.CacheSize)

	// RFC 9728 §3.1: the metadata lives at the well-known path inserted
	// between the host and the resource's path.
	inserted, _ := resourceid.WellKnownPath(res, WellKnownPath)
	v.metaPaths = []string{WellKnownPath}
	if inserted != WellKnownPath {
		v.metaPaths = append([]string{inserted}, v.metaPaths...)
	}
	v.metadataURL, _ = resourceid.WellKnownURL(res, WellKnownPath)
	doc := map[string]any{
		"resource":                 cfg.Resource,
		"authorization_servers":    []string{cfg.Issuer},
		"bearer_methods_supported": []string{"header"},
	}
	if ss := withoutOfflineAccess(cfg.ScopesSupported); len(ss) > 0 {
		doc["scopes_supported"] = ss
	}
	if cfg.ResourceName != "" {
		doc["resource_name"] = cfg.ResourceName
	}
	v.metadataJSON, _ = json.Marshal(doc)
	return v, nil
}

// offlineAccess (OpenID Connect Core §11) asks the authorization server for
// a refresh token. A resource never needs it, so it never appears in a
// challenge or in the metadata: a client that copied it from there would
// ask for a refresh token it may not be allowed.
const offlineAccess = "offline_access"

func withoutOfflineAccess(scopes []string) []string {
	return slices.DeleteFunc(slices.Clone(scopes), func(s string) bool { return s == offlineAccess })
}
