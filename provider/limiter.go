package provider

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
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

// blocked reports whether a login for account from ip must be refused at
// now, and how long until the caller may try again.
func (l *loginLimiter) blocked(ctx context.Context, account, ip string, now time.Time) (bool, time.Duration, error) {
	var wait time.Duration
	for _, k := range []struct {
		key   string
		limit int
	}{{accountPrefix(account) + ip, l.perAccount}, {ipLoginKey(ip), l.perIP}} {
		c, err := l.st.GetCounter(ctx, k.key, now)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return false, 0, err
		}
		if c.Count >= k.limit {
			wait = max(wait, c.ExpiresAt.Sub(now))
		}
	}
	return wait > 0, wait, nil
}

// fail records a failed login; the failure that reaches a limit is logged
// as a lockout (account and address, never the password), and locked says
// it did.
func (l *loginLimiter) fail(ctx context.Context, account, ip string, now time.Time) (locked bool, err error) {
	c, err := l.st.HitCounter(ctx, accountPrefix(account)+ip, l.window, now)
	if err != nil {
		return false, err
	}
	if c.Count == l.perAccount {
		locked = true
		l.log.Warn("sign-in locked for an account from one address: too many failed attempts",
			"account", account, "ip", ip, "until", c.ExpiresAt)
	}
	c, err = l.st.HitCounter(ctx, ipLoginKey(ip), l.window, now)
	if err != nil {
		return false, err
	}
	if c.Count == l.perIP {
		locked = true
		l.log.Warn("sign-in locked for an address: too many failed attempts", "ip", ip, "until", c.ExpiresAt)
	}
	return locked, nil
}

// succeed clears the account's failures, from every address (not the
// address's own count: one correct password must not reset a guessing run
// against other accounts).
func (l *loginLimiter) succeed(ctx context.Context, account string) error {
	_, err := l.st.DeleteCounters(ctx, accountPrefix(account))
	return err
}

// UnlockUser clears the failed-login counts of username from every address
// (`authz user unlock`). It reports how many counters it removed.
func UnlockUser(ctx context.Context, st store.Store, username string) (int64, error) {
	return st.DeleteCounters(ctx, accountPrefix(username))
}
