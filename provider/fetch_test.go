package provider

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/authzd/authz/provider/store"
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

// hostTransport answers a request at once unless its host (as fetchHost
// keys it) has a gate, and then only once the gate is closed or the
// request's context ends. It counts requests per host.
type hostTransport struct {
	gate map[string]chan struct{}

	mu                          sync.Mutex
	inFlight, started, answered map[string]int
}

func newHostTransport(gated ...string) *hostTransport {
	h := &hostTransport{gate: map[string]chan struct{}{}, inFlight: map[string]int{}, started: map[string]int{}, answered: map[string]int{}}
	for _, host := range gated {
		h.gate[host] = make(chan struct{})
	}
	return h
}

func (h *hostTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	host := fetchHost(r.URL.String())
	h.mu.Lock()
	h.started[host]++
	h.inFlight[host]++
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		h.inFlight[host]--
		h.mu.Unlock()
	}()
	if g := h.gate[host]; g != nil {
		select {
		case <-g:
		case <-r.Context().Done():
			return nil, r.Context().Err()
		}
	}
	h.mu.Lock()
	h.answered[host]++
	h.mu.Unlock()
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(strings.NewReader(`{"keys":[]}`)), Request: r}, nil
}

func (h *hostTransport) counts(host string) (inFlight, started, answered int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.inFlight[host], h.started[host], h.answered[host]
}

// flood starts n fetches of distinct URLs on each of hosts and returns a
// wait for them and their errors.
func flood(t *testing.T, f *fetcher, n int, hosts ...string) (wait func() []error) {
	var wg sync.WaitGroup
	errs := make([]error, n*len(hosts))
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = f.get(t.Context(), fmt.Sprintf("https://%s/flood/%d.json", hosts[i%len(hosts)], i), 1024)
		})
	}
	return func() []error { wg.Wait(); return errs }
}

// TestFetchBusyIsNotRemembered: a fetch that finds every slot held by
// others' slow fetches for fetchSlotWait is errFetchBusy (answered 503 by
// the endpoints), the URL is never asked for, and the failure is not
// remembered as the URL's: once the slots free, the same URL is fetched
// at once, not fetchFailureTTL later (a flood of slow hosts must not
// outlast itself as failures of the clients fetched during it).
func TestFetchBusyIsNotRemembered(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		tr := newHostTransport("slow1.example", "slow2.example")
		f := newFetcher(&http.Client{Transport: tr}, time.Now)
		done := flood(t, f, maxFetchesPerHost, "slow1.example", "slow2.example")
		synctest.Wait()
		if in1, _, _ := tr.counts("slow1.example"); in1 != maxFetchesPerHost {
			t.Fatalf("%d fetches of slow1 in flight, want %d", in1, maxFetchesPerHost)
		}
		const good = "https://good.example/client.json"
		_, err := f.get(t.Context(), good, 1024)
		if !errors.Is(err, errFetchBusy) {
			t.Fatalf("with every slot held, a fetch of another host: %v, want errFetchBusy", err)
		}
		if _, started, _ := tr.counts("good.example"); started != 0 {
			t.Fatalf("the refused fetch reached the network (%d requests)", started)
		}
		close(tr.gate["slow1.example"])
		close(tr.gate["slow2.example"])
		for i, err := range done() {
			if err != nil {
				t.Errorf("flood fetch %d: %v", i, err)
			}
		}
		if _, err := f.get(t.Context(), good, 1024); err != nil {
			t.Fatalf("right after the slots freed, the URL refused for want of a slot still fails: %v", err)
		}
		if _, _, answered := tr.counts("good.example"); answered != 1 {
			t.Fatalf("good.example answered %d times, want 1", answered)
		}
	})
}

// TestFetchPerHostShare: one host, however many URLs it publishes and
// however its name or address is spelled, holds at most maxFetchesPerHost
// slots; a fetch for another host proceeds while that host's fetches
// hang, and the flood's own fetches all complete once it answers.
func TestFetchPerHostShare(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, host string
		spellings  []string
	}{
		{"name", "slow.example", []string{"slow.example", "SLOW.example.", "slow.example:8443"}},
		{"IPv6 address", "2001:db8::1", []string{"[2001:db8::1]", "[2001:db8:0::1]:8443", "[2001:0db8::0001]"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				tr := newHostTransport(tc.host)
				f := newFetcher(&http.Client{Transport: tr}, time.Now)
				done := flood(t, f, maxConcurrentFetches, tc.spellings...)
				synctest.Wait()
				if in, started, _ := tr.counts(tc.host); in != maxFetchesPerHost || started != maxFetchesPerHost {
					t.Fatalf("%s has %d fetches in flight (%d started), want %d", tc.host, in, started, maxFetchesPerHost)
				}
				if _, err := f.get(t.Context(), "https://other.example/client.json", 1024); err != nil {
					t.Fatalf("a fetch for another host during one host's flood: %v", err)
				}
				if in, _, answered := tr.counts(tc.host); in != maxFetchesPerHost || answered != 0 {
					t.Fatalf("%s: %d in flight, %d answered when the other host was fetched; want %d, 0", tc.host, in, answered, maxFetchesPerHost)
				}
				close(tr.gate[tc.host])
				for i, err := range done() {
					if err != nil {
						t.Errorf("flood fetch %d, queued behind its host's share: %v", i, err)
					}
				}
				f.mu.Lock()
				left := len(f.hosts)
				f.mu.Unlock()
				if left != 0 {
					t.Fatalf("%d per-host entries left after every fetch ended", left)
				}
			})
		})
	}
}

