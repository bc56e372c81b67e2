package provider

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"syscall"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Outbound fetches (a client's jwks_uri, a client ID metadata document) go
// to URLs that anyone on the internet chooses. The fetcher therefore
// connects only to public addresses, checked on the address actually
// dialled after DNS, so a name that resolves (or re-resolves) to an
// internal address is refused too (server-side request forgery, RFC 7591
// §5, draft-ietf-oauth-client-id-metadata-document §6). It follows no
// redirect, runs at most a few fetches at once, and remembers a failure
// briefly so a bad URL cannot make the server fetch on every request.

// specialPurpose are the IANA IPv4 and IPv6 Special-Purpose Address
// Registries (RFC 6890 and the RFCs they cite), plus multicast and the
// reserved IPv4 block: nothing here is "the public internet".
var specialPurpose = func() []netip.Prefix {
	var out []netip.Prefix
	for _, p := range []string{
		"0.0.0.0/8",       // "this network" (RFC 791)
		"10.0.0.0/8",      // private (RFC 1918)
		"100.64.0.0/10",   // shared address space, CGNAT (RFC 6598)
		"127.0.0.0/8",     // loopback (RFC 1122)
		"169.254.0.0/16",  // link local, cloud metadata (RFC 3927)
		"172.16.0.0/12",   // private (RFC 1918)
		"192.0.0.0/24",    // IETF protocol assignments (RFC 6890)
		"192.0.2.0/24",    // documentation TEST-NET-1 (RFC 5737)
		"192.31.196.0/24", // AS112-v4 (RFC 7535)
		"192.52.193.0/24", // AMT (RFC 7450)
		"192.88.99.0/24",  // 6to4 relay anycast, deprecated (RFC 7526)
		"192.168.0.0/16",  // private (RFC 1918)
		"192.175.48.0/24", // direct delegation AS112 (RFC 7534)
		"198.18.0.0/15",   // benchmarking (RFC 2544)
		"198.51.100.0/24", // documentation TEST-NET-2 (RFC 5737)
		"203.0.113.0/24",  // documentation TEST-NET-3 (RFC 5737)
		"224.0.0.0/4",     // multicast (RFC 5771)
		"240.0.0.0/4",     // reserved, and 255.255.255.255 broadcast (RFC 1112, RFC 919)
		"::/128",          // unspecified (RFC 4291)
		"::1/128",         // loopback (RFC 4291)
		"::ffff:0:0/96",   // IPv4-mapped (RFC 4291): checked as the IPv4 address
		"64:ff9b::/96",    // NAT64 well-known prefix: reaches any IPv4 through a translator (RFC 6052)
		"64:ff9b:1::/48",  // local-use NAT64 (RFC 8215)
		"100::/64",        // discard-only (RFC 6666)
		"2001::/23",       // IETF protocol assignments (RFC 2928), incl. Teredo 2001::/32 (RFC 4380)
		"2001:db8::/32",   // documentation (RFC 3849)
		"2002::/16",       // 6to4: embeds any IPv4 (RFC 3056)
		"3fff::/20",       // documentation (RFC 9637)
		"5f00::/16",       // SRv6 SIDs (RFC 9602)
		"fc00::/7",        // unique local (RFC 4193)
		"fe80::/10",       // link local (RFC 4291)
		"fec0::/10",       // site local, deprecated (RFC 3879)
		"ff00::/8",        // multicast (RFC 4291)
	} {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}()

// globalUnicast6 is the only IPv6 block IANA allocates for global unicast
// (RFC 4291 §2.4); the rest of the space is reserved or special.
var globalUnicast6 = netip.MustParsePrefix("2000::/3")

// publicAddr reports whether a connection to ip reaches the public internet.
func publicAddr(ip netip.Addr) bool {
	if !ip.IsValid() || ip.Zone() != "" {
		return false
	}
	ip = ip.Unmap()
	if ip.Is6() && !globalUnicast6.Contains(ip) {
		return false
	}
	for _, p := range specialPurpose {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// addressPolicy decides which dialled addresses an outbound fetch may
// reach: public ones, and loopback ones when the server itself runs on
// loopback (local development, as the metadata-document draft allows).
type addressPolicy struct{ allowLoopback bool }

func (p addressPolicy) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("refusing to connect to %s: not an IP address", address)
	}
	ip := ap.Addr().Unmap()
	if publicAddr(ip) || (p.allowLoopback && ip.IsLoopback()) {
		return nil
	}
	return fmt.Errorf("refusing to connect to %s: not a public address", ip)
}

// newFetchClient is the default outbound client: TLS verified against
// roots (nil: the system roots, so SSL_CERT_FILE works), the address
// policy on every dial, no proxy (it would hide the real destination),
// short timeouts, and no redirects.
func newFetchClient(roots *x509.CertPool, policy addressPolicy) *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second, Control: policy.control}
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			Proxy:                 nil,
			DialContext:           dialer.DialContext,
			TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout:   5 * time.Second,
			ResponseHeaderTimeout: 5 * time.Second,
			MaxIdleConns:          16,
			IdleConnTimeout:       30 * time.Second,
		},
		CheckRedirect: noRedirects,
	}
}

