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
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/authzd/authz/provider/store"
)

// Outbound fetches (a client's jwks_uri, a client ID metadata document) go
// to URLs that anyone on the internet chooses. The fetcher therefore
// connects only to public addresses, checked on the address actually
// dialled after DNS, so a name that resolves (or re-resolves) to an
// internal address is refused too (server-side request forgery, RFC 7591
// §5, draft-ietf-oauth-client-id-metadata-document §6). It follows no
// redirect, runs at most a few fetches at once (and at most a share of
// them for one host), and remembers a failure of the URL briefly so a bad
// URL cannot make the server fetch on every request. Finding no free slot
// is this server's condition, not the URL's: it is never remembered.
//
// A failed fetch is one of two kinds, and they are answered differently:
// the URL's host could not be reached or said "not now" (errFetchUnreachable:
// a network error, a timeout, 5xx, 429, 408), or it answered and the answer
// is bad (404, a redirect, too large, not JSON, an invalid document, an
// address refused above). Only the second says anything about the client:
// it is invalid_client. The first is a 503 temporarily_unavailable, and a
// stored good copy of the document or key set serves meanwhile (see
// staleIfError): MCP hosts and x/oauth2 throw their credentials away on
// invalid_client, so a host's outage must never look like one.

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

// errRefusedAddress marks a dial the address policy refused: the URL
// names a place this server never goes, a definitive failure however the
// dialler wraps it.
var errRefusedAddress = errors.New("refusing to connect")

func (p addressPolicy) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w to %s: not an IP address", errRefusedAddress, address)
	}
	ip := ap.Addr().Unmap()
	if publicAddr(ip) || (p.allowLoopback && ip.IsLoopback()) {
		return nil
	}
	return fmt.Errorf("%w to %s: not a public address", errRefusedAddress, ip)
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
	// maxFetchesPerHost of those slots may serve one host at once, so one
	// slow host (or one host publishing many documents) cannot hold them
	// all: fetches for other hosts still find a slot. Many slow hosts
	// still can; see README, "Outbound fetches".
	maxFetchesPerHost = 2
	// fetchSlotWait bounds the wait for a slot, then the request is
	// answered 503 temporarily_unavailable. fetchTimeout bounds the fetch
	// itself and starts once it has its slot, so a fetch that times out
	// had all of it: time spent queueing is never charged to the URL.
	fetchSlotWait = 5 * time.Second
	fetchTimeout  = 10 * time.Second
	// fetchFailureTTL is how long a definitive failure (the URL answered
	// badly) is remembered and answered without a fetch.
	fetchFailureTTL = 30 * time.Second
	// fetchUnreachableTTL is how long a transient failure (the host could
	// not be reached, or said "not now") is remembered: no longer than the
	// Retry-After its 503 carries, so a client that waits as told finds
	// the host asked again, and works as soon as the host is back. A dead
	// host is still asked at most once per URL in that time (and by at
	// most maxFetchesPerHost fetches at once).
	fetchUnreachableTTL = RetryAfter
	fetchFailureEntries = 1024
	// staleIfError is how long past its lifetime a good copy (a client's
	// key set, a metadata-document client row) is still used when
	// refreshing it fails for a reason that is not the copy's: the host
	// could not be reached or said "not now" (errFetchUnreachable), or no
	// fetch slot was free (errFetchBusy). RFC 5861 §4 (stale-if-error),
	// RFC 9111 §4.2.4: a cache may serve stale when the origin cannot be
	// reached. One hour rides out a host's restart, deploy or regional
	// blip: the outages during which a client must not be made to lose
	// its sign-in. It is bounded because the copy may be wrong by now: a
	// key the client removed, a redirect URI it dropped, must not stay
	// usable for as long as its host is down (or our slots are flooded);
	// a definitive failure (404, an invalid document) ends it at once.
	// Past the bound the request is answered 503 (never invalid_client),
	// so the client still keeps its credentials.
	staleIfError = time.Hour
)

