package provider

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// ParseTrustedProxies parses a comma-separated list of CIDRs (or single
// addresses) for Options.TrustedProxies.
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("trusted proxy %q is not an address or CIDR (example: 10.0.0.0/8)", f)
			}
			a = a.Unmap()
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q is not a CIDR (example: 10.0.0.0/8)", f)
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// clientIP is the address limits are counted for. It is the peer address,
// unless the peer is a trusted proxy (Options.TrustedProxies): then the
// forwarding chain is walked from the right (the entries our own proxies
// appended) to the first address that is not a trusted proxy. Entries
// further left were written by the client and are never believed, so a
// forged X-Forwarded-For cannot pick the address that gets counted.
//
// The chain is read from the one header family Options.ProxyHeaders names
// and from no other: a proxy appends to the header it speaks and passes
// the other through as the client sent it, so falling back to (or
// preferring) the other would let the client choose the address.
func (s *Server) clientIP(r *http.Request) netip.Addr {
	peer, ok := parseHop(r.RemoteAddr)
	if !ok || !s.trustedProxy(peer) {
		return peer
	}
	chain := forwardedFor(r.Header, s.opts.ProxyHeaders)
	ip := peer
	for i := len(chain) - 1; i >= 0; i-- {
		hop, ok := parseHop(chain[i])
		if !ok {
			break // an obfuscated or "unknown" hop: the last address we trust stands
		}
		ip = hop
		if !s.trustedProxy(hop) {
			break
		}
	}
	return ip
}

func (s *Server) trustedProxy(a netip.Addr) bool {
	for _, p := range s.opts.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// forwardedFor returns the client chain, oldest first, across every header
// line, of X-Forwarded-For (ProxyHeadersXForwarded) or of Forwarded's for=
// parameters (ProxyHeadersForwarded, RFC 7239 §4, §5.2). The other header
// is never looked at. family is resolved (ResolveOptions): any other value
// reads nothing, leaving the peer's address.
func forwardedFor(h http.Header, family string) []string {
	var out []string
	switch family {
	case ProxyHeadersXForwarded:
		for _, line := range h.Values("X-Forwarded-For") {
			for _, v := range strings.Split(line, ",") {
				out = append(out, strings.TrimSpace(v))
			}
		}
	case ProxyHeadersForwarded:
		for _, line := range h.Values("Forwarded") {
			for _, elem := range strings.Split(line, ",") {
				for _, pair := range strings.Split(elem, ";") {
					k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
					if ok && strings.EqualFold(k, "for") {
						out = append(out, strings.Trim(v, `"`))
					}
				}
			}
		}
	}
	return out
}

// parseHop reads "addr", "addr:port", "[v6]" or "[v6]:port".
func parseHop(v string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(v); err == nil {
		return ap.Addr().Unmap(), true
	}
	v = strings.TrimSuffix(strings.TrimPrefix(v, "["), "]")
	if a, err := netip.ParseAddr(v); err == nil {
		return a.Unmap(), true
	}
	return netip.Addr{}, false
}

// limitNet is one address block a rate limit counts a client in: key
// names it, and the block may reach factor times the limit.
type limitNet struct {
	key    string
	factor int
}

// sharedNetFactor is how many times a per-address limit a whole IPv6 /48
// may reach. Anyone can have a /48 (tunnel brokers hand them out free):
// counted per /64 alone, its 65,536 /64s would each get the whole limit,
// hundreds of thousands of registrations or password guesses an hour.
const sharedNetFactor = 16

// limitNets are the blocks a client address is counted in: the address
// (an IPv6 /64, see limitKey), and for IPv6 also its /48 at
// sharedNetFactor times the limit.
func limitNets(a netip.Addr) []limitNet {
	nets := []limitNet{{limitKey(a), 1}}
	if a.IsValid() && a.Is6() && !a.Is4In6() {
		p, _ := a.Prefix(48)
		nets = append(nets, limitNet{p.String(), sharedNetFactor})
	}
	return nets
}

// limitKey is the part of a rate-limit key that names a client address.
// IPv6 clients are counted per /64: one host usually holds a whole /64, so
// counting single addresses would let it rotate past any limit.
func limitKey(a netip.Addr) string {
	switch {
	case !a.IsValid():
		return "unknown"
	case a.Is6():
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}
