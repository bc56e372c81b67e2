package provider

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/authzd/authz/provider/dcr"
	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/store"
	"github.com/authzd/authz/wellknown"
)

// Endpoint paths, relative to the issuer's path. Routes and discovery
// metadata are both built from these, so what is advertised is what is served.
const (
	PathAuthorize  = "/oauth2/authorize"
	PathToken      = "/oauth2/token"
	PathJWKS       = "/oauth2/jwks"
	PathRegister   = "/oauth2/register"
	PathRevoke     = "/oauth2/revoke"
	PathIntrospect = "/oauth2/introspect"
	PathLogin      = "/login"
	PathLogout     = "/logout"
	PathApps       = "/account/apps"
	PathHealthz    = "/healthz"
	PathReadyz     = "/readyz"
	// OpenID Connect.
	PathUserInfo   = "/oauth2/userinfo"
	PathEndSession = "/oauth2/end_session"
	// PathUpstream + name starts sign-in through an upstream provider;
	// + name + "/callback" is where it returns.
	PathUpstream = "/login/upstream/"
)

// maxBodyBytes bounds every request body; OAuth requests are small.
const maxBodyBytes = 64 << 10

// Server is the authorization server.
type Server struct {
	opts       Options
	store      store.Store // measured: timedStore around Options.Store
	metrics    *metrics
	logos      logoCache
	log        *slog.Logger
	keys       *keyManager
	pages      *pages
	limiter    *loginLimiter
	clientKeys clientKeyCache
	fetch      *fetcher
	// revalidate refreshes stale key sets and document clients in the
	// background (revalidate.go).
	revalidate *revalidator
	clients    *clientCache
	// Keys derived from the encryption key, one list per purpose: the
	// current key's first, which makes everything new, then each previous
	// key's (Options.PreviousEncryptionKeys), which only open or verify
	// what they made. successorKeys derive refresh-token successors
	// (successorSecret; a grace replay across a key change may need a
	// previous one, token.go); csrfKeys bind CSRF tokens to the browser's
	// session (login.go); flowKeys seal the upstream sign-in cookie
	// (upstream.go).
	successorKeys, csrfKeys, flowKeys [][]byte
	// successorMACs keeps HMACs keyed with successorKeys[0] for reuse.
	successorMACs sync.Pool
	issuerPath    string // the issuer URL's path, "" for a bare host
	secureCookie  bool
	// crossOrigin refuses cross-origin browser POSTs to the HTML forms,
	// in addition to SameSite cookies and the CSRF token.
	crossOrigin *http.CrossOriginProtection
	metadata    wellknown.AuthorizationServerMetadata
	// openidMetadata is the OpenID Provider Metadata (served only when the
	// OpenID Connect layer is on); metadata is its RFC 8414 part.
	openidMetadata wellknown.OpenIDProviderMetadata
	upstreams      []*upstream
}

