package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/store"
)

// TestRefusedCodeIsReported: a code exchange that fails one of its checks
// spends the code and revokes its grant (RFC 6749 §4.1.2, §4.1.3). A wrong
// code_verifier is the interception PKCE exists to stop (RFC 7636 §1), a
// code presented by another client or to another redirect_uri is code
// injection (RFC 9700 §4.5); yet the server used to say nothing of it. Now
// each such refusal logs one WARN line naming the client, the grant and
// the failed check, and records one code.refused event (outcome
// grant_revoked); neither carries the code or a verifier. The client's
// retry of the spent code records nothing more, so a code is refused, and
// audited, at most once.
func TestRefusedCodeIsReported(t *testing.T) {
	t.Parallel()
	const refused = "authorization code refused: it failed a check, so it is spent and its grant revoked"
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e, logs := startLogged(t, open(t), nil)
		ctx := context.Background()
		name, pw := e.user("refused-user")
		u, err := e.store.GetUserByUsername(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		b := e.browser()
		mcp, other := "https://mcp.example.com/mcp", "https://other.example.com"

		cases := []struct {
			name, reason string
			// exchange presents the code of client c (redirect and verifier
			// as authorized) the wrong way; it returns the client that
			// presented it.
			exchange  func(code string, c store.Client, secret, redirect, verifier string) (tokenResp, store.Client)
			resources []string // at authorize
			wantError string
		}{
			{"wrong code_verifier", "code_verifier", func(code string, c store.Client, secret, redirect, verifier string) (tokenResp, store.Client) {
				return e.postToken(exchangeForm(code, redirect, verifier[:len(verifier)-1]+"Z", nil), c.ID, secret), c
			}, nil, "invalid_grant"},
			{"wrong redirect_uri", "redirect_uri", func(code string, c store.Client, secret, redirect, verifier string) (tokenResp, store.Client) {
				return e.postToken(exchangeForm(code, redirect+"/elsewhere", verifier, nil), c.ID, secret), c
			}, nil, "invalid_grant"},
			{"another client's code", "client", func(code string, c store.Client, secret, redirect, verifier string) (tokenResp, store.Client) {
				thief, thiefSecret, _ := e.loopbackClient(false)
				return e.postToken(exchangeForm(code, redirect, verifier, nil), thief.ID, thiefSecret), thief
			}, nil, "invalid_grant"},
			{"resource outside the grant", "resource", func(code string, c store.Client, secret, redirect, verifier string) (tokenResp, store.Client) {
				return e.postToken(exchangeForm(code, redirect, verifier, url.Values{"resource": {other}}), c.ID, secret), c
			}, []string{mcp}, "invalid_target"},
		}
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				c, secret, redirect := e.loopbackClient(false)
				// A verifier of this case only, so that its absence from the
				// log means something.
				verifier := fmt.Sprintf("refused-code-verifier-%d-%s", i, strings.Repeat("v", 43))
				req := authRequest{clientID: c.ID, redirectURI: redirect, state: "s", scope: "read", verifier: verifier, resources: tc.resources}
				code := e.codeFor(b, req, name, pw)

				tr, presenter := tc.exchange(code, c, secret, redirect, verifier)
				mustEqual(t, "status", tr.Status, http.StatusBadRequest)
				mustEqual(t, "error", tr.Error, tc.wantError)

				// One WARN line, naming the presenting client, the grant
				// and the check.
				var lines []map[string]any
				for _, l := range logs.records(t, refused) {
					if l["client_id"] == presenter.ID {
						lines = append(lines, l)
					}
				}
				if len(lines) != 1 || lines[0]["level"] != "WARN" || lines[0]["reason"] != tc.reason {
					t.Fatalf("log lines %q of client %s: %v, want one at WARN with reason %s\n%s", refused, presenter.ID, lines, tc.reason, logs)
				}
				grantID, _ := lines[0]["grant_id"].(string)

				// The grant named is the code's, and it is revoked.
				g, err := e.store.GetGrant(ctx, grantID)
				if err != nil {
					t.Fatalf("grant %q named by the log line: %v", grantID, err)
				}
				if g.ClientID != c.ID || g.UserID != u.ID || g.RevokedAt.IsZero() {
					t.Errorf("grant %+v: want client %s's grant for user %s, revoked", g, c.ID, u.ID)
				}

				// One code.refused event saying the same.
				evs, err := e.store.ListAuditEvents(ctx, store.AuditFilter{Name: provider.EventCodeRefused, ClientID: presenter.ID})
				if err != nil {
					t.Fatal(err)
				}
				if len(evs) != 1 {
					t.Fatalf("code.refused events of client %s: %+v, want one", presenter.ID, evs)
				}
				ev := evs[0]
				if ev.Actor != provider.ActorClient || ev.Subject != u.ID || ev.Outcome != "grant_revoked" ||
					ev.Details["grant_id"] != grantID || ev.Details["reason"] != tc.reason ||
					ev.RequestID == "" || ev.RequestID != lines[0]["request_id"] || ev.ClientIP != "127.0.0.1" {
					t.Errorf("code.refused = %+v; want actor client, user %s, grant_revoked, grant %s, reason %s, the WARN line's request", ev, u.ID, grantID, tc.reason)
				}

				// The client retries with everything right: the code is
				// spent (INFO, as before), and nothing more is recorded.
				mustEqual(t, "retry", e.postToken(exchangeForm(code, redirect, verifier, nil), c.ID, secret).Error, "invalid_grant")
				again, err := e.store.ListAuditEvents(ctx, store.AuditFilter{Name: provider.EventCodeRefused})
				if err != nil {
					t.Fatal(err)
				}
				mustEqual(t, "code.refused events in all after the retry", len(again), i+1)
				if n := len(logs.records(t, refused)); n != i+1 {
					t.Errorf("%d WARN lines %q after the retry, want %d", n, refused, i+1)
				}

				// Neither the code nor any verifier is in the log or the event.
				all := logs.String()
				raw, _ := json.Marshal(ev)
				for _, s := range []string{code, verifier, verifier[:len(verifier)-1] + "Z"} {
					if strings.Contains(all, s) {
						t.Errorf("the log carries %q", s)
					}
					if strings.Contains(string(raw), s) {
						t.Errorf("the event carries %q: %s", s, raw)
					}
				}
			})
		}
	})
}
