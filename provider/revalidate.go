package provider

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Stale-while-revalidate (RFC 5861 §3) for the two stored copies this
// server refreshes from URLs anyone chooses: a client's key set fetched
// from its jwks_uri, and a metadata-document client row. A request that
// holds a usable stale copy answers with it at once (but for the first,
// below) and leaves the refresh to one fetch per URL; without this, a host
// that hangs after the copy's lifetime made requests wait the whole
// fetchTimeout, once per fetchUnreachableTTL, and a client with a
// 10-second HTTP timeout failed a request that had a good copy in hand.
//
// The very first request after a copy's lifetime waits for the refresh
// (with a fetch slot only if one is free at once), so a client that
// changed its document (a new redirect URI) or rotated its keys is seen
// as it is now, exactly when the copy's lifetime says; a transient failure
// of that refresh falls back to the copy (stale-if-error, RFC 5861 §4).
// A stale copy (past its lifetime, within staleIfError) answers at once
// instead, with at most one refresh per URL running at a time:
//   - while a refresh of its URL is running (another request waits for
//     it), for at most staleWhileRevalidate: many requests for one client
//     never queue behind one slow fetch;
//   - while the URL's host is known to be failing (the last refresh failed
//     transiently): the request starts a background refresh if none runs.
//     A host that hangs thus costs one waiting request per outage (per
//     process), not one per fetchUnreachableTTL.
//
// The refresh's result is applied as for a request: a good document or key
// set replaces the copy; a definitive failure (404, an invalid document)
// ends the copy at once, so the next request is invalid_client; a
// transient failure leaves it serving until staleIfError runs out. Past
// staleIfError, or without a copy, a request waits for the fetch.

// staleWhileRevalidate bounds how long past a refresh's start its stale
// copy serves requests while it runs (RFC 5861 §3's window, a bound
// separate from staleIfError): the longest a refresh can take, a slot
// wait and a fetch. It is a safety bound, not a policy: a refresh that
// somehow outlived it would otherwise let a copy serve without anything
// known about its host.
const staleWhileRevalidate = fetchSlotWait + fetchTimeout

// revalidateEntries bounds the per-URL state an open registration endpoint
// can make the revalidator hold.
const revalidateEntries = 4096

// revalidator runs the refreshes of stale copies, at most one per URL at a
// time, and remembers per URL whether the last one failed, transiently
// (the copy keeps serving) or definitively (the copy has ended).
type revalidator struct {
	// ctx is the server's lifetime (New's ctx): background refreshes are
	// detached from the request that started them, which may finish
	// first, but stop when the server shuts down.
	ctx context.Context
	log func(msg string, args ...any)
	// ended is told a URL whose copy a refresh ended, once that is
	// recorded: the server drops it from its client cache, which would
	// otherwise hand out the ended copy for up to ClientCacheTTL.
	ended func(uri string)

	mu    sync.Mutex
	state map[string]*revalidation
	wg    sync.WaitGroup // background refreshes (Server.WaitBackground)
}

type revalidation struct {
	running bool
	started time.Time // of the running refresh
	failing bool      // the last refresh failed transiently
	ended   bool      // the last refresh failed definitively: the copy is not used
}

func newRevalidator(ctx context.Context, log func(string, ...any), ended func(string)) *revalidator {
	return &revalidator{ctx: ctx, log: log, ended: ended, state: map[string]*revalidation{}}
}

// entry returns uri's state, creating it; r.mu is held.
func (r *revalidator) entry(uri string) *revalidation {
	e := r.state[uri]
	if e == nil {
		if len(r.state) >= revalidateEntries {
			// Dropping idle entries forgets at worst that a host fails
			// (one request waits for it again) or that a copy ended (its
			// next use waits for a refresh, which the fetcher answers
			// with the remembered failure, or asks again: the copy does
			// not serve meanwhile).
			for k, v := range r.state {
				if !v.running {
					delete(r.state, k)
				}
			}
		}
		e = &revalidation{}
		r.state[uri] = e
	}
	return e
}

