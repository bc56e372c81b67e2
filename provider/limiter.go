package provider

import (
	"sync"
	"time"
)

// loginLimiter counts failed logins per account and per client IP in a fixed
// window, so password guessing is slowed whichever of the two an attacker
// varies. It is per process: with several replicas each enforces its own
// limit (README, "Scaling out").
type loginLimiter struct {
	perAccount, perIP int
	window            time.Duration

	mu      sync.Mutex
	windows map[string]*failWindow
}

type failWindow struct {
	start time.Time
	count int
}

func newLoginLimiter(perAccount, perIP int, window time.Duration) *loginLimiter {
	return &loginLimiter{perAccount: perAccount, perIP: perIP, window: window, windows: map[string]*failWindow{}}
}

// blocked reports whether a login for account from ip must be refused at
// now, and when the caller may try again.
func (l *loginLimiter) blocked(account, ip string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range []struct {
		key   string
		limit int
	}{{"a:" + account, l.perAccount}, {"i:" + ip, l.perIP}} {
		w := l.windows[k.key]
		if w != nil && now.Sub(w.start) < l.window && w.count >= k.limit {
			return true, w.start.Add(l.window).Sub(now)
		}
	}
	return false, 0
}

// fail records a failed login.
func (l *loginLimiter) fail(account, ip string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.windows) > 100_000 {
		for k, w := range l.windows {
			if now.Sub(w.start) >= l.window {
				delete(l.windows, k)
			}
		}
	}
	for _, key := range []string{"a:" + account, "i:" + ip} {
		w := l.windows[key]
		if w == nil || now.Sub(w.start) >= l.window {
			w = &failWindow{start: now}
			l.windows[key] = w
		}
		w.count++
	}
}

// succeed clears the account's failures (not the IP's: one correct password
// must not reset a guessing run against other accounts).
func (l *loginLimiter) succeed(account string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.windows, "a:"+account)
}
