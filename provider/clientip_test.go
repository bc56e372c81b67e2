package provider

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestClientIP(t *testing.T) {
	t.Parallel()
	proxies, err := ParseTrustedProxies("10.0.0.0/8, 192.0.2.1, ::ffff:172.16.0.0/108")
	if err != nil {
		t.Fatal(err)
	}
	both := http.Header{"X-Forwarded-For": {"198.51.100.4"}, "Forwarded": {"for=198.51.100.5"}}
	for _, tc := range []struct {
		name, mode, peer string
		header           http.Header
		want             string
	}{
		{"no proxy", ProxyHeadersXForwarded, "203.0.113.9:4000", nil, "203.0.113.9"},
		{"untrusted peer's header ignored", ProxyHeadersXForwarded, "203.0.113.9:4000", http.Header{"X-Forwarded-For": {"198.51.100.1"}}, "203.0.113.9"},
		{"trusted peer", ProxyHeadersXForwarded, "10.1.1.1:4000", http.Header{"X-Forwarded-For": {"198.51.100.1"}}, "198.51.100.1"},
		{"forged first hop", ProxyHeadersXForwarded, "10.1.1.1:4000", http.Header{"X-Forwarded-For": {"1.2.3.4, 198.51.100.1"}}, "198.51.100.1"},
		{"two proxies, two header lines", ProxyHeadersXForwarded, "10.1.1.1:4000", http.Header{"X-Forwarded-For": {"1.2.3.4, 198.51.100.1", "192.0.2.1"}}, "198.51.100.1"},
		{"every hop a proxy", ProxyHeadersXForwarded, "10.1.1.1:4000", http.Header{"X-Forwarded-For": {"10.2.2.2"}}, "10.2.2.2"},
		{"garbage hop stops the walk", ProxyHeadersXForwarded, "10.1.1.1:4000", http.Header{"X-Forwarded-For": {"198.51.100.1, unknown"}}, "10.1.1.1"},
		{"no header from a proxy", ProxyHeadersXForwarded, "10.1.1.1:4000", nil, "10.1.1.1"},
		{"mapped IPv4 peer and CIDR", ProxyHeadersXForwarded, "[::ffff:172.16.0.5]:4000", http.Header{"X-Forwarded-For": {"198.51.100.2"}}, "198.51.100.2"},
		{"IPv6 peer per /64", ProxyHeadersXForwarded, "[2001:db8:1:2:3:4:5:6]:443", nil, "2001:db8:1:2::/64"},
		// xforwarded reads X-Forwarded-For only: a Forwarded header, alone
		// or beside it, is the client's and changes nothing.
		{"xforwarded: both headers", ProxyHeadersXForwarded, "10.1.1.1:4000", both, "198.51.100.4"},
		{"xforwarded: Forwarded alone is ignored", ProxyHeadersXForwarded, "10.1.1.1:4000", http.Header{"Forwarded": {"for=198.51.100.5"}}, "10.1.1.1"},
		// forwarded reads RFC 7239 Forwarded only.
		{"forwarded: both headers", ProxyHeadersForwarded, "10.1.1.1:4000", both, "198.51.100.5"},
		{"forwarded: X-Forwarded-For alone is ignored", ProxyHeadersForwarded, "10.1.1.1:4000", http.Header{"X-Forwarded-For": {"198.51.100.4"}}, "10.1.1.1"},
		{"forwarded: IPv6 and port", ProxyHeadersForwarded, "10.1.1.1:4000", http.Header{"Forwarded": {`for="[2001:db8:aa:bb::1]:99";proto=https`}}, "2001:db8:aa:bb::/64"},
		{"forwarded: several elements", ProxyHeadersForwarded, "10.1.1.1:4000", http.Header{"Forwarded": {"for=1.2.3.4, For=198.51.100.3;by=10.1.1.1"}}, "198.51.100.3"},
		{"forwarded: forged first element", ProxyHeadersForwarded, "10.1.1.1:4000", http.Header{"Forwarded": {"for=1.2.3.4", "for=198.51.100.6;proto=https"}}, "198.51.100.6"},
		{"forwarded: through a second proxy", ProxyHeadersForwarded, "10.1.1.1:4000", http.Header{"Forwarded": {`for=198.51.100.7, for="10.2.2.2:8443"`}}, "198.51.100.7"},
		{"forwarded: obfuscated hop stops the walk", ProxyHeadersForwarded, "10.1.1.1:4000", http.Header{"Forwarded": {"for=198.51.100.8, for=_hidden"}}, "10.1.1.1"},
		{"forwarded: untrusted peer's header ignored", ProxyHeadersForwarded, "203.0.113.9:4000", both, "203.0.113.9"},
		{"forwarded: no header from a proxy", ProxyHeadersForwarded, "10.1.1.1:4000", nil, "10.1.1.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := &Server{opts: Options{TrustedProxies: proxies, ProxyHeaders: tc.mode}}
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tc.peer
			for k, v := range tc.header {
				r.Header[k] = v
			}
			if got := limitKey(s.clientIP(r)); got != tc.want {
				t.Fatalf("client IP = %s, want %s", got, tc.want)
			}
		})
	}
	for _, bad := range []string{"10.0.0.0/33", "example.com", "10.0.0.0/8,,x"} {
		if _, err := ParseTrustedProxies(bad); err == nil {
			t.Errorf("ParseTrustedProxies(%q) accepted", bad)
		}
	}
}