// TestFetchCallerGoneIsNotRemembered: a fetch whose caller stops waiting
// (a client that hung up) is not remembered as the URL's failure, so
// nobody can make a good document "fail" for others by asking for it and
// hanging up.
func TestFetchCallerGoneIsNotRemembered(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		tr := newHostTransport("docs.example")
		f := newFetcher(&http.Client{Transport: tr}, time.Now)
		const uri = "https://docs.example/client.json"
		ctx, cancel := context.WithCancel(t.Context())
		var err error
		var wg sync.WaitGroup
		wg.Go(func() { _, err = f.get(ctx, uri, 1024) })
		synctest.Wait()
		cancel()
		wg.Wait()
		if err == nil {
			t.Fatal("a fetch whose caller went away succeeded")
		}
		close(tr.gate["docs.example"])
		if _, err := f.get(t.Context(), uri, 1024); err != nil {
			t.Fatalf("after a caller hung up, the URL is refused for others: %v", err)
		}
	})
}

// TestFetchTryGetDoesNotWait: tryGet (a refresh by a caller holding a
// usable copy) takes a free slot, and with none free is errFetchBusy at
// once (no time passes in the bubble), never queueing behind a flood.
func TestFetchTryGetDoesNotWait(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		tr := newHostTransport("slow1.example", "slow2.example")
		f := newFetcher(&http.Client{Transport: tr}, time.Now)
		if _, err := f.tryGet(t.Context(), "https://keys.example/jwks.json", 1024); err != nil {
			t.Fatalf("tryGet with slots free: %v", err)
		}
		done := flood(t, f, maxFetchesPerHost, "slow1.example", "slow2.example")
		synctest.Wait()
		start := time.Now()
		_, err := f.tryGet(t.Context(), "https://keys.example/jwks.json", 1024)
		if !errors.Is(err, errFetchBusy) || time.Since(start) != 0 {
			t.Fatalf("tryGet with every slot held: %v after %s, want errFetchBusy at once", err, time.Since(start))
		}
		close(tr.gate["slow1.example"])
		close(tr.gate["slow2.example"])
		done()
	})
}

