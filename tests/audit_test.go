package tests

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/store"
	"github.com/authzd/authz/provider/store/postgres"
)

// TestAuditEvents drives every security-relevant action over HTTP and
// checks that each emits its event exactly once, with time, actor,
// subject, client, client IP, request id and outcome, into the store and
// the log alike, and that no secret is in any of them.
func TestAuditEvents(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e, logs := startLogged(t, open(t), func(o *provider.Options) {
			o.LoginFailuresPerAccount = 2
		})
		ctx := context.Background()
		var secrets []string
		keep := func(s ...string) {
			for _, v := range s {
				if v != "" {
					secrets = append(secrets, v)
				}
			}
		}
		alice, alicePW := e.user("audit-alice")
		bob, bobPW := e.user("audit-bob")
		keep(alicePW, bobPW)
		aliceUser, _ := e.store.GetUserByUsername(ctx, alice)
		bobUser, _ := e.store.GetUserByUsername(ctx, bob)

		b := e.browser()
		mustEqual(t, "wrong password", b.loginAttempt(alice, "wrong-password-1").status, http.StatusUnauthorized)

		// Flow A: sign-in, consent, grant; its refresh token replayed after
		// the grace window revokes the grant.
		ca, sa, tra := e.confidentialFlow(b, alice, alicePW)
		keep(sa, tra.AccessToken, tra.RefreshToken)
		r1 := e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tra.RefreshToken}}, ca.ID, sa)
		mustEqual(t, "refresh", r1.Status, http.StatusOK)
		keep(r1.AccessToken, r1.RefreshToken)
		e.clock.Advance(time.Minute)
		mustEqual(t, "replay", e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tra.RefreshToken}}, ca.ID, sa).Error, "invalid_grant")

		// Flow B: a second client; its code replayed.
		cb, sb, redirectB := e.loopbackClient(false)
		keep(sb)
		req := authRequest{clientID: cb.ID, redirectURI: redirectB, state: "s", scope: "read", verifier: testVerifier}
		code := e.codeFor(b, req, alice, alicePW)
		keep(code)
		trb := e.postToken(exchangeForm(code, redirectB, testVerifier, nil), cb.ID, sb)
		mustEqual(t, "exchange B", trb.Status, http.StatusOK)
		keep(trb.AccessToken, trb.RefreshToken)
		mustEqual(t, "code replay", e.postToken(exchangeForm(code, redirectB, testVerifier, nil), cb.ID, sb).Error, "invalid_grant")

		// Flow C: client B again (consent remembered: no consent event);
		// its access token revoked by the client, its grant by the user.
		code = e.codeFor(b, req, alice, alicePW)
		keep(code)
		trc := e.postToken(exchangeForm(code, redirectB, testVerifier, nil), cb.ID, sb)
		mustEqual(t, "exchange C", trc.Status, http.StatusOK)
		keep(trc.AccessToken, trc.RefreshToken)
		rv := postForm(t, e.issuer+provider.PathRevoke, url.Values{"token": {trc.AccessToken}}, cb.ID, sb)
		mustEqual(t, "revoke", rv.Status, http.StatusOK)
		apps := b.do("GET", provider.PathApps, nil)
		f := url.Values{"csrf_token": {formFields(apps.body).Get("csrf_token")}, "grant_id": {claims(t, trc.AccessToken)["sid"].(string)}}
		mustEqual(t, "apps revoke", b.do("POST", provider.PathApps, f).status, http.StatusSeeOther)

		// A new client denied.
		cd, _, redirectD := e.loopbackClient(false)
		p := b.do("GET", authRequest{clientID: cd.ID, redirectURI: redirectD, state: "s", scope: "read", verifier: testVerifier}.url(e.issuer), nil)
		if !strings.Contains(p.body, `name="decision"`) {
			t.Fatalf("no consent page: %d %.300s", p.status, p.body)
		}
		f = formFields(p.body)
		f.Set("decision", "deny")
		mustEqual(t, "deny", b.do("POST", provider.PathAuthorize, f).status, http.StatusFound)

		// Sign out.
		apps = b.do("GET", provider.PathApps, nil)
		mustEqual(t, "logout", b.do("POST", provider.PathLogout, url.Values{"csrf_token": {formFields(apps.body).Get("csrf_token")}}).status, http.StatusSeeOther)

		// Bob: two failures (the second starts a lockout: one
		// login.throttled), then refused attempts, which are counted but
		// never grow the trail.
		bb := e.browser()
		bb.loginAttempt(bob, "wrong-password-2")
		bb.loginAttempt(bob, "wrong-password-3")
		for range 3 {
			mustEqual(t, "throttled", bb.loginAttempt(bob, bobPW).status, http.StatusTooManyRequests)
		}

		// A client registers itself, updates and deletes itself.
		status, reg := e.register(t, map[string]any{"redirect_uris": []string{"https://app.example.com/cb"}, "client_name": "Self"})
		mustEqual(t, "register", status, http.StatusCreated)
		selfID, regToken := reg["client_id"].(string), reg["registration_access_token"].(string)
		keep(regToken)
		if s, ok := reg["client_secret"].(string); ok {
			keep(s)
		}
		status, upd, _ := jsonCall(t, "PUT", reg["registration_client_uri"].(string), regToken,
			map[string]any{"client_id": selfID, "redirect_uris": []string{"https://app.example.com/cb2"}, "client_name": "Self"})
		mustEqual(t, "update", status, http.StatusOK)
		regToken, _ = upd["registration_access_token"].(string)
		keep(regToken)
		status, _, _ = jsonCall(t, "DELETE", reg["registration_client_uri"].(string), regToken, nil)
		mustEqual(t, "delete", status, http.StatusNoContent)

		events, err := e.store.ListAuditEvents(ctx, store.AuditFilter{})
		if err != nil {
			t.Fatal(err)
		}
		type key struct{ name, subject, client, outcome, reason string }
		got := map[key]int{}
		for _, ev := range events {
			got[key{ev.Name, ev.Subject, ev.ClientID, ev.Outcome, ev.Details["reason"]}]++
		}
		want := map[key]int{
			{provider.EventLoginFailed, aliceUser.ID, "", "failed", ""}:               1,
			{provider.EventLoginSucceeded, aliceUser.ID, "", "ok", ""}:                1,
			{provider.EventConsentGranted, aliceUser.ID, ca.ID, "ok", ""}:             1,
			{provider.EventGrantCreated, aliceUser.ID, ca.ID, "ok", ""}:               1,
			{provider.EventRefreshReused, aliceUser.ID, ca.ID, "grant_revoked", ""}:   1,
			{provider.EventGrantRevoked, aliceUser.ID, ca.ID, "ok", "reuse_detected"}: 1,
			{provider.EventConsentGranted, aliceUser.ID, cb.ID, "ok", ""}:             1,
			{provider.EventGrantCreated, aliceUser.ID, cb.ID, "ok", ""}:               2,
			{provider.EventCodeReplayed, aliceUser.ID, cb.ID, "grant_revoked", ""}:    1,
			{provider.EventTokenRevoked, aliceUser.ID, cb.ID, "ok", ""}:               1,
			{provider.EventGrantRevoked, aliceUser.ID, cb.ID, "ok", "user"}:           1,
			{provider.EventConsentDenied, aliceUser.ID, cd.ID, "denied", ""}:          1,
			{provider.EventLogout, aliceUser.ID, "", "ok", ""}:                        1,
			{provider.EventLoginFailed, bobUser.ID, "", "failed", ""}:                 2,
			{provider.EventLoginThrottled, bobUser.ID, "", "throttled", ""}:           1,
			{provider.EventClientRegistered, "", selfID, "ok", ""}:                    1,
			{provider.EventClientUpdated, "", selfID, "ok", ""}:                       1,
			{provider.EventClientDeleted, "", selfID, "ok", ""}:                       1,
		}
		for k, n := range want {
			if got[k] != n {
				t.Errorf("event %+v recorded %d times, want %d", k, got[k], n)
			}
		}
		for k, n := range got {
			if _, ok := want[k]; !ok {
				t.Errorf("unexpected event %+v (%d times)", k, n)
			}
		}
		for _, ev := range events {
			if ev.RequestID == "" || ev.ClientIP != "127.0.0.1" || ev.Time.IsZero() || ev.Actor == "" {
				t.Errorf("event %s lacks request id, client IP, time or actor: %+v", ev.Name, ev)
			}
			if ev.Name == provider.EventClientRegistered && ev.Details["trust"] != store.TrustRegistered {
				t.Errorf("client.registered trust = %q, want %q", ev.Details["trust"], store.TrustRegistered)
			}
			raw, _ := json.Marshal(ev)
			for _, s := range secrets {
				if strings.Contains(string(raw), s) {
					t.Errorf("event %s carries a secret: %s", ev.Name, raw)
				}
			}
		}
		// The log has the same events, one line each, tied by request id.
		lines := logs.records(t, "audit")
		if len(lines) != len(events) {
			t.Errorf("%d audit log lines, %d stored events", len(lines), len(events))
		}
		for i, l := range lines {
			if i < len(events) && (l["event"] != events[i].Name || l["request_id"] != events[i].RequestID) {
				t.Errorf("log line %d = %v %v, stored event %s %s", i, l["event"], l["request_id"], events[i].Name, events[i].RequestID)
			}
		}
		all := logs.String()
		for _, s := range secrets {
			if strings.Contains(all, s) {
				t.Errorf("a secret reached the log")
			}
		}
	})
}