// New validates opts, loads (or creates) the signing keys and returns a Server.
// ctx is also the server's lifetime: background refreshes of stale client
// documents and key sets (revalidate.go) stop when it ends.
func New(ctx context.Context, opts Options) (*Server, error) {
	if opts.Store == nil {
		return nil, errors.New("provider: Options.Store is required")
	}
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	opts.Store = store.WithDeadline(opts.Store, opts.StoreTimeout)
	u, _ := url.Parse(opts.Issuer)
	s := &Server{
		opts:         opts,
		log:          slog.New(requestIDHandler{opts.Logger.Handler()}),
		issuerPath:   strings.TrimSuffix(u.Path, "/"),
		secureCookie: u.Scheme == "https",
		limiter: &loginLimiter{st: opts.Store, log: opts.Logger, perAccount: opts.LoginFailuresPerAccount,
			perIP: opts.LoginFailuresPerIP, window: opts.LoginWindow},
		crossOrigin: http.NewCrossOriginProtection(),
	}
	// Behind a proxy that rewrites Host, the issuer's own origin is still
	// same-origin for browsers that send Origin but not Sec-Fetch-Site.
	if err := s.crossOrigin.AddTrustedOrigin(u.Scheme + "://" + u.Host); err != nil {
		return nil, err
	}
	fetchClient := opts.HTTPClient
	if fetchClient == nil {
		fetchClient = newFetchClient(opts.FetchRootCAs, addressPolicy{allowLoopback: dcr.IsLoopback(u.Hostname())})
	}
	s.fetch = newFetcher(fetchClient, opts.Now)
	s.revalidate = newRevalidator(ctx, s.log.Warn, func(id string) { s.clients.forget(id) })
	s.metrics = newMetrics(s.signingKeyAges)
	s.store = timedStore{Store: opts.Store, m: s.metrics}
	var err error
	if s.pages, err = newPages(); err != nil {
		return nil, err
	}
	if s.keys, err = newKeyManager(ctx, opts); err != nil {
		return nil, err
	}
	// Each under its own subkey; random per process with no configured
	// key (memory store), as the key manager's is.
	s.csrfKeys = s.keys.derive(labelCSRF)
	s.successorKeys = s.keys.derive(labelSuccessor)
	s.flowKeys = s.keys.derive(labelUpstream)
	s.successorMACs.New = func() any { return hmac.New(sha256.New, s.successorKeys[0]) }
	s.clients = newClientCache(s.lookupClient, opts.Now)
	if s.upstreams, err = s.newUpstreams(); err != nil {
		return nil, err
	}
	s.openidMetadata = s.buildMetadata()
	s.metadata = s.openidMetadata.AuthorizationServerMetadata
	return s, nil
}

// Options returns the effective options (defaults applied).
func (s *Server) Options() Options { return s.opts }

// url returns the absolute URL of an endpoint path.
func (s *Server) url(path string) string { return s.opts.Issuer + path }

// jsonEndpoint adapts a handler that returns an error to the JSON error writer.
func (s *Server) jsonEndpoint(h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			s.writeJSONError(w, r, err)
		}
	})
}

// readyTimeout is /readyz's own deadline, shorter than StoreTimeout: a load
// balancer's health check must get an answer within its own timeout, and a
// store that takes longer than this to answer a ping is not ready.
const readyTimeout = time.Second

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		s.log.Warn("readiness check failed", "cause", err)
		w.Header().Set("Retry-After", retryAfterSeconds)
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("store unreachable\n"))
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

// cors lets browser-based clients call an endpoint from any origin. Only
// endpoints authenticated by request parameters (never cookies) use it.
func cors(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		if r.Method == http.MethodOptions {
			w.Header().Set("Access-Control-Allow-Methods", "POST, OPTIONS")
			w.Header().Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
			w.Header().Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func limitBody(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		}
		h.ServeHTTP(w, r)
	})
}

// recoverer turns a panic into a 500 so one bad request cannot take the
// process down; the stack is logged once.
func (s *Server) recoverer(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("panic serving request", "path", r.URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				s.writeJSONError(w, r, errors.New("panic"))
			}
		}()
		h.ServeHTTP(w, r)
	})
}

func sameOrigin(a, b string) bool {
	ua, err1 := url.Parse(a)
	ub, err2 := url.Parse(b)
	return err1 == nil && err2 == nil && strings.EqualFold(ua.Scheme, ub.Scheme) && strings.EqualFold(ua.Host, ub.Host)
}

// newID returns a random UUID from the configured randomness.
func (s *Server) newID() (string, error) {
	id, err := uuid.NewRandomFromReader(s.opts.Rand)
	if err != nil {
		return "", err
	}
	return id.String(), nil
}

// singleValued reports the first parameter among names that appears more
// than once in form (RFC 6749 §3.1: parameters must not be repeated).
func singleValued(form url.Values, names ...string) (string, bool) {
	for _, n := range names {
		if len(form[n]) > 1 {
			return n, false
		}
	}
	return "", true
}

// allowedGrant reports whether the client registered grant type gt. A
// client whose metadata names none has the registration default
// (oauth.DefaultGrantTypes, RFC 7591 §2), the same default dcr fills in.
func allowedGrant(c store.Client, gt string) bool {
	if len(c.Metadata.GrantTypes) == 0 {
		return slices.Contains(oauth.DefaultGrantTypes, gt)
	}
	return slices.Contains(c.Metadata.GrantTypes, gt)
}