// TestFetchFailureClass: a failed fetch is transient (errFetchUnreachable,
// an outage-class error answered 503) when the URL's host could not be
// reached or said "not now", and definitive (the client's fault, answered
// invalid_client) when it answered and the answer is bad, or when the
// address policy refused the address. Real local servers stand in for
// the hosts; only the timeout runs on a transport, in a synctest bubble,
// so no test waits for the fetch deadline.
func TestFetchFailureClass(t *testing.T) {
	t.Parallel()
	statuses := map[string]int{"/500": 500, "/502": 502, "/503": 503, "/504": 504, "/429": 429, "/408": 408,
		"/404": 404, "/410": 410, "/403": 403, "/400": 400, "/401": 401, "/302": 302}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			_, _ = w.Write([]byte(strings.Repeat("x", 2048)))
		case "/cut":
			// A connection closed in the middle of the answer.
			w.Header().Set("Content-Length", "1000")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte(`{"keys":`))
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				_ = conn.Close()
			}
		case "/reset":
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				_ = conn.Close()
			}
		default:
			if code, ok := statuses[r.URL.Path]; ok {
				if code == 302 {
					w.Header().Set("Location", "/ok")
				}
				w.WriteHeader(code)
				return
			}
			_, _ = w.Write([]byte(`{"keys":[]}`))
		}
	}))
	defer srv.Close()
	tlsSrv := httptest.NewTLSServer(http.NotFoundHandler())
	defer tlsSrv.Close()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusedAddr := closed.Addr().String()
	_ = closed.Close()

	plain := newFetcher(srv.Client(), time.Now)
	guarded := newFetcher(newFetchClient(nil, addressPolicy{}), time.Now) // public addresses only
	for _, tc := range []struct {
		name      string
		f         *fetcher
		uri       string
		transient bool
	}{
		{"500", plain, srv.URL + "/500", true},
		{"502", plain, srv.URL + "/502", true},
		{"503", plain, srv.URL + "/503", true},
		{"504", plain, srv.URL + "/504", true},
		{"429", plain, srv.URL + "/429", true},
		{"408", plain, srv.URL + "/408", true},
		{"connection refused", plain, "http://" + refusedAddr + "/x", true},
		{"connection closed before an answer", plain, srv.URL + "/reset", true},
		{"connection closed mid-body", plain, srv.URL + "/cut", true},
		{"certificate not trusted", plain, tlsSrv.URL + "/x", true},
		{"404", plain, srv.URL + "/404", false},
		{"410", plain, srv.URL + "/410", false},
		{"403", plain, srv.URL + "/403", false},
		{"400", plain, srv.URL + "/400", false},
		{"401", plain, srv.URL + "/401", false},
		{"302", plain, srv.URL + "/302", false},
		{"too large", plain, srv.URL + "/big", false},
		{"address refused by the policy", guarded, srv.URL + "/ok", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.f.get(t.Context(), tc.uri, 1024)
			if err == nil {
				t.Fatal("the fetch succeeded")
			}
			if !errors.Is(err, errFetch) {
				t.Errorf("%v is not marked as a fetch failure", err)
			}
			if got := errors.Is(err, errFetchUnreachable); got != tc.transient {
				t.Errorf("transient = %v, want %v (%v)", got, tc.transient, err)
			}
			if got := errors.Is(err, store.ErrUnavailable); got != tc.transient {
				t.Errorf("answered as an outage (503) = %v, want %v (%v)", got, tc.transient, err)
			}
			if got := retryableFetch(err); got != tc.transient {
				t.Errorf("a stored copy may serve = %v, want %v", got, tc.transient)
			}
		})
	}

	t.Run("timeout", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := newFetcher(&http.Client{Transport: &blockingTransport{release: make(chan struct{})}}, time.Now)
			_, err := f.get(t.Context(), "https://slow.example/client.json", 1024)
			if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, errFetchUnreachable) {
				t.Fatalf("a fetch that ran out of time: %v, want a transient failure", err)
			}
			mustEqualCause(t, err, causeClientHost)
		})
	})

	t.Run("DNS", func(t *testing.T) {
		for _, tc := range []struct {
			err       *net.DNSError
			transient bool
		}{
			{&net.DNSError{Err: "no such host", Name: "gone.example", IsNotFound: true}, false},
			{&net.DNSError{Err: "i/o timeout", Name: "slow.example", IsTimeout: true}, true},
			{&net.DNSError{Err: "server misbehaving", Name: "flaky.example", IsTemporary: true}, true},
		} {
			err := &url.Error{Op: "Get", URL: "https://" + tc.err.Name + "/c.json", Err: &net.OpError{Op: "dial", Net: "tcp", Err: tc.err}}
			if got := transientNetError(err); got != tc.transient {
				t.Errorf("%v: transient = %v, want %v", err, got, tc.transient)
			}
		}
	})
}

func mustEqualCause(t *testing.T, err error, want string) {
	t.Helper()
	if got := unavailableCause(err); got != want {
		t.Errorf("unavailableCause(%v) = %q, want %q", err, got, want)
	}
}

// TestFetchRememberKeepsClass: a remembered failure keeps its class, so a
// host that was unreachable is still answered as a transient failure (503)
// while remembered, never as the client's fault; it is remembered only
// for fetchUnreachableTTL (the Retry-After the 503 carries), a definitive
// failure for fetchFailureTTL.
func TestFetchRememberKeepsClass(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	status := http.StatusServiceUnavailable
	hits := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		hits++
		w.WriteHeader(status)
		_, _ = w.Write([]byte(`{}`))
	}))
	defer srv.Close()
	set := func(code int) { mu.Lock(); status = code; mu.Unlock() }
	count := func() int { mu.Lock(); defer mu.Unlock(); return hits }
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f := newFetcher(srv.Client(), func() time.Time { return now })

	if _, err := f.get(t.Context(), srv.URL+"/u", 1024); !errors.Is(err, errFetchUnreachable) {
		t.Fatalf("503: %v", err)
	}
	set(http.StatusOK)
	_, err := f.get(t.Context(), srv.URL+"/u", 1024)
	if !errors.Is(err, errFetchUnreachable) || count() != 1 {
		t.Fatalf("while remembered: %v after %d requests, want the transient failure without a request", err, count())
	}
	now = now.Add(fetchUnreachableTTL)
	if _, err := f.get(t.Context(), srv.URL+"/u", 1024); err != nil {
		t.Fatalf("a Retry-After later, with the host back: %v", err)
	}

	set(http.StatusNotFound)
	if _, err := f.get(t.Context(), srv.URL+"/d", 1024); err == nil || errors.Is(err, errFetchUnreachable) {
		t.Fatalf("404: %v, want a definitive failure", err)
	}
	set(http.StatusOK)
	now = now.Add(fetchUnreachableTTL)
	if _, err := f.get(t.Context(), srv.URL+"/d", 1024); err == nil || errors.Is(err, errFetchUnreachable) {
		t.Fatalf("a remembered 404: %v, want the definitive failure", err)
	}
	now = now.Add(fetchFailureTTL)
	if _, err := f.get(t.Context(), srv.URL+"/d", 1024); err != nil {
		t.Fatalf("after fetchFailureTTL: %v", err)
	}
}
