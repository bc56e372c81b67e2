package provider

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"
)

// job is one periodic piece of background work. run gets the time of the
// tick from Options.Now, so tests drive it with their fake clock.
type job struct {
	name string
	run  func(ctx context.Context, now time.Time) error
}

// jobs is the list of periodic jobs RunJanitor runs on every tick, in order.
// A new job is one more entry here; each runs even when an earlier one
// failed or panicked.
func (s *Server) jobs() []job {
	return []job{
		{"delete expired records", s.deleteExpired},
		{"delete old signing keys", s.deleteOldSigningKeys},
		{"delete unused self-registered clients", s.deleteStaleRegistrations},
		{"delete old audit events", s.pruneAudit},
		{"count clients and live grants", s.updateCounts}, // also once at start (RunJanitor)
	}
}

// RunJanitor runs the periodic jobs every Options.JanitorInterval until ctx
// is done. It takes its clock and interval from the server's resolved
// options, so whoever starts it (cmd/authz serve, a test) cannot hand it a
// half-configured copy.
func (s *Server) RunJanitor(ctx context.Context) {
	// The gauges at once: otherwise a restarted replica reports 0 clients
	// and 0 live grants for a whole interval (5 minutes by default). The
	// deleting jobs wait for the first tick, so replicas restarted
	// together do not all sweep at once.
	s.runJob(ctx, job{"count clients and live grants", s.updateCounts})
	t := time.NewTicker(s.opts.JanitorInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.RunJobs(ctx)
		}
	}
}

// RunJobs runs every periodic job once, now. A job that fails is logged and
// tried again at the next tick; a job that panics is recovered and logged
// with its stack, so background work can never take the server down.
func (s *Server) RunJobs(ctx context.Context) {
	for _, j := range s.jobs() {
		if ctx.Err() != nil {
			return
		}
		s.runJob(ctx, j)
	}
	s.log.Debug("janitor: periodic jobs done")
}

func (s *Server) runJob(ctx context.Context, j job) {
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("background job panicked; it runs again at the next tick", "job", j.name, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
		}
	}()
	if err := j.run(ctx, s.opts.Now()); err != nil {
		s.log.Warn("background job failed; it runs again at the next tick", "job", j.name, "cause", err)
	}
}

func (s *Server) deleteExpired(ctx context.Context, now time.Time) error {
	n, err := s.store.DeleteExpired(ctx, now)
	if err != nil {
		return err
	}
	s.log.Debug("deleted expired records", "count", n)
	return nil
}

// retiredKeyRetention is how long a retired signing key is kept after it
// stopped being published. Nothing verifies with it any more; keeping it
// a day longer covers a replica configured with a longer access-token
// lifetime, and lets `authz keys list` show recent history.
const retiredKeyRetention = 24 * time.Hour

// deleteOldSigningKeys removes keys retired so long ago that no token they
// signed can still be valid: retired before now − (access-token lifetime +
// publishing leeway + retention). Keys still published are never touched.
func (s *Server) deleteOldSigningKeys(ctx context.Context, now time.Time) error {
	return s.store.DeleteSigningKeysRetiredBefore(ctx, now.Add(-(s.opts.AccessTokenTTL + publishLeeway + retiredKeyRetention)))
}
