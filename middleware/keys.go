package middleware

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/authzd/authz/internal/resourceid"
)

// maxDocument bounds what we read from the authorization server.
const maxDocument = 1 << 20

// fetchTimeout bounds one discovery or key-set fetch even when the
// HTTPClient has no timeout.
const fetchTimeout = 15 * time.Second

// discovery finds the authorization server's endpoints from its RFC 8414
// metadata and remembers them once found.
type discovery struct {
	v  *Validator
	mu sync.Mutex
	md *serverMetadata
}

type serverMetadata struct {
	Issuer                string `json:"issuer"`
	JWKSURI               string `json:"jwks_uri"`
	IntrospectionEndpoint string `json:"introspection_endpoint"`
}

// metadataURLs lists where to look, the path-inserted RFC 8414 form first
// (§3.1), then the form appended to the issuer, then OpenID Connect's. The
// suffixes and the insertion are the server's own (internal/resourceid).
func metadataURLs(issuer string) []string {
	u, _ := url.Parse(issuer)
	origin := u.Scheme + "://" + u.Host
	p := strings.TrimSuffix(u.EscapedPath(), "/")
	inserted, _ := resourceid.WellKnownURL(issuer, resourceid.AuthorizationServerSuffix)
	if p == "" {
		return []string{inserted, origin + resourceid.OpenIDConfigurationSuffix}
	}
	return []string{inserted, origin + p + resourceid.AuthorizationServerSuffix, origin + p + resourceid.OpenIDConfigurationSuffix}
}

func (d *discovery) metadata(ctx context.Context) (*serverMetadata, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.md != nil {
		return d.md, nil
	}
	var errs []error
	for _, u := range metadataURLs(d.v.cfg.Issuer) {
		var md serverMetadata
		status, err := d.v.getJSON(ctx, u, &md)
		if status == http.StatusNotFound {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		// RFC 8414 §3.3: the issuer in the document must be ours exactly.
		if md.Issuer != d.v.cfg.Issuer {
			return nil, fmt.Errorf("metadata at %s names issuer %q, want %q", u, md.Issuer, d.v.cfg.Issuer)
		}
		d.md = &md
		return d.md, nil
	}
	if len(errs) == 0 {
		errs = append(errs, errors.New("no authorization server metadata found"))
	}
	return nil, errors.Join(errs...)
}

// forget drops the remembered metadata so the next fetch discovers again.
func (d *discovery) forget() {
	d.mu.Lock()
	d.md = nil
	d.mu.Unlock()
}

func (d *discovery) jwksURL(ctx context.Context) (string, error) {
	if d.v.cfg.JWKSURL != "" {
		return d.v.cfg.JWKSURL, nil
	}
	md, err := d.metadata(ctx)
	if err != nil {
		return "", err
	}
	if md.JWKSURI == "" {
		return "", errors.New("authorization server metadata has no jwks_uri")
	}
	return md.JWKSURI, nil
}

func (d *discovery) introspectionURL(ctx context.Context) (string, error) {
	if d.v.cfg.IntrospectionURL != "" {
		return d.v.cfg.IntrospectionURL, nil
	}
	md, err := d.metadata(ctx)
	if err != nil {
		return "", err
	}
	if md.IntrospectionEndpoint == "" {
		return "", errors.New("authorization server metadata has no introspection_endpoint")
	}
	return md.IntrospectionEndpoint, nil
}

// getJSON fetches a JSON document. It returns the status even on error.
func (v *Validator) getJSON(ctx context.Context, target string, out any) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := v.cfg.HTTPClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDocument))
		return resp.StatusCode, fmt.Errorf("GET %s: %s", target, resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxDocument)).Decode(out); err != nil {
		return resp.StatusCode, fmt.Errorf("GET %s: %w", target, err)
	}
	return resp.StatusCode, nil
}

// keySet is one fetched JWKS.
type keySet struct {
	keys    map[string]jose.JSONWebKey
	only    *jose.JSONWebKey // the one key, when the set has exactly one
	fetched time.Time
}

func (s *keySet) has(kid string) bool {
	_, ok := s.keys[kid]
	return ok
}

// keyStore holds the current key set and refreshes it: in the background
// once it is older than RefreshInterval, and at once when a token names an
// unknown key. Fetches are single-flight and at least MinRefreshInterval
// apart; a failed fetch keeps the last good keys.
type keyStore struct {
	v   *Validator
	cur atomic.Pointer[keySet]

	mu       sync.Mutex
	inflight *flight
	// nextAttempt (Unix ns) is the earliest next fetch: the last attempt
	// plus MinRefreshInterval. It is atomic so requests can skip the lock
	// while a stale key set cannot be refreshed yet.
	nextAttempt atomic.Int64
}

type flight struct {
	done chan struct{}
	err  error
}

var errRateLimited = errors.New("key set was fetched moments ago")