// noRedirects: a redirect is answered as the response it is (and then
// refused for not being a 200), never followed. A metadata document must
// come from its own URL (client_id equals that URL), and a key set from
// the URL the client registered.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

const (
	maxConcurrentFetches = 4
	fetchFailureTTL      = 30 * time.Second
	fetchFailureEntries  = 1024
)

// fetcher performs outbound GETs of small JSON documents.
type fetcher struct {
	client *http.Client
	now    func() time.Time
	slots  chan struct{}

	mu       sync.Mutex
	failures map[string]failedFetch
}

type failedFetch struct {
	err   error
	until time.Time
}

// fetched is a successful (200) response.
type fetched struct {
	body   []byte
	header http.Header
}

func newFetcher(client *http.Client, now func() time.Time) *fetcher {
	c := *client
	c.CheckRedirect = noRedirects
	return &fetcher{client: &c, now: now, slots: make(chan struct{}, maxConcurrentFetches), failures: map[string]failedFetch{}}
}

// errFetch marks a fetch failure (as opposed to a failure of ours).
var errFetch = errors.New("fetch failed")

// get fetches uri. Only a 200 with a body of at most limit bytes counts.
func (f *fetcher) get(ctx context.Context, uri string, limit int64) (fetched, error) {
	now := f.now()
	f.mu.Lock()
	if ff, ok := f.failures[uri]; ok && now.Before(ff.until) {
		f.mu.Unlock()
		return fetched{}, ff.err
	}
	f.mu.Unlock()
	out, err := f.do(ctx, uri, limit)
	if err != nil {
		err = fmt.Errorf("%w: %w", errFetch, err)
		f.remember(uri, err)
	}
	return out, err
}

// remember keeps a failure for fetchFailureTTL.
func (f *fetcher) remember(uri string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.failures) >= fetchFailureEntries {
		f.failures = map[string]failedFetch{}
	}
	f.failures[uri] = failedFetch{err: err, until: f.now().Add(fetchFailureTTL)}
}

func (f *fetcher) do(ctx context.Context, uri string, limit int64) (fetched, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	select {
	case f.slots <- struct{}{}:
		defer func() { <-f.slots }()
	case <-ctx.Done():
		return fetched{}, errors.New("too many fetches in progress")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return fetched{}, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		return fetched{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		if resp.StatusCode >= 300 && resp.StatusCode < 400 {
			return fetched{}, fmt.Errorf("answered %d (redirects are not followed)", resp.StatusCode)
		}
		return fetched{}, fmt.Errorf("answered %d, not 200", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return fetched{}, err
	}
	if int64(len(body)) > limit {
		return fetched{}, fmt.Errorf("larger than %d bytes", limit)
	}
	return fetched{body: body, header: resp.Header}, nil
}

// clientKeyCache keeps fetched client key sets for clientJWKSTTL, bounded
// so that many registered jwks_uris cannot grow it without limit.
type clientKeyCache struct {
	mu      sync.Mutex
	entries map[string]jwksEntry
}

type jwksEntry struct {
	keys    jose.JSONWebKeySet
	fetched time.Time
}

const (
	clientJWKSTTL     = 5 * time.Minute
	clientJWKSEntries = 1024
	maxClientJWKS     = 256 << 10
)

func (c *clientKeyCache) get(uri string, now time.Time) (jose.JSONWebKeySet, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[uri]
	if !ok || now.Sub(e.fetched) >= clientJWKSTTL || now.Before(e.fetched) {
		return jose.JSONWebKeySet{}, false
	}
	return e.keys, true
}

func (c *clientKeyCache) put(uri string, ks jose.JSONWebKeySet, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil || len(c.entries) >= clientJWKSEntries {
		c.entries = map[string]jwksEntry{}
	}
	c.entries[uri] = jwksEntry{keys: ks, fetched: now}
}

// fetchClientKeys gets a client's JWK Set from its jwks_uri.
func (s *Server) fetchClientKeys(ctx context.Context, uri string) (jose.JSONWebKeySet, error) {
	var ks jose.JSONWebKeySet
	now := s.opts.Now()
	if cached, ok := s.clientKeys.get(uri, now); ok {
		return cached, nil
	}
	f, err := s.fetch.get(ctx, uri, maxClientJWKS)
	if err != nil {
		return ks, err
	}
	if err := json.Unmarshal(f.body, &ks); err != nil {
		err = fmt.Errorf("jwks_uri: %w", err)
		s.fetch.remember(uri, err)
		return ks, err
	}
	s.clientKeys.put(uri, ks, now)
	return ks, nil
}
