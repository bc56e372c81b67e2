package provider

import (
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
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

// blockingTransport answers every request only once release is closed,
// counting how many requests are inside it at once. It stands in for the
// network, so the test sees exactly what the fetcher lets through.
type blockingTransport struct {
	release chan struct{}

	mu               sync.Mutex
	inFlight, maxIn  int
	started, answers int
}

func (b *blockingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	b.mu.Lock()
	b.inFlight++
	b.started++
	b.maxIn = max(b.maxIn, b.inFlight)
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		b.inFlight--
		b.mu.Unlock()
	}()
	select {
	case <-b.release:
	case <-r.Context().Done():
		return nil, r.Context().Err()
	}
	b.mu.Lock()
	b.answers++
	b.mu.Unlock()
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(strings.NewReader(`{"keys":[]}`)), Request: r}, nil
}

func (b *blockingTransport) counts() (inFlight, maxIn, started, answers int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.inFlight, b.maxIn, b.started, b.answers
}

// TestFetchConcurrencyLimit: at most maxConcurrentFetches outbound fetches
// (client ID metadata documents, jwks_uri) run at once, whatever the
// number of distinct URLs asked for; the ones over the limit wait for a
// slot (within the fetch's own deadline) and complete once the fetches
// ahead of them do. The test runs in a synctest bubble: synctest.Wait
// returns when every fetch is blocked (in the transport, or waiting for a
// slot), so "how many are in flight" is read at a point where nothing can
// still move, not after a sleep.
func TestFetchConcurrencyLimit(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const n = 3*maxConcurrentFetches + 1
		tr := &blockingTransport{release: make(chan struct{})}
		f := newFetcher(&http.Client{Transport: tr}, time.Now)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				_, errs[i] = f.get(t.Context(), fmt.Sprintf("https://client%d.example/doc.json", i), 1024)
			})
		}
		synctest.Wait()
		if in, _, started, _ := tr.counts(); in != maxConcurrentFetches || started != maxConcurrentFetches {
			t.Fatalf("with %d fetches asked for and none answered, %d are in flight (%d started); want exactly %d", n, in, started, maxConcurrentFetches)
		}
		close(tr.release)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("fetch %d waited for a slot and failed: %v", i, err)
			}
		}
		if _, maxIn, started, answers := tr.counts(); maxIn != maxConcurrentFetches || started != n || answers != n {
			t.Fatalf("at most %d in flight at once, %d started, %d answered; want at most %d, all %d", maxIn, started, answers, maxConcurrentFetches, n)
		}
	})
}