// fetcher performs outbound GETs of small JSON documents.
type fetcher struct {
	client *http.Client
	now    func() time.Time
	slots  chan struct{}

	mu       sync.Mutex
	failures map[string]failedFetch
	hosts    map[string]*hostSlots
}

// hostSlots are one host's share of the slots; users counts the fetches
// holding or waiting for one, so the entry goes when the last is done.
type hostSlots struct {
	slots chan struct{}
	users int
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
	return &fetcher{client: &c, now: now, slots: make(chan struct{}, maxConcurrentFetches),
		failures: map[string]failedFetch{}, hosts: map[string]*hostSlots{}}
}

// errFetch marks a fetch failure (as opposed to a failure of ours).
var errFetch = errors.New("fetch failed")

// errFetchUnreachable marks a transient fetch failure: the URL's host
// could not be reached (network error, TLS failure, timeout) or answered
// "not now" (5xx, 429, 408). It says nothing about the client's document
// or keys, so it is answered as a transient failure (503
// temporarily_unavailable with Retry-After, metrics cause "client_host"),
// never invalid_client, and a stored copy within staleIfError serves.
var errFetchUnreachable = fmt.Errorf("%w: the URL's host could not be reached", store.ErrUnavailable)

// unreachable is a transient fetch failure; its message is the cause's.
type unreachable struct{ err error }

func (e *unreachable) Error() string   { return e.err.Error() }
func (e *unreachable) Unwrap() []error { return []error{errFetchUnreachable, e.err} }

// transientStatus reports whether an HTTP status means "not now" rather
// than an answer: any 5xx (RFC 9110 §15.6), 429 (RFC 6585 §4) and 408
// (RFC 9110 §15.5.9).
func transientStatus(code int) bool {
	return code >= 500 || code == http.StatusTooManyRequests || code == http.StatusRequestTimeout
}

// transientNetError reports whether err, from sending a request or
// reading its response, means the host could not be reached: anything
// but an address the policy refused (errRefusedAddress) or a name that
// does not exist (the DNS answered NXDOMAIN: there is no origin to wait
// for). A refused dial, a reset, a timeout, a TLS failure, a resolver
// that did not answer, a connection closed mid-response are all transient.
func transientNetError(err error) bool {
	if errors.Is(err, errRefusedAddress) {
		return false
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
		return false
	}
	return true
}

// retryableFetch reports whether a refresh failed for a reason that is not
// the stored copy's (its host unreachable, or no free slot here), so that
// copy may still serve within staleIfError.
func retryableFetch(err error) bool {
	return errors.Is(err, errFetchUnreachable) || errors.Is(err, errFetchBusy)
}

// errFetchBusy is a fetch that found no free slot: a condition of this
// server (others' fetches hold the slots), not of the URL. It is never
// remembered as the URL's failure, and is answered like any other
// transient failure: 503 temporarily_unavailable with Retry-After, never
// invalid_client or invalid_grant (as errHashBusy for sign-in).
var errFetchBusy = fmt.Errorf("%w: every outbound fetch slot is busy", store.ErrUnavailable)

// get fetches uri, waiting up to fetchSlotWait for a slot. Only a 200 with
// a body of at most limit bytes counts.
func (f *fetcher) get(ctx context.Context, uri string, limit int64) (fetched, error) {
	return f.fetch(ctx, uri, limit, true)
}

// tryGet is get without the wait: errFetchBusy unless a slot is free now.
// It refreshes what the caller holds a usable copy of, so that a request
// with a copy in hand never queues behind a flood of other fetches.
func (f *fetcher) tryGet(ctx context.Context, uri string, limit int64) (fetched, error) {
	return f.fetch(ctx, uri, limit, false)
}

