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

// attempt counts a sign-in attempt for account from ip against both limits
// before its password is checked, each count one atomic store step (house
// rule 11). Checking the counts first and counting a failure afterwards let
// every concurrent guess pass the check: 24 parallel guesses were all
// checked against a limit of 3. When either limit is already reached the
// attempt is refused with how long to wait, and its counts are taken back
// (a refusal is not a failure). Otherwise the caller must end the attempt
// with failed, succeeded or abandon.
func (l *loginLimiter) attempt(ctx context.Context, account, ip string, now time.Time) (*loginAttempt, time.Duration, error) {
	a := &loginAttempt{l: l, account: account, ip: ip, now: now}
	var err error
	if a.perAccount, err = l.st.HitCounter(ctx, a.accountKey(), l.window, now); err != nil {
		return nil, 0, err
	}
	if a.perAccount.Count > l.perAccount {
		a.abandon(ctx, true, false)
		wait := a.perAccount.ExpiresAt.Sub(now)
		// Retry-After is the later of both lockouts: the address's too,
		// when it is over its limit as well.
		if c, err := l.st.GetCounter(ctx, ipLoginKey(ip), now); err == nil && c.Count >= l.perIP {
			wait = max(wait, c.ExpiresAt.Sub(now))
		}
		return nil, wait, nil
	}
	if a.perIP, err = l.st.HitCounter(ctx, ipLoginKey(ip), l.window, now); err != nil {
		a.abandon(ctx, true, false)
		return nil, 0, err
	}
	if a.perIP.Count > l.perIP {
		a.abandon(ctx, true, true)
		return nil, a.perIP.ExpiresAt.Sub(now), nil
	}
	return a, 0, nil
}

// loginAttempt is a sign-in attempt counted against both limits.
type loginAttempt struct {
	l                 *loginLimiter
	account, ip       string
	now               time.Time
	perAccount, perIP store.Counter // the counts with this attempt in them
}

func (a *loginAttempt) accountKey() string { return accountPrefix(a.account) + a.ip }

// failed keeps the attempt counted as a failure. The failure that reaches
// a limit is logged as a lockout (account and address, never the
// password), and locked says it did.
func (a *loginAttempt) failed() (locked bool) {
	if a.perAccount.Count == a.l.perAccount {
		locked = true
		a.l.log.Warn("sign-in locked for an account from one address: too many failed attempts",
			"account", a.account, "ip", a.ip, "until", a.perAccount.ExpiresAt)
	}
	if a.perIP.Count == a.l.perIP {
		locked = true
		a.l.log.Warn("sign-in locked for an address: too many failed attempts", "ip", a.ip, "until", a.perIP.ExpiresAt)
	}
	return locked
}

// succeeded clears the account's failures, from every address, and takes
// back the attempt's count at its address (not the address's other
// failures: one correct password must not reset a guessing run against
// other accounts).
func (a *loginAttempt) succeeded(ctx context.Context) error {
	if _, err := a.l.st.DeleteCounters(ctx, accountPrefix(a.account)); err != nil {
		return err
	}
	return a.l.st.UnhitCounter(ctx, ipLoginKey(a.ip), a.now)
}

// abandon takes back the attempt's counts when its password could not be
// checked (an outage, the client gone): it was neither a success nor a
// failure. The caller's context may be cancelled by then; the counts are
// taken back regardless (the store bounds each call). A count that cannot
// be taken back stays, as a failure would.
func (a *loginAttempt) abandon(ctx context.Context, account, ip bool) {
	ctx = context.WithoutCancel(ctx)
	if account {
		if err := a.l.st.UnhitCounter(ctx, a.accountKey(), a.now); err != nil {
			a.l.log.Warn("taking back a sign-in attempt's count failed", "cause", err)
		}
	}
	if ip {
		if err := a.l.st.UnhitCounter(ctx, ipLoginKey(a.ip), a.now); err != nil {
			a.l.log.Warn("taking back a sign-in attempt's count failed", "cause", err)
		}
	}
}

// UnlockUser clears the failed-login counts of username from every address
// (`authz user unlock`). It reports how many counters it removed.
func UnlockUser(ctx context.Context, st store.Store, username string) (int64, error) {
	return st.DeleteCounters(ctx, accountPrefix(username))
}