// TestAuditRetention: the janitor deletes events older than
// AuditRetention and keeps the rest.
func TestAuditRetention(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), func(o *provider.Options) { o.AuditRetention = 48 * time.Hour })
		name, _ := e.user("retention-user")
		e.browser().loginAttempt(name, "wrong-password") // at t0
		e.clock.Advance(47 * time.Hour)
		e.browser().loginAttempt(name, "wrong-password") // at t0+47h
		e.clock.Advance(2 * time.Hour)                   // t0+49h: the first is past 48h
		e.srv.RunJobs(context.Background())
		evs, err := e.store.ListAuditEvents(context.Background(), store.AuditFilter{Name: provider.EventLoginFailed})
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 1 || !evs[0].Time.Equal(e.clock.Now().Add(-2*time.Hour)) {
			t.Errorf("after the sweep: %+v, want only the event of 2h ago", evs)
		}
	})
}

// TestGrantCreatedCommitsWithTheExchange (issue 13): a code exchange's
// grant.created event is stored by the transaction that spends the code
// (on PostgreSQL its row and the refresh token's have the same xmin: no
// second round trip or commit), exactly once, with the request's id, IP,
// time and grant; its log line follows once. An exchange that fails its
// checks records no grant.created, and a replayed code's code.replayed
// names the grant it revoked.
func TestGrantCreatedCommitsWithTheExchange(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e, logs := startLogged(t, open(t), nil)
		ctx := context.Background()
		name, pw := e.user("created-user")
		u, err := e.store.GetUserByUsername(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		b := e.browser()
		c, secret, redirect := e.loopbackClient(false)
		req := authRequest{clientID: c.ID, redirectURI: redirect, state: "s", scope: "read", verifier: testVerifier}

		code := e.codeFor(b, req, name, pw)
		e.clock.Advance(time.Second)
		tr := e.postToken(exchangeForm(code, redirect, testVerifier, nil), c.ID, secret)
		mustEqual(t, "exchange", tr.Status, http.StatusOK)
		reqID, grantID := tr.Header.Get(provider.HeaderRequestID), claims(t, tr.AccessToken)["sid"].(string)

		// A second code whose exchange fails PKCE: its grant is never
		// created, so it has no event.
		bad := e.codeFor(b, req, name, pw)
		mustEqual(t, "exchange with a wrong verifier", e.postToken(exchangeForm(bad, redirect, testVerifier+"x", nil), c.ID, secret).Error, "invalid_grant")
		// The first code replayed: its grant is revoked, and the event says which.
		mustEqual(t, "code replay", e.postToken(exchangeForm(code, redirect, testVerifier, nil), c.ID, secret).Error, "invalid_grant")

		created, err := e.store.ListAuditEvents(ctx, store.AuditFilter{Name: provider.EventGrantCreated})
		if err != nil {
			t.Fatal(err)
		}
		if len(created) != 1 {
			t.Fatalf("%d grant.created events, want 1 (the failed exchange records none): %+v", len(created), created)
		}
		ev := created[0]
		if reqID == "" || ev.RequestID != reqID || ev.ClientIP != "127.0.0.1" || !ev.Time.Equal(e.clock.Now()) ||
			ev.Actor != provider.ActorUser || ev.Subject != u.ID || ev.ClientID != c.ID || ev.Outcome != "ok" ||
			ev.Details["grant_id"] != grantID || ev.Details["scope"] != "read" {
			t.Errorf("grant.created = %+v; want request %s, 127.0.0.1, %v, user %s, client %s, grant %s, scope read",
				ev, reqID, e.clock.Now(), u.ID, c.ID, grantID)
		}
		var lines int
		for _, l := range logs.records(t, "audit") {
			if l["event"] == provider.EventGrantCreated {
				lines++
				if l["request_id"] != reqID || l["grant_id"] != grantID {
					t.Errorf("grant.created log line %v, want request %s and grant %s", l, reqID, grantID)
				}
			}
		}
		mustEqual(t, "grant.created log lines", lines, 1)

		replayed, err := e.store.ListAuditEvents(ctx, store.AuditFilter{Name: provider.EventCodeReplayed})
		if err != nil {
			t.Fatal(err)
		}
		if len(replayed) != 1 || replayed[0].Details["grant_id"] != grantID || replayed[0].Subject != u.ID || replayed[0].ClientID != c.ID {
			t.Errorf("code.replayed events %+v, want one naming grant %s of user %s", replayed, grantID, u.ID)
		}

		pg, ok := e.store.(*postgres.Store)
		if !ok {
			return
		}
		// One transaction wrote the event and the refresh token.
		rtHash := sha256.Sum256([]byte(tr.RefreshToken))
		var evX, rtX string
		if err := pg.Pool().QueryRow(ctx, `SELECT xmin::text FROM audit_events WHERE event = $1 AND request_id = $2`, provider.EventGrantCreated, reqID).Scan(&evX); err != nil {
			t.Fatal(err)
		}
		if err := pg.Pool().QueryRow(ctx, `SELECT xmin::text FROM refresh_tokens WHERE hash = $1`, rtHash[:]).Scan(&rtX); err != nil {
			t.Fatal(err)
		}
		if evX != rtX {
			t.Errorf("grant.created written by transaction %s, the refresh token by %s: want one transaction", evX, rtX)
		}
	})
}
