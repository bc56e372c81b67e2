package main

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/store"
	"github.com/authzd/authz/provider/store/postgres"
	"github.com/authzd/authz/provider/store/postgres/pgtest"
)

// TestAuditListCodeRefused: `audit list --event code.refused` finds the
// events of code exchanges that failed a check (the server records them;
// tests/refusedcode_test.go drives that over HTTP), with the grant and the
// check that failed. The name used to be refused as unknown.
func TestAuditListCodeRefused(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.URL(t)
	env := []string{"AUTHZ_DATABASE_URL=" + dbURL, "AUTHZ_ENCRYPTION_KEY=" + testEncryptionKey}
	if _, stderr, code := runCmd(t, env, "", "migrate"); code != 0 {
		t.Fatalf("migrate: %s", stderr)
	}
	pool, err := pgxpool.New(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	st := postgres.New(pool)
	for _, ev := range []store.AuditEvent{
		{Name: provider.EventCodeRefused, Actor: provider.ActorClient, Subject: "u-1", ClientID: "c-1", Outcome: "grant_revoked",
			Details: map[string]string{"grant_id": "g-1", "reason": "code_verifier"}},
		{Name: provider.EventCodeReplayed, Actor: provider.ActorClient, Subject: "u-1", ClientID: "c-1", Outcome: "grant_revoked",
			Details: map[string]string{"grant_id": "g-2"}},
	} {
		ev.Time = time.Now()
		if err := st.AppendAuditEvent(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	out, stderr, code := runCmd(t, env, "", "audit", "list", "--event", "code.refused", "--json")
	if code != 0 {
		t.Fatalf("audit list --event code.refused: exit %d\n%s%s", code, out, stderr)
	}
	var ev struct {
		Event, Outcome string
		Details        map[string]string
	}
	if strings.Count(out, "\n") != 1 || json.Unmarshal([]byte(out), &ev) != nil ||
		ev.Event != "code.refused" || ev.Outcome != "grant_revoked" || ev.Details["grant_id"] != "g-1" || ev.Details["reason"] != "code_verifier" {
		t.Errorf("audit list --event code.refused --json:\n%s\nwant the one code.refused event, grant g-1, reason code_verifier", out)
	}
}

// TestAuditEventsDocumented: README's audit table has a row for every name
// `audit list --event` accepts (provider.EventNames), so an operator
// reading the table knows every event there is.
func TestAuditEventsDocumented(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var rows []string
	for _, l := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(l, "| `") {
			rows = append(rows, strings.SplitN(l, "|", 3)[1]) // the Event column
		}
	}
	for _, name := range provider.EventNames {
		found := false
		for _, r := range rows {
			found = found || strings.Contains(r, "`"+name+"`")
		}
		if !found {
			t.Errorf("README's audit table has no row for %s", name)
		}
	}
}
