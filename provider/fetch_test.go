package provider

import (
	"net/netip"
	"testing"
)

// TestPublicAddr: every IANA special-purpose block (IPv4 and IPv6),
// including the ones that embed or reach an IPv4 address (NAT64, 6to4,
// Teredo, IPv4-mapped), benchmarking, reserved and documentation ranges, is
// refused; ordinary public addresses are not.
func TestPublicAddr(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		ip     string
		public bool
	}{
		{"8.8.8.8", true}, {"1.1.1.1", true}, {"93.184.216.34", true}, {"2001:4860:4860::8888", true}, {"2606:4700:4700::1111", true},
		{"127.0.0.1", false}, {"::1", false}, {"10.1.2.3", false}, {"172.16.0.1", false}, {"192.168.1.1", false},
		{"169.254.169.254", false}, {"fe80::1", false}, {"fc00::1", false}, {"fd12:3456::1", false}, {"100.64.0.1", false},
		{"0.0.0.0", false}, {"0.1.2.3", false}, {"::", false}, {"224.0.0.1", false}, {"255.255.255.255", false},
		{"::ffff:127.0.0.1", false}, {"::ffff:10.0.0.1", false}, {"::ffff:8.8.8.8", true},
		{"198.18.0.1", false}, {"198.19.255.254", false}, // benchmarking
		{"240.0.0.1", false}, {"250.1.2.3", false}, // reserved
		{"192.0.2.10", false}, {"198.51.100.7", false}, {"203.0.113.9", false}, // documentation v4
		{"2001:db8::1", false}, {"3fff::1", false}, // documentation v6
		{"64:ff9b::a00:1", false}, {"64:ff9b::808:808", false}, {"64:ff9b:1::1", false}, // NAT64
		{"2002:a00:1::1", false}, {"2002:808:808::1", false}, // 6to4
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", false}, // Teredo
		{"2001:2::1", false}, {"100::1", false}, {"192.0.0.8", false}, {"192.88.99.1", false},
		{"ff02::1", false}, {"fec0::1", false}, {"::a00:1", false}, {"4000::1", false}, {"5f00::1", false},
	} {
		if got := publicAddr(netip.MustParseAddr(tc.ip)); got != tc.public {
			t.Errorf("publicAddr(%s) = %v, want %v", tc.ip, got, tc.public)
		}
	}
	strict, dev := addressPolicy{}, addressPolicy{allowLoopback: true}
	for _, addr := range []string{"127.0.0.1:443", "[::1]:443", "[64:ff9b::7f00:1]:443", "198.18.0.1:443"} {
		if err := strict.control("tcp", addr, nil); err == nil {
			t.Errorf("the public-only policy let %s through", addr)
		}
	}
	if err := strict.control("tcp", "8.8.8.8:443", nil); err != nil {
		t.Errorf("the public-only policy refused a public address: %v", err)
	}
	if err := dev.control("tcp", "127.0.0.1:443", nil); err != nil {
		t.Errorf("the loopback-issuer policy refused loopback: %v", err)
	}
	if err := dev.control("tcp", "10.0.0.1:443", nil); err == nil {
		t.Error("the loopback-issuer policy let a private address through")
	}
}