func (f *fetcher) fetch(ctx context.Context, uri string, limit int64, wait bool) (fetched, error) {
	now := f.now()
	f.mu.Lock()
	if ff, ok := f.failures[uri]; ok && now.Before(ff.until) {
		f.mu.Unlock()
		return fetched{}, ff.err
	}
	f.mu.Unlock()
	out, err := f.do(ctx, uri, limit, wait)
	if err == nil || errors.Is(err, errFetchBusy) {
		return out, err
	}
	err = fmt.Errorf("%w: %w", errFetch, err)
	// Remembered only when the fetch ran and failed on its own: a caller
	// that stopped waiting (a client that went away) says nothing about
	// uri, and remembering it would let anyone make a good URL "fail" for
	// fetchFailureTTL by asking for it and hanging up.
	if ctx.Err() == nil {
		f.remember(uri, err)
	}
	return out, err
}

// remember keeps a failure, with its class: a definitive one for
// fetchFailureTTL, a transient one (still answered 503 while remembered)
// for fetchUnreachableTTL.
func (f *fetcher) remember(uri string, err error) {
	ttl := fetchFailureTTL
	if errors.Is(err, errFetchUnreachable) {
		ttl = fetchUnreachableTTL
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.failures) >= fetchFailureEntries {
		f.failures = map[string]failedFetch{}
	}
	f.failures[uri] = failedFetch{err: err, until: f.now().Add(ttl)}
}

// fetchHost is the key of a URL's per-host share: the host name in lower
// case without a trailing dot or port, an IP address however it is
// spelled (ports and spellings are free to an attacker; names are not).
func fetchHost(uri string) string {
	u, err := url.Parse(uri)
	if err != nil {
		return ""
	}
	h := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if ip, err := netip.ParseAddr(h); err == nil {
		return ip.Unmap().WithZone("").String()
	}
	return h
}

// acquire takes one of host's slots, then one of the global slots (in
// that order, so a fetch waiting for its host's share holds no global
// slot), waiting up to fetchSlotWait (not at all unless wait). It returns
// errFetchBusy when none came free.
func (f *fetcher) acquire(ctx context.Context, host string, wait bool) (release func(), err error) {
	f.mu.Lock()
	h := f.hosts[host]
	if h == nil {
		h = &hostSlots{slots: make(chan struct{}, maxFetchesPerHost)}
		f.hosts[host] = h
	}
	h.users++
	f.mu.Unlock()
	done := func() {
		f.mu.Lock()
		if h.users--; h.users == 0 {
			delete(f.hosts, host)
		}
		f.mu.Unlock()
	}
	var expired <-chan struct{} // nil: do not wait
	if wait {
		wctx, cancel := context.WithTimeout(ctx, fetchSlotWait)
		defer cancel()
		expired = wctx.Done()
	}
	if !take(h.slots, expired) {
		done()
		return nil, errFetchBusy
	}
	if !take(f.slots, expired) {
		<-h.slots
		done()
		return nil, errFetchBusy
	}
	return func() { <-f.slots; <-h.slots; done() }, nil
}

// take takes a slot of slots, waiting until expired is closed (not at all
// when it is nil). A free slot is taken even if expired is already closed.
func take(slots chan struct{}, expired <-chan struct{}) bool {
	select {
	case slots <- struct{}{}:
		return true
	default:
	}
	if expired == nil {
		return false
	}
	select {
	case slots <- struct{}{}:
		return true
	case <-expired:
		return false
	}
}

