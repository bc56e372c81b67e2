package main

import (
	"cmp"
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
	// An unknown name would match nothing and print an empty table, as if
	// nothing had happened.
	if event != "" && !slices.Contains(provider.EventNames, event) {
		return usageError{msg: fmt.Sprintf("--event %q: no such event; the events are %s", event, strings.Join(provider.EventNames, ", "))}
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
	// A deleted user no longer resolves by name, yet that is when the
	// trail is read: their user.deleted event records the name.
	var deleted map[string]string // user ID → username, of deleted users
	deletedUsers := func() (map[string]string, error) {
		if deleted == nil {
			evs, err := st.ListAuditEvents(e.ctx, store.AuditFilter{Name: provider.EventUserDeleted})
			if err != nil {
				return nil, err
			}
			deleted = map[string]string{}
			for _, ev := range evs {
				deleted[ev.Subject] = ev.Details["username"]
			}
		}
		return deleted, nil
	}
	var subjects []string
	if user != "" {
		subjects = []string{user} // a user ID
		if u, err := st.GetUserByUsername(e.ctx, user); err == nil {
			subjects = []string{u.ID}
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		} else {
			d, err := deletedUsers()
			if err != nil {
				return err
			}
			var ids []string // the name may have been deleted, reused and deleted again
			for id, name := range d {
				if name == user {
					ids = append(ids, id)
				}
			}
			if len(ids) > 0 {
				subjects = ids
			}
		}
	}
	if len(subjects) == 0 {
		subjects = []string{""} // every subject
	}
	var evs []store.AuditEvent
	for _, s := range subjects {
		f.Subject = s
		part, err := st.ListAuditEvents(e.ctx, f)
		if err != nil {
			return err
		}
		evs = append(evs, part...)
	}
	if len(subjects) > 1 {
		slices.SortFunc(evs, func(a, b store.AuditEvent) int {
			if c := a.Time.Compare(b.Time); c != 0 {
				return c
			}
			return cmp.Compare(a.ID, b.ID)
		})
		if limit > 0 && len(evs) > limit {
			evs = evs[len(evs)-limit:]
		}
	}
	type name struct {
		username string
		deleted  bool
	}
	names := map[string]name{} // user ID → username, for display
	username := func(id string) name {
		if id == "" {
			return name{}
		}
		if n, ok := names[id]; ok {
			return n
		}
		var n name
		if u, err := st.GetUser(e.ctx, id); err == nil {
			n.username = u.Username
		} else if d, err := deletedUsers(); err == nil && d[id] != "" {
			n = name{username: d[id], deleted: true}
		}
		names[id] = n
		return n
	}
	if asJSON {
		enc := json.NewEncoder(e.stdout)
		for _, ev := range evs {
			if err := enc.Encode(auditView{Time: ev.Time, Event: ev.Name, Actor: ev.Actor, Subject: ev.Subject, Username: username(ev.Subject).username,
				ClientID: ev.ClientID, ClientIP: ev.ClientIP, RequestID: ev.RequestID, Outcome: ev.Outcome, Details: ev.Details}); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tEVENT\tACTOR\tUSER\tCLIENT\tIP\tOUTCOME\tREQUEST\tDETAILS")
	for _, ev := range evs {
		n := username(ev.Subject)
		who := n.username
		switch {
		case who == "":
			who = ev.Subject
		case n.deleted:
			who += "(deleted)"
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
