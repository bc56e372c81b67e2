package tests

import (
	"context"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/store"
)

// proxyFamily is one value of AUTHZ_PROXY_HEADERS: the header a proxy
// speaking it sets, and the other one, which such a proxy passes through
// as the client wrote it.
type proxyFamily struct{ name, header, other string }

var proxyFamilies = []proxyFamily{
	{provider.ProxyHeadersXForwarded, "X-Forwarded-For", "Forwarded"},
	{provider.ProxyHeadersForwarded, "Forwarded", "X-Forwarded-For"},
}

// via is the headers of a request from real through the proxy, the client
// having sent forged in the other header.
func (f proxyFamily) via(real, forged string) http.Header {
	return http.Header{f.header: {headerValue(f.header, real)}, f.other: {headerValue(f.other, forged)}}
}

// headerValue names ip in header: X-Forwarded-For's bare address, or an
// RFC 7239 §4 element whose node (§6) is quoted and bracketed for IPv6.
func headerValue(header, ip string) string {
	switch {
	case header == "X-Forwarded-For":
		return ip
	case strings.Contains(ip, ":"):
		return `for="[` + ip + `]";proto=https`
	}
	return "for=" + ip + ";proto=https"
}

// TestProxyHeaders: behind a trusted proxy, the client address that sign-in
// limits count and the audit trail records comes from the one header
// family AUTHZ_PROXY_HEADERS names. The other header, which such a proxy
// passes through as the client wrote it, changes nothing; from an
// untrusted peer neither is believed.
func TestProxyHeaders(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		for _, fam := range proxyFamilies {
			t.Run(fam.name, func(t *testing.T) {
				t.Parallel()
				e := start(t, open(t), func(o *provider.Options) {
					o.ProxyHeaders = fam.name
					o.LoginFailuresPerAccount, o.LoginFailuresPerIP, o.LoginWindow = 100, 3, 10*time.Minute
					o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
				})
				// The same server but for the proxy list: the test's own
				// connections come from an address outside it.
				untrusted := start(t, open(t), func(o *provider.Options) {
					o.ProxyHeaders = fam.name
					o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
				})
				from := func(e *env, real, forged string) *browser {
					b := e.browser()
					b.header = fam.via(real, forged)
					return b
				}

				t.Run("audited under the proxy's header", func(t *testing.T) {
					from(e, "198.51.100.10", "192.0.2.10").loginAttempt("audit-trusted", "wrong")
					mustEqual(t, "client_ip", failedLoginIP(t, e, "audit-trusted"), "198.51.100.10")
					from(e, "2001:db8:7:8::10", "192.0.2.11").loginAttempt("audit-trusted-v6", "wrong")
					mustEqual(t, "client_ip (IPv6)", failedLoginIP(t, e, "audit-trusted-v6"), "2001:db8:7:8::10")
					// The other header alone is not a fallback: the proxy
					// that speaks the named one would have set it.
					other := e.browser()
					other.header = http.Header{fam.other: {headerValue(fam.other, "192.0.2.12")}}
					other.loginAttempt("audit-other-only", "wrong")
					mustEqual(t, "client_ip with only the other header", failedLoginIP(t, e, "audit-other-only"), "127.0.0.1")
					from(untrusted, "198.51.100.10", "192.0.2.10").loginAttempt("audit-untrusted", "wrong")
					mustEqual(t, "client_ip from an untrusted peer", failedLoginIP(t, untrusted, "audit-untrusted"), "127.0.0.1")
				})

				t.Run("counted under the proxy's header", func(t *testing.T) {
					user, pw := e.user("proxied")
					// Three failures from one address, each with another
					// forged address in the other header.
					for _, forged := range []string{"192.0.2.21", "192.0.2.22", "192.0.2.23"} {
						mustEqual(t, "failure "+forged, from(e, "203.0.113.20", forged).loginAttempt("nobody-"+forged, "wrong").status, http.StatusUnauthorized)
					}
					mustEqual(t, "the counted address, whatever the other header says",
						from(e, "203.0.113.20", "192.0.2.24").loginAttempt(user, pw).status, http.StatusTooManyRequests)
					mustEqual(t, "another address, the counted one forged in the other header",
						from(e, "198.51.100.25", "203.0.113.20").loginAttempt(user, pw).status, http.StatusSeeOther)
					// IPv6 clients are counted per /64, in either family.
					for range 3 {
						from(e, "2001:db8:1:2::10", "192.0.2.26").loginAttempt("nobody-v6", "wrong")
					}
					mustEqual(t, "same /64", from(e, "2001:db8:1:2::99", "192.0.2.27").loginAttempt(user, pw).status, http.StatusTooManyRequests)
				})
			})
		}
	})
}

// failedLoginIP is the client_ip of the one login.failed event for
// username.
func failedLoginIP(t *testing.T, e *env, username string) string {
	t.Helper()
	events, err := e.store.ListAuditEvents(context.Background(), store.AuditFilter{Name: provider.EventLoginFailed})
	if err != nil {
		t.Fatal(err)
	}
	var ips []string
	for _, ev := range events {
		if ev.Details["username"] == username {
			ips = append(ips, ev.ClientIP)
		}
	}
	if len(ips) != 1 {
		t.Fatalf("login.failed events for %s: client IPs %q, want one event", username, ips)
	}
	return ips[0]
}
