package provider

import (
	"net"
	"testing"
)

func TestPublicIP(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		ip     string
		public bool
	}{
		{"8.8.8.8", true}, {"2001:4860:4860::8888", true}, {"93.184.216.34", true},
		{"127.0.0.1", false}, {"::1", false}, {"10.1.2.3", false}, {"172.16.0.1", false}, {"192.168.1.1", false},
		{"169.254.169.254", false}, {"fe80::1", false}, {"fc00::1", false}, {"100.64.0.1", false},
		{"0.0.0.0", false}, {"::", false}, {"224.0.0.1", false}, {"255.255.255.255", false},
		{"::ffff:127.0.0.1", false}, {"::ffff:10.0.0.1", false},
	} {
		if got := publicIP(net.ParseIP(tc.ip)); got != tc.public {
			t.Errorf("publicIP(%s) = %v, want %v", tc.ip, got, tc.public)
		}
	}
	if err := refusePrivate("tcp", "127.0.0.1:443", nil); err == nil {
		t.Error("refusePrivate let a loopback dial through")
	}
	if err := refusePrivate("tcp", "8.8.8.8:443", nil); err != nil {
		t.Errorf("refusePrivate refused a public address: %v", err)
	}
}
