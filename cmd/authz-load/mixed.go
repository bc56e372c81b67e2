package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/url"
	"slices"
	"strings"
)

// mixedFlows is the soak's traffic: worker i runs mixedFlows[i % 6]. The
// refresh_shared worker drives a pair of concurrent requests by itself.
var mixedFlows = []string{"authorization_code", "refresh", "refresh_shared", "client_credentials", "mixed_introspect", "mixed_revoke"}

func init() {
	// mixed_introspect introspects tokens minted on another replica, a
	// fresh one every 20 requests, so a key one replica signs with and the
	// other does not know yet shows up as "active=false".
	flows["mixed_introspect"] = func(l *loader, _, _ int) (func(context.Context, *recorder), error) {
		return func(ctx context.Context, rec *recorder) {
			tok := ""
			for i := 0; ctx.Err() == nil; i++ {
				if i%20 == 0 || tok == "" {
					r := l.ccToken()
					if !rec.untimed(r) {
						tok = ""
						continue
					}
					tok = r.tok.AccessToken
				}
				rec.timed(func() result { return l.introspect(tok, true) })
			}
		}, nil
	}
	// mixed_revoke revokes access tokens and, every tenth request, a
	// refresh token (which ends its grant, RFC 7009 §2.1), then checks on
	// the next replica that what it revoked no longer works.
	flows["mixed_revoke"] = func(l *loader, _, _ int) (func(context.Context, *recorder), error) {
		if err := l.needCodeClient(); err != nil {
			return nil, err
		}
		return func(ctx context.Context, rec *recorder) {
			for i := 0; ctx.Err() == nil; i++ {
				if i%10 == 0 {
					rt, ok := l.newChain(rec)
					if !ok {
						continue
					}
					if _, ok := rec.timed(func() result { return l.revoke(rt, l.cfg.codeID, l.cfg.codeSecret) }); !ok {
						continue
					}
					rec.notes["grants revoked on purpose"]++
					r := l.post(pathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, l.cfg.codeID, l.cfg.codeSecret)
					if r.outcome() != "400 invalid_grant" {
						rec.errors["check: revoked refresh token answered "+r.outcome()]++
					}
					continue
				}
				r := l.ccToken()
				if !rec.untimed(r) {
					continue
				}
				tok := r.tok.AccessToken
				if _, ok := rec.timed(func() result { return l.revoke(tok, l.cfg.ccID, l.cfg.ccSecret) }); !ok {
					continue
				}
				if r := l.introspect(tok, false); r.outcome() != "" {
					rec.errors["check: revoked access token: "+r.outcome()]++
				}
			}
		}, nil
	}
}

// mixedReport prints the soak's verdict and returns an error when it
// failed: any 5xx, any request without an answer, any failed check, any
// grant revoked that the load program did not revoke.
func mixedReport(ctx context.Context, l *loader, per map[string]*recorder, w io.Writer) error {
	total := newRecorder()
	for _, name := range slices.Sorted(maps.Keys(per)) {
		total.merge(per[name])
	}
	fivexx, transport, checks, other, lost := 0, 0, 0, 0, 0
	for s, n := range total.status {
		if s >= 500 {
			fivexx += n
		}
	}
	for k, n := range total.errors {
		switch {
		case k == "transport" || strings.HasSuffix(k, ": transport"):
			transport += n
		case strings.HasPrefix(k, "check:"):
			checks += n
		case strings.HasPrefix(k, "5") || strings.HasPrefix(k, "prep: 5"):
			// counted from the statuses above (prep steps are not)
			if strings.HasPrefix(k, "prep: ") {
				fivexx += n
			}
		default:
			other += n // e.g. "200 active=false": a fresh token unknown to a replica
		}
		if strings.Contains(k, "invalid_grant") && !strings.HasPrefix(k, "check:") {
			lost += n // only mixed_revoke revokes, and it checks its own
		}
	}
	fmt.Fprintf(w, "soak: requests by status: %s\n", kv(total.status))
	fmt.Fprintf(w, "soak: 5xx: %d, no answer: %d, failed checks: %d, other errors: %d\n", fivexx, transport, checks, other)
	unexpected := lost
	if l.pool != nil {
		var revoked int
		if err := l.pool.QueryRow(ctx, `SELECT count(*) FROM grants WHERE revoked_at IS NOT NULL`).Scan(&revoked); err != nil {
			return fmt.Errorf("counting revoked grants: %w", err)
		}
		onPurpose := total.notes["grants revoked on purpose"]
		fmt.Fprintf(w, "soak: grants revoked in the database: %d, by the load program on purpose: %d\n", revoked, onPurpose)
		unexpected = max(unexpected, revoked-onPurpose)
	}
	fmt.Fprintf(w, "soak: grants revoked that should not have been: %d\n", unexpected)
	if fivexx+transport+checks+other+unexpected > 0 {
		return fmt.Errorf("soak failed: %d 5xx, %d without answer, %d failed checks, %d other errors, %d grants lost", fivexx, transport, checks, other, unexpected)
	}
	fmt.Fprintln(w, "soak: OK")
	return nil
}