func (f *fetcher) do(ctx context.Context, uri string, limit int64, wait bool) (fetched, error) {
	release, err := f.acquire(ctx, fetchHost(uri), wait)
	if err != nil {
		return fetched{}, err
	}
	defer release()
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return fetched{}, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		if transientNetError(err) {
			return fetched{}, &unreachable{err}
		}
		return fetched{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		switch code := resp.StatusCode; {
		case code >= 300 && code < 400:
			return fetched{}, fmt.Errorf("answered %d (redirects are not followed)", code)
		case transientStatus(code):
			return fetched{}, &unreachable{fmt.Errorf("answered %d, not 200", code)}
		default:
			return fetched{}, fmt.Errorf("answered %d, not 200", code)
		}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		// The connection broke (or timed out) mid-body: not an answer.
		return fetched{}, &unreachable{err}
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

// get returns the key set fetched for uri: fresh while younger than
// clientJWKSTTL, else, as a stale copy, while younger than clientJWKSTTL
// plus staleIfError.
func (c *clientKeyCache) get(uri string, now time.Time) (ks jose.JSONWebKeySet, fresh, stale bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[uri]
	if !ok || now.Before(e.fetched) {
		return jose.JSONWebKeySet{}, false, false
	}
	switch age := now.Sub(e.fetched); {
	case age < clientJWKSTTL:
		return e.keys, true, false
	case age < clientJWKSTTL+staleIfError:
		return e.keys, false, true
	}
	return jose.JSONWebKeySet{}, false, false
}

func (c *clientKeyCache) put(uri string, ks jose.JSONWebKeySet, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil || len(c.entries) >= clientJWKSEntries {
		c.entries = map[string]jwksEntry{}
	}
	c.entries[uri] = jwksEntry{keys: ks, fetched: now}
}

// drop forgets uri's key set: its jwks_uri answered that it is gone or
// invalid, so the copy must not serve again.
func (c *clientKeyCache) drop(uri string) {
	c.mu.Lock()
	delete(c.entries, uri)
	c.mu.Unlock()
}

// fetchClientKeys gets a client's JWK Set from its jwks_uri. A stale copy
// (at most staleIfError past its lifetime) is used as revalidate.go says:
// at once while a refresh runs or its host is known to fail (the refresh
// then runs in the background), or after a refresh, made only if a fetch
// slot is free at once, failed for a reason that is not the keys' (no free
// slot, the host unreachable or saying "not now": stale-if-error). A refresh that finds the key set
// gone or invalid ends the copy. Without a usable copy a failure is
// returned as it is (a transient one is a 503).
func (s *Server) fetchClientKeys(ctx context.Context, uri string) (jose.JSONWebKeySet, error) {
	now := s.opts.Now()
	cached, fresh, stale := s.clientKeys.get(uri, now)
	if fresh {
		return cached, nil
	}
	if stale && s.revalidate.usable(uri) {
		var ks jose.JSONWebKeySet
		useCopy, err := s.useStale(ctx, uri, now, func(ctx context.Context, background bool) (err error) {
			get := s.fetch.tryGet
			if background {
				get = s.fetch.get
			}
			ks, err = s.refreshClientKeys(ctx, uri, get)
			return err
		}, "jwks_uri unreachable, using the stored key set", "jwks_uri", uri)
		if useCopy {
			return cached, nil
		}
		return ks, err
	}
	ks, err := s.refreshClientKeys(ctx, uri, s.fetch.get)
	if err == nil {
		s.revalidate.succeeded(uri)
	}
	return ks, err
}

// refreshClientKeys fetches uri (with get) and, when it is a key set,
// stores it as the copy. A definitive failure drops the copy.
func (s *Server) refreshClientKeys(ctx context.Context, uri string,
	get func(context.Context, string, int64) (fetched, error)) (jose.JSONWebKeySet, error) {
	var ks jose.JSONWebKeySet
	f, err := get(ctx, uri, maxClientJWKS)
	if err == nil {
		if err = json.Unmarshal(f.body, &ks); err != nil {
			err = fmt.Errorf("jwks_uri: %w", err)
			s.fetch.remember(uri, err)
		}
	}
	if err != nil {
		if !retryableFetch(err) && ctx.Err() == nil {
			s.clientKeys.drop(uri)
		}
		return jose.JSONWebKeySet{}, err
	}
	// Stamped when the fetch ended: a background refresh may have waited
	// for a slot.
	s.clientKeys.put(uri, ks, s.opts.Now())
	return ks, nil
}
