package tests

import (
	"context"
	"net/http"
	"net/url"
	"testing"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/store"
)

// TestCodeRetryLogsWhatHappened: an exchange with a wrong code_verifier
// spends the code and revokes its grant before any token exists. The
// client's retry with the same code used to be logged at WARN as
// "authorization code replayed; its grant is revoked" and audited as
// code.replayed/grant_revoked, although it revoked nothing. Now the retry
// logs at INFO that the code was spent and nothing is left to revoke, and
// records no code.replayed event; a replay of a code whose tokens are live
// still revokes them, logs the WARN line and records the event.
func TestCodeRetryLogsWhatHappened(t *testing.T) {
	t.Parallel()
	const (
		replayed = "authorization code replayed; its grant is revoked"
		spent    = "spent authorization code presented again; its grant has no live token, nothing to revoke"
	)
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e, logs := startLogged(t, open(t), nil)
		ctx := context.Background()
		name, pw := e.user("retry-user")
		b := e.browser()
		c, secret, redirect := e.loopbackClient(false)
		req := authRequest{clientID: c.ID, redirectURI: redirect, state: "s", scope: "read", verifier: testVerifier}

		// A wrong verifier, then the right one with the same code.
		code := e.codeFor(b, req, name, pw)
		mustEqual(t, "exchange with a wrong verifier", e.postToken(exchangeForm(code, redirect, testVerifier+"x", nil), c.ID, secret).Error, "invalid_grant")
		retry := e.postToken(exchangeForm(code, redirect, testVerifier, nil), c.ID, secret)
		mustEqual(t, "retry status", retry.Status, http.StatusBadRequest)
		mustEqual(t, "retry error", retry.Error, "invalid_grant")
		if n := len(logs.records(t, replayed)); n != 0 {
			t.Errorf("the retry of a code spent by a failed exchange logged %q %d times; nothing was revoked by it\n%s", replayed, n, logs)
		}
		lines := logs.records(t, spent)
		if len(lines) != 1 || lines[0]["level"] != "INFO" || lines[0]["client_id"] != c.ID || lines[0]["grant_id"] == nil {
			t.Errorf("log lines %q: %v, want one at INFO naming client %s and the grant\n%s", spent, lines, c.ID, logs)
		}
		evs, err := e.store.ListAuditEvents(ctx, store.AuditFilter{Name: provider.EventCodeReplayed})
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 0 {
			t.Errorf("code.replayed events after a retry that revoked nothing: %+v", evs)
		}

		// A code whose tokens are live, replayed: they are revoked, and the
		// WARN line and the event say so, once.
		good := e.codeFor(b, req, name, pw)
		tr := e.postToken(exchangeForm(good, redirect, testVerifier, nil), c.ID, secret)
		mustEqual(t, "exchange", tr.Status, http.StatusOK)
		grantID := claims(t, tr.AccessToken)["sid"].(string)
		mustEqual(t, "replay", e.postToken(exchangeForm(good, redirect, testVerifier, nil), c.ID, secret).Error, "invalid_grant")
		mustEqual(t, "refresh after the replay", e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}}, c.ID, secret).Error, "invalid_grant")
		warn := logs.records(t, replayed)
		if len(warn) != 1 || warn[0]["level"] != "WARN" || warn[0]["grant_id"] != grantID {
			t.Errorf("log lines %q: %v, want one at WARN naming grant %s\n%s", replayed, warn, grantID, logs)
		}
		// A third presentation finds the grant already revoked: INFO again.
		mustEqual(t, "second replay", e.postToken(exchangeForm(good, redirect, testVerifier, nil), c.ID, secret).Error, "invalid_grant")
		mustEqual(t, "WARN lines after the second replay", len(logs.records(t, replayed)), 1)
		if again := logs.records(t, spent); len(again) != 2 || again[1]["grant_id"] != grantID {
			t.Errorf("log lines %q after the second replay: %v, want a second one naming grant %s", spent, again, grantID)
		}
		evs, err = e.store.ListAuditEvents(ctx, store.AuditFilter{Name: provider.EventCodeReplayed})
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 1 || evs[0].Details["grant_id"] != grantID || evs[0].Outcome != "grant_revoked" {
			t.Errorf("code.replayed events %+v, want one: grant %s revoked", evs, grantID)
		}
	})
}
