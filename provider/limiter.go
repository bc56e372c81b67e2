package provider

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"time"

	"github.com/authzd/authz/provider/store"
)

// loginLimiter counts failed logins per (account, client IP) and per client
// IP in fixed windows kept in the store, so every replica shares them. A
// guessing run against one account from one address stops after
// perAccount failures, without locking the real user out from anywhere else;
// one address guessing many accounts stops after perIP failures.
type loginLimiter struct {
	st                store.Store
	log               *slog.Logger
	perAccount, perIP int
	window            time.Duration
}

// accountPrefix starts every counter key of one account. The name is
// hashed so that no username, whatever it contains, can extend another's
// prefix, and so the counter table holds no usernames.
func accountPrefix(account string) string {
	h := sha256.Sum256([]byte(account))
	return "login:a:" + hex.EncodeToString(h[:16]) + ":"
}

func ipLoginKey(ip string) string { return "login:ip:" + ip }

// loginCounter is one count a sign-in attempt adds to: per (account,
// address block) or per address block, with its limit.
type loginCounter struct {
	key, net string
	limit    int
	account  bool
}

// counters are the counts an attempt for account from the blocks nets (the
// client address's limitNets) adds to: the account's first, then the
// addresses'.
func (l *loginLimiter) counters(account string, nets []limitNet) []loginCounter {
	var acc, ips []loginCounter
	for _, n := range nets {
		acc = append(acc, loginCounter{key: accountPrefix(account) + n.key, net: n.key, limit: l.perAccount * n.factor, account: true})
		ips = append(ips, loginCounter{key: ipLoginKey(n.key), net: n.key, limit: l.perIP * n.factor})
	}
	return append(acc, ips...)
}

// attempt counts a sign-in attempt for account from the blocks nets against
// every limit before its password is checked, each count one atomic store
// step (house rule 11). Checking the counts first and counting a failure
// afterwards let every concurrent guess pass the check: 24 parallel guesses
// were all checked against a limit of 3. When a limit is already reached
// the attempt is refused with how long to wait, and its counts are taken
// back (a refusal is not a failure). Otherwise the caller must end the
// attempt with failed, succeeded or abandon.
func (l *loginLimiter) attempt(ctx context.Context, account string, nets []limitNet, now time.Time) (*loginAttempt, time.Duration, error) {
	a := &loginAttempt{l: l, account: account, now: now}
	counters := l.counters(account, nets)
	for i, k := range counters {
		c, err := l.st.HitCounter(ctx, k.key, l.window, now)
		if err != nil {
			a.abandon(ctx)
			return nil, 0, err
		}
		a.hits = append(a.hits, loginHit{k, c})
		if c.Count <= k.limit {
			continue
		}
		a.abandon(ctx)
		// Retry-After is the later of the lockouts: the others' too, when
		// they are over their limits as well.
		wait := c.ExpiresAt.Sub(now)
		for _, rest := range counters[i+1:] {
			if c, err := l.st.GetCounter(ctx, rest.key, now); err == nil && c.Count >= rest.limit {
				wait = max(wait, c.ExpiresAt.Sub(now))
			}
		}
		return nil, wait, nil
	}
	return a, 0, nil
}

// loginAttempt is a sign-in attempt counted against every limit.
type loginAttempt struct {
	l       *loginLimiter
	account string
	now     time.Time
	hits    []loginHit // the counts with this attempt in them
}

type loginHit struct {
	loginCounter
	c store.Counter
}

// failed keeps the attempt counted as a failure. The failure that reaches
// a limit is logged as a lockout (account and address, never the
// password), and locked says it did.
func (a *loginAttempt) failed() (locked bool) {
	for _, h := range a.hits {
		if h.c.Count != h.limit {
			continue
		}
		locked = true
		if h.account {
			a.l.log.Warn("sign-in locked for an account from one address: too many failed attempts",
				"account", a.account, "ip", h.net, "until", h.c.ExpiresAt)
		} else {
			a.l.log.Warn("sign-in locked for an address: too many failed attempts", "ip", h.net, "until", h.c.ExpiresAt)
		}
	}
	return locked
}

// succeeded clears the account's failures, from every address, and takes
// back the attempt's count at its addresses (not the addresses' other
// failures: one correct password must not reset a guessing run against
// other accounts).
func (a *loginAttempt) succeeded(ctx context.Context) error {
	if _, err := a.l.st.DeleteCounters(ctx, accountPrefix(a.account)); err != nil {
		return err
	}
	for _, h := range a.hits {
		if !h.account {
			if err := a.l.st.UnhitCounter(ctx, h.key, a.now); err != nil {
				return err
			}
		}
	}
	return nil
}

// abandon takes back the attempt's counts when its password could not be
// checked (an outage, the client gone): it was neither a success nor a
// failure. The caller's context may be cancelled by then; the counts are
// taken back regardless (the store bounds each call). A count that cannot
// be taken back stays, as a failure would.
func (a *loginAttempt) abandon(ctx context.Context) {
	ctx = context.WithoutCancel(ctx)
	for _, h := range a.hits {
		if err := a.l.st.UnhitCounter(ctx, h.key, a.now); err != nil {
			a.l.log.Warn("taking back a sign-in attempt's count failed", "cause", err)
		}
	}
}

// UnlockUser clears the failed-login counts of username from every address
// (`authz user unlock`). It reports how many counters it removed.
func UnlockUser(ctx context.Context, st store.Store, username string) (int64, error) {
	return st.DeleteCounters(ctx, accountPrefix(username))
}