// usable reports whether a stale copy of uri may still be used at all:
// not after a refresh found it gone or invalid.
func (r *revalidator) usable(uri string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.state[uri]
	return e == nil || !e.ended
}

// serveStale reports whether a request holding a stale copy of uri
// (within staleIfError) answers with it at once (see the top of this file).
func (r *revalidator) serveStale(uri string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.state[uri]
	if e == nil || e.ended {
		return false
	}
	return e.failing || (e.running && now.Sub(e.started) < staleWhileRevalidate)
}

// run runs refresh for uri unless one is already running (ran false). With
// wait it runs in the caller, under ctx; else in the background under the
// server's context, and run returns at once.
func (r *revalidator) run(ctx context.Context, uri string, now time.Time, wait bool, refresh func(context.Context) error) (ran bool, err error) {
	r.mu.Lock()
	e := r.entry(uri)
	if e.running {
		r.mu.Unlock()
		return false, nil
	}
	e.running, e.started = true, now
	r.mu.Unlock()
	if wait {
		err = refresh(ctx)
		r.done(uri, err, ctx.Err() != nil)
		return true, err
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		err := refresh(r.ctx)
		if err != nil && !errors.Is(err, errFetchBusy) {
			r.log("refreshing a stale copy in the background failed", "url", uri, "cause", err)
		}
		r.done(uri, err, r.ctx.Err() != nil)
	}()
	return true, nil
}

// done records a refresh's result. A refresh whose context ended (a client
// that hung up, a server shutting down) or that found no free slot says
// nothing about the URL.
func (r *revalidator) done(uri string, err error, cancelled bool) {
	r.mu.Lock()
	e := r.entry(uri)
	e.running = false
	ended := false
	switch {
	case err == nil:
		delete(r.state, uri)
	case cancelled || errors.Is(err, errFetchBusy):
	case retryableFetch(err):
		e.failing = true
	default:
		e.failing, e.ended, ended = false, true, true
	}
	r.mu.Unlock()
	if ended && r.ended != nil {
		r.ended(uri)
	}
}

// succeeded forgets what is known of uri after a fresh copy was fetched
// outside run (a request without a usable copy).
func (r *revalidator) succeeded(uri string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.state[uri]; e != nil && e.running {
		e.failing, e.ended = false, false
		return
	}
	delete(r.state, uri)
}

// useStale decides, for a request holding a usable stale copy of uri
// (within staleIfError, not ended), between answering with that copy
// (useCopy) and the result of a refresh made now (err; nil when refresh
// stored a fresh copy), as the top of this file says. refresh fetches
// with s.fetch.get when background (it may wait for a slot), else with
// s.fetch.tryGet. A transient failure of a waited-for refresh is logged
// with msg and args.
func (s *Server) useStale(ctx context.Context, uri string, now time.Time,
	refresh func(ctx context.Context, background bool) error, msg string, args ...any) (useCopy bool, err error) {
	if s.revalidate.serveStale(uri, now) {
		_, _ = s.revalidate.run(ctx, uri, now, false, func(ctx context.Context) error { return refresh(ctx, true) })
		return true, nil
	}
	ran, err := s.revalidate.run(ctx, uri, now, true, func(ctx context.Context) error { return refresh(ctx, false) })
	switch {
	case !ran:
		return true, nil // another request's refresh is running
	case retryableFetch(err):
		if !errors.Is(err, errFetchBusy) {
			s.log.WarnContext(ctx, msg, append(args, "cause", err)...)
		}
		return true, nil
	}
	return false, err
}

// WaitBackground waits for the background refreshes of stale client
// documents and key sets (started by requests) to end. They stop early
// once the ctx given to New is done; a server shutting down calls this
// after its HTTP server has stopped and before closing the store, which a
// refresh writes to.
func (s *Server) WaitBackground() { s.revalidate.wg.Wait() }