// current returns the key set, fetching it on first use and starting a
// background refresh when it is old.
func (ks *keyStore) current(ctx context.Context) (*keySet, error) {
	s := ks.cur.Load()
	if s == nil {
		return ks.refresh(ctx)
	}
	if now := ks.v.cfg.Now(); now.Sub(s.fetched) >= ks.v.cfg.RefreshInterval && now.UnixNano() >= ks.nextAttempt.Load() {
		ks.start() // background; this request uses the keys it has
	}
	return s, nil
}

// lookup finds the key a token names, refreshing the set once (rate
// limited) when the key is unknown: a rotation at the issuer is picked up
// without a restart.
func (ks *keyStore) lookup(ctx context.Context, kid string) (jose.JSONWebKey, error) {
	s, err := ks.current(ctx)
	if err != nil {
		return jose.JSONWebKey{}, err
	}
	if k, ok := s.find(kid); ok {
		return k, nil
	}
	s, err = ks.refresh(ctx)
	if errors.Is(err, errRateLimited) {
		return jose.JSONWebKey{}, invalid("the token's signing key is unknown")
	}
	if err != nil {
		if s == nil {
			return jose.JSONWebKey{}, err
		}
		// The issuer is unreachable; we know the old keys, the token is
		// signed with another one.
		return jose.JSONWebKey{}, invalid("the token's signing key is unknown")
	}
	if k, ok := s.find(kid); ok {
		return k, nil
	}
	return jose.JSONWebKey{}, invalid("the token's signing key is unknown")
}

func (s *keySet) find(kid string) (jose.JSONWebKey, bool) {
	if kid == "" {
		if s.only != nil {
			return *s.only, true
		}
		return jose.JSONWebKey{}, false
	}
	k, ok := s.keys[kid]
	return k, ok
}

// refresh fetches the key set now, or joins the fetch in flight, and
// waits for it. When the last attempt was less than
// MinRefreshInterval ago it returns errRateLimited (and the current set).
func (ks *keyStore) refresh(ctx context.Context) (*keySet, error) {
	f, err := ks.begin()
	if err != nil {
		cur := ks.cur.Load()
		if cur == nil {
			return nil, unavailable("the authorization server's keys could not be fetched")
		}
		return cur, err
	}
	select {
	case <-f.done:
	case <-ctx.Done():
		return ks.cur.Load(), unavailable("the authorization server's keys could not be fetched in time")
	}
	if f.err != nil {
		cur := ks.cur.Load()
		if cur == nil {
			return nil, unavailable("the authorization server's keys could not be fetched")
		}
		return cur, f.err
	}
	return ks.cur.Load(), nil
}

// start begins a background refresh unless one is running or the last
// attempt was recent.
func (ks *keyStore) start() { _, _ = ks.begin() }

// begin returns the fetch in flight, or starts one when the rate limit
// allows.
func (ks *keyStore) begin() (*flight, error) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.inflight != nil {
		return ks.inflight, nil
	}
	now := ks.v.cfg.Now()
	if now.UnixNano() < ks.nextAttempt.Load() {
		return nil, errRateLimited
	}
	ks.nextAttempt.Store(now.Add(ks.v.cfg.MinRefreshInterval).UnixNano())
	f := &flight{done: make(chan struct{})}
	ks.inflight = f
	go func() {
		// The fetch belongs to no single request: one caller giving up
		// must not cancel it for the others.
		s, err := ks.fetch(context.Background())
		if err != nil {
			ks.v.cfg.Logger.Warn("middleware: fetching the authorization server's keys failed; keeping the last good keys", "issuer", ks.v.cfg.Issuer, "cause", err)
			ks.v.disc.forget()
		} else {
			ks.cur.Store(s)
		}
		ks.mu.Lock()
		ks.inflight = nil
		ks.mu.Unlock()
		f.err = err
		close(f.done)
	}()
	return f, nil
}

func (ks *keyStore) fetch(ctx context.Context) (*keySet, error) {
	u, err := ks.v.disc.jwksURL(ctx)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if _, err := ks.v.getJSON(ctx, u, &doc); err != nil {
		return nil, err
	}
	s := &keySet{keys: make(map[string]jose.JSONWebKey, len(doc.Keys)), fetched: ks.v.cfg.Now()}
	for _, raw := range doc.Keys {
		var k jose.JSONWebKey
		// A key we cannot parse (an unknown kty) is skipped, not fatal:
		// the issuer may publish keys for other uses.
		if err := k.UnmarshalJSON(raw); err != nil || !k.Valid() || !k.IsPublic() {
			continue
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		s.keys[k.KeyID] = k
	}
	if len(s.keys) == 0 {
		return nil, fmt.Errorf("the key set at %s has no usable signing key", u)
	}
	if len(s.keys) == 1 {
		for _, k := range s.keys {
			s.only = &k
		}
	}
	return s, nil
}
