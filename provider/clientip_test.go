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
	s := &Server{opts: Options{TrustedProxies: proxies}}
	for _, tc := range []struct {
		name, peer string
		header     http.Header
		want       string
	}{
		{"no proxy", "203.0.113.9:4000", nil, "203.0.113.9"},
		{"untrusted peer's header ignored", "203.0.113.9:4000", http.Header{"X-Forwarded-For": {"198.51.100.1"}}, "203.0.113.9"},
		{"trusted peer", "10.1.1.1:4000", http.Header{"X-Forwarded-For": {"198.51.100.1"}}, "198.51.100.1"},
		{"forged first hop", "10.1.1.1:4000", http.Header{"X-Forwarded-For": {"1.2.3.4, 198.51.100.1"}}, "198.51.100.1"},
		{"two proxies, two header lines", "10.1.1.1:4000", http.Header{"X-Forwarded-For": {"1.2.3.4, 198.51.100.1", "192.0.2.1"}}, "198.51.100.1"},
		{"every hop a proxy", "10.1.1.1:4000", http.Header{"X-Forwarded-For": {"10.2.2.2"}}, "10.2.2.2"},
		{"garbage hop stops the walk", "10.1.1.1:4000", http.Header{"X-Forwarded-For": {"198.51.100.1, unknown"}}, "10.1.1.1"},
		{"no header from a proxy", "10.1.1.1:4000", nil, "10.1.1.1"},
		{"mapped IPv4 peer and CIDR", "[::ffff:172.16.0.5]:4000", http.Header{"X-Forwarded-For": {"198.51.100.2"}}, "198.51.100.2"},
		{"Forwarded with IPv6 and port", "10.1.1.1:4000", http.Header{"Forwarded": {`for="[2001:db8:aa:bb::1]:99";proto=https`}}, "2001:db8:aa:bb::/64"},
		{"Forwarded, several elements", "10.1.1.1:4000", http.Header{"Forwarded": {"for=1.2.3.4, For=198.51.100.3;by=10.1.1.1"}}, "198.51.100.3"},
		{"X-Forwarded-For wins over Forwarded", "10.1.1.1:4000", http.Header{"X-Forwarded-For": {"198.51.100.4"}, "Forwarded": {"for=1.2.3.4"}}, "198.51.100.4"},
		{"IPv6 peer per /64", "[2001:db8:1:2:3:4:5:6]:443", nil, "2001:db8:1:2::/64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
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
