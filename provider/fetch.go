package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Outbound fetches (a client's jwks_uri) go to URLs that anyone who can
// register a client chooses. The default client therefore connects only to
// public addresses: the check runs on the address actually dialled, after
// DNS, so a name that resolves (or re-resolves) to an internal address is
// refused too (server-side request forgery, RFC 7591 §5).
func newFetchClient() *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second, Control: refusePrivate}
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			Proxy:                 nil, // a proxy would hide the real destination from refusePrivate
			DialContext:           dialer.DialContext,
			TLSHandshakeTimeout:   5 * time.Second,
			ResponseHeaderTimeout: 5 * time.Second,
			MaxIdleConns:          16,
			IdleConnTimeout:       30 * time.Second,
		},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 3 {
				return errors.New("too many redirects")
			}
			if req.URL.Scheme != "https" {
				return errors.New("redirect away from https")
			}
			return nil
		},
	}
}

func refusePrivate(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	ip := net.ParseIP(host)
	if ip == nil || !publicIP(ip) {
		return fmt.Errorf("refusing to connect to %s: not a public address", host)
	}
	return nil
}

// cgnat is the shared address space of RFC 6598, private in practice.
var cgnat = &net.IPNet{IP: net.IPv4(100, 64, 0, 0), Mask: net.CIDRMask(10, 32)}

func publicIP(ip net.IP) bool {
	return ip.IsGlobalUnicast() && !ip.IsPrivate() && !cgnat.Contains(ip)
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
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return ks, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.opts.HTTPClient.Do(req)
	if err != nil {
		return ks, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ks, fmt.Errorf("jwks_uri answered %d", resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxClientJWKS)).Decode(&ks); err != nil {
		return ks, err
	}
	s.clientKeys.put(uri, ks, now)
	return ks, nil
}
