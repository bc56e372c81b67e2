package provider

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
)

// TestFetchRefusalSaysNothingInternal: why a client metadata document could
// not be fetched reaches whoever named its URL (a page, invalid_client),
// so it never carries the address a name resolved to here or the resolver
// this server asks: both would tell anyone this server's view of internal
// names.
func TestFetchRefusalSaysNothingInternal(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name   string
		err    error
		want   string
		secret string
	}{
		{"refused address", fmt.Errorf("%w: dial tcp: %w to 10.1.2.3: not a public address", errFetch, errRefusedAddress),
			"its host is not a public internet address", "10.1.2.3"},
		{"no such host", fmt.Errorf("%w: %w", errFetch, &net.DNSError{Err: "no such host", Name: "db.internal", Server: "10.255.255.53:53", IsNotFound: true}),
			"its host name does not exist", "10.255.255.53"},
		{"resolver failure", fmt.Errorf("%w: %w", errFetch, &net.DNSError{Err: "server misbehaving", Name: "x.example", Server: "10.255.255.53:53"}),
			"its host name could not be resolved", "10.255.255.53"},
		{"a status", fmt.Errorf("%w: %w", errFetch, errors.New("answered 404, not 200")), "answered 404, not 200", "fetch failed"},
	} {
		got := fetchRefusal(c.err)
		if got != c.want || strings.Contains(got, c.secret) {
			t.Errorf("%s: fetchRefusal = %q, want %q (never %q)", c.name, got, c.want, c.secret)
		}
	}
}
