package provider

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// TestRevalidatorOneRefreshPerURL: however many requests holding a stale
// copy ask at once, one refresh of a URL runs; while it runs the copy
// serves (for at most staleWhileRevalidate); its result is recorded as
// revalidate.go says: a transient failure keeps the copy serving at once,
// a definitive one ends it (and tells the server), a success forgets the
// URL. Runs in a synctest bubble: synctest.Wait returns when the refresh
// is blocked, so "how many run" is read where nothing can still move.
func TestRevalidatorOneRefreshPerURL(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var ended []string
		r := newRevalidator(t.Context(), func(string, ...any) {}, func(u string) { ended = append(ended, u) })
		const uri = "https://client.example/doc.json"
		now := time.Now()
		if r.serveStale(uri, now) || !r.usable(uri) {
			t.Fatal("nothing known of the URL: the copy must not serve at once, and must be usable")
		}
		var calls atomic.Int32
		gate := make(chan error)
		refresh := func(ctx context.Context) error { calls.Add(1); return <-gate }
		var ran atomic.Int32
		var wg sync.WaitGroup
		for range 10 {
			wg.Go(func() {
				if ok, _ := r.run(t.Context(), uri, now, false, refresh); ok {
					ran.Add(1)
				}
			})
		}
		wg.Wait()
		synctest.Wait()
		if ran.Load() != 1 || calls.Load() != 1 {
			t.Fatalf("10 requests asked: %d refreshes started, %d running; want 1", ran.Load(), calls.Load())
		}
		if !r.serveStale(uri, now.Add(staleWhileRevalidate-time.Second)) {
			t.Fatal("a refresh is running: the copy must serve at once")
		}
		if r.serveStale(uri, now.Add(staleWhileRevalidate)) {
			t.Fatal("a refresh running for staleWhileRevalidate must not let the copy serve any more")
		}
		if ok, _ := r.run(t.Context(), uri, now, true, refresh); ok {
			t.Fatal("a waiting refresh started while one runs")
		}

		gate <- &unreachable{errors.New("answered 503")}
		r.wg.Wait()
		if !r.serveStale(uri, now.Add(time.Hour)) || !r.usable(uri) {
			t.Fatal("after a transient failure the copy must serve at once")
		}

		// A refresh whose context ended (a shutdown) says nothing.
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := r.run(ctx, uri, now, true, func(ctx context.Context) error { return &unreachable{ctx.Err()} })
		if err == nil || !r.serveStale(uri, now) {
			t.Fatalf("cancelled refresh: %v; the state must not change", err)
		}

		r.run(t.Context(), uri, now, false, refresh)
		gate <- errors.New("answered 404, not 200")
		r.wg.Wait()
		if r.usable(uri) || r.serveStale(uri, now) || len(ended) != 1 || ended[0] != uri {
			t.Fatalf("after a definitive failure the copy must end (usable %v, ended %q)", r.usable(uri), ended)
		}

		r.run(t.Context(), uri, now, false, refresh)
		gate <- nil
		r.wg.Wait()
		if !r.usable(uri) || r.serveStale(uri, now) {
			t.Fatal("after a success nothing must be remembered of the URL")
		}
	})
}

// TestRevalidatorStopsWithServer: a background refresh is detached from
// the request that started it but runs under the server's context (New's),
// so it stops when the server shuts down, and its cancellation is not
// recorded as the URL's failure.
func TestRevalidatorStopsWithServer(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		srvCtx, shutdown := context.WithCancel(t.Context())
		r := newRevalidator(srvCtx, func(string, ...any) {}, nil)
		const uri = "https://keys.example/jwks.json"
		reqCtx, requestDone := context.WithCancel(t.Context())
		stopped := make(chan error, 1)
		r.run(reqCtx, uri, time.Now(), false, func(ctx context.Context) error {
			<-ctx.Done()
			stopped <- ctx.Err()
			return &unreachable{ctx.Err()}
		})
		requestDone()
		synctest.Wait()
		select {
		case err := <-stopped:
			t.Fatalf("the refresh stopped with its request: %v", err)
		default:
		}
		shutdown()
		r.wg.Wait()
		if err := <-stopped; !errors.Is(err, context.Canceled) {
			t.Fatalf("refresh ended with %v, want the server's cancellation", err)
		}
		if r.serveStale(uri, time.Now()) || !r.usable(uri) {
			t.Fatal("a refresh stopped by shutdown was recorded as the URL's failure")
		}
	})
}
