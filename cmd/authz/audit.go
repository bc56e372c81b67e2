package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/store"
)

// auditAdmin records an administrator's action in the audit trail. The
// row is the record; the log line goes to stderr only when the row could
// not be stored, so the command's output stays what it was.
func (e env) auditAdmin(st store.Store, ev store.AuditEvent) {
	ev.Time, ev.Actor = time.Now(), provider.ActorAdmin
	if ev.Outcome == "" {
		ev.Outcome = "ok"
	}
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	provider.Audit(e.ctx, st, log, ev)
}

// auditView is one event as `audit list --json` prints it.
type auditView struct {
	Time      time.Time         `json:"time"`
	Event     string            `json:"event"`
	Actor     string            `json:"actor"`
	Subject   string            `json:"subject,omitempty"`
	Username  string            `json:"username,omitempty"`
	ClientID  string            `json:"client_id,omitempty"`
	ClientIP  string            `json:"client_ip,omitempty"`
	RequestID string            `json:"request_id,omitempty"`
	Outcome   string            `json:"outcome"`
	Details   map[string]string `json:"details,omitempty"`
}

// auditList prints audit events, oldest first, filtered by flags.
func (e env) auditList(args []string) error {
	var since, user, client, event string
	var asJSON bool
	var limit int
	st, _, _, err := e.adminCommand("audit list", args, func(fs *flag.FlagSet) {
		fs.StringVar(&since, "since", "", "only events this long ago or later (a duration such as 24h) or since an RFC 3339 time")
		fs.StringVar(&user, "user", "", "only events about this user (username or user ID)")
		fs.StringVar(&client, "client", "", "only events of this client ID")
		fs.StringVar(&event, "event", "", "only events of this name (README lists them), e.g. login.failed")
		fs.IntVar(&limit, "limit", 1000, "at most this many events, the newest")
		fs.BoolVar(&asJSON, "json", false, "print one JSON object per line")
	})
	if err != nil {
		return err
	}
	defer st.Close()
	if limit < 0 {
		return usageError{msg: fmt.Sprintf("--limit %d: want a number of events (0: every one)", limit)}
	}
	f := store.AuditFilter{ClientID: client, Name: event, Limit: limit}
	if since != "" {
		if d, err := time.ParseDuration(since); err == nil {
			f.Since = time.Now().Add(-d)
		} else if t, err := time.Parse(time.RFC3339, since); err == nil {
			f.Since = t
		} else {
			return usageError{msg: fmt.Sprintf("--since %q: want a duration (24h) or an RFC 3339 time (2026-01-02T15:04:05Z)", since)}
		}
	}
	names := map[string]string{} // user ID → username, for display
	if user != "" {
		f.Subject = user
		if u, err := st.GetUserByUsername(e.ctx, user); err == nil {
			f.Subject = u.ID
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	evs, err := st.ListAuditEvents(e.ctx, f)
	if err != nil {
		return err
	}
	username := func(id string) string {
		if id == "" {
			return ""
		}
		if n, ok := names[id]; ok {
			return n
		}
		n := ""
		if u, err := st.GetUser(e.ctx, id); err == nil {
			n = u.Username
		}
		names[id] = n
		return n
	}
	if asJSON {
		enc := json.NewEncoder(e.stdout)
		for _, ev := range evs {
			if err := enc.Encode(auditView{Time: ev.Time, Event: ev.Name, Actor: ev.Actor, Subject: ev.Subject, Username: username(ev.Subject),
				ClientID: ev.ClientID, ClientIP: ev.ClientIP, RequestID: ev.RequestID, Outcome: ev.Outcome, Details: ev.Details}); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tEVENT\tACTOR\tUSER\tCLIENT\tIP\tOUTCOME\tREQUEST\tDETAILS")
	for _, ev := range evs {
		who := username(ev.Subject)
		if who == "" {
			who = ev.Subject
		}
		var details []string
		for _, k := range slices.Sorted(maps.Keys(ev.Details)) {
			details = append(details, k+"="+ev.Details[k])
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ev.Time.UTC().Format(time.RFC3339), ev.Name, ev.Actor,
			dash(who), dash(ev.ClientID), dash(ev.ClientIP), ev.Outcome, dash(ev.RequestID), strings.Join(details, " "))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
