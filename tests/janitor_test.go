package tests

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/store"
	"github.com/authzd/authz/provider/tokens"
)

// sessionHash returns the SHA-256 of the browser's session cookie.
func (b *browser) sessionHash() []byte {
	b.t.Helper()
	u, _ := url.Parse(b.e.issuer)
	for _, c := range b.http.Jar.Cookies(u) {
		if c.Name == "authz_session" && c.Value != "" {
			return tokens.Hash(c.Value)
		}
	}
	b.t.Fatal("the browser holds no session cookie")
	return nil
}

// TestJanitorTicks runs several janitor ticks on the fake clock: each tick
// removes what expired (codes, sessions, refresh tokens past their idle
// lifetime, grants past their lifetime with their tokens) and keeps what is
// live, which goes on working over HTTP.
func TestJanitorTicks(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		ctx := context.Background()
		e := start(t, open(t), func(o *provider.Options) {
			o.SessionTTL = time.Hour
			o.RefreshIdleTTL = time.Hour
			o.GrantTTL = 3 * time.Hour
		})
		user, pw := e.user("jan")
		c, secret, redirect := e.loopbackClient(false)
		req := authRequest{clientID: c.ID, redirectURI: redirect, state: "j", verifier: testVerifier, scope: "read"}
		b := e.browser()
		unused := e.codeFor(b, req, user, pw) // never exchanged: expires after 60 s
		session := b.sessionHash()
		tr := e.postToken(exchangeForm(e.codeFor(b, req, user, pw), redirect, testVerifier, nil), c.ID, secret)
		mustEqual(t, "exchange", tr.Status, 200)
		grantID := claims(t, tr.AccessToken)["sid"].(string)
		first := tr.RefreshToken
		refresh := func(rt string) string {
			t.Helper()
			r := e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, c.ID, secret)
			mustEqual(t, "refresh", r.Status, 200)
			return r.RefreshToken
		}
		gone := func(what string, err error) {
			t.Helper()
			if !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("%s after the tick: %v, want removed (ErrNotFound)", what, err)
			}
		}
		kept := func(what string, err error) {
			t.Helper()
			if err != nil {
				t.Fatalf("%s was removed or failed: %v", what, err)
			}
		}

		// Tick 1 (+5 min): the unused code is gone; everything else stays.
		e.clock.Advance(5 * time.Minute)
		e.srv.RunJobs(ctx)
		_, err := e.store.ConsumeAuthCode(ctx, tokens.Hash(unused), e.clock.Now(), nil)
		gone("the expired code", err)
		_, _, err = e.store.GetSessionUser(ctx, session, e.clock.Now())
		kept("the live session", err)
		second := refresh(first)

		// Tick 2 (+55 min): still within every lifetime.
		e.clock.Advance(50 * time.Minute)
		e.srv.RunJobs(ctx)
		_, _, err = e.store.GetSessionUser(ctx, session, e.clock.Now())
		kept("the live session", err)
		third := refresh(second)

		// Tick 3 (+70 min): the session and the first refresh token (idle
		// for an hour) are gone; the live chain still refreshes.
		e.clock.Advance(15 * time.Minute)
		e.srv.RunJobs(ctx)
		_, _, err = e.store.GetSessionUser(ctx, session, e.clock.Now())
		gone("the expired session", err)
		_, _, err = e.store.GetRefreshToken(ctx, tokens.Hash(first))
		gone("the idle refresh token", err)
		_, _, err = e.store.GetRefreshToken(ctx, tokens.Hash(third))
		kept("the live refresh token", err)
		fourth := refresh(third)
		_, err = e.store.GetGrant(ctx, grantID)
		kept("the live grant", err)

		// A second grant, started shortly before the first one ends.
		e.clock.Advance(100 * time.Minute)
		b2 := e.browser()
		tr2 := e.postToken(exchangeForm(e.codeFor(b2, req, user, pw), redirect, testVerifier, nil), c.ID, secret)
		mustEqual(t, "second exchange", tr2.Status, 200)
		session2 := b2.sessionHash()

		// Tick 4 (+3 h 1 min): the first grant is past its lifetime and
		// goes with its refresh tokens; the second grant and its session stay.
		e.clock.Advance(11 * time.Minute)
		e.srv.RunJobs(ctx)
		_, err = e.store.GetGrant(ctx, grantID)
		gone("the expired grant", err)
		_, _, err = e.store.GetRefreshToken(ctx, tokens.Hash(fourth))
		gone("the expired grant's refresh token", err)
		_, err = e.store.GetGrant(ctx, claims(t, tr2.AccessToken)["sid"].(string))
		kept("the live grant", err)
		_, _, err = e.store.GetSessionUser(ctx, session2, e.clock.Now())
		kept("the live session", err)
		refresh(tr2.RefreshToken)
	})
}

// panickyStore panics in DeleteExpired on its first call, and counts the
// calls of both janitor store methods.
type panickyStore struct {
	store.Store
	expired, keys atomic.Int32
}

func (p *panickyStore) DeleteExpired(ctx context.Context, now time.Time) (int64, error) {
	if p.expired.Add(1) == 1 {
		panic("janitor test: DeleteExpired blows up once")
	}
	return p.Store.DeleteExpired(ctx, now)
}

func (p *panickyStore) DeleteSigningKeysRetiredBefore(ctx context.Context, t time.Time) error {
	p.keys.Add(1)
	return p.Store.DeleteSigningKeysRetiredBefore(ctx, t)
}

// TestJanitorSurvivesAPanic: a panicking job is recovered and logged with
// its stack, the jobs after it still run, and at the next tick it runs again.
func TestJanitorSurvivesAPanic(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		ctx := context.Background()
		ps := &panickyStore{Store: open(t)}
		logs := &lockedBuffer{}
		e := start(t, ps, func(o *provider.Options) { o.Logger = slog.New(slog.NewTextHandler(logs, nil)) })
		user, pw := e.user("pan")
		c, _, redirect := e.loopbackClient(false)
		code := e.codeFor(e.browser(), authRequest{clientID: c.ID, redirectURI: redirect, state: "p", verifier: testVerifier}, user, pw)
		e.clock.Advance(5 * time.Minute)

		e.srv.RunJobs(ctx) // DeleteExpired panics
		out := logs.String()
		if !strings.Contains(out, "panicked") || !strings.Contains(out, "goroutine") || !strings.Contains(out, "level=ERROR") {
			t.Fatalf("the panic was not logged as an error with its stack:\n%s", out)
		}
		mustEqual(t, "signing-key job ran after the panicking one", ps.keys.Load(), int32(1))

		e.srv.RunJobs(ctx) // the next tick runs the job again
		mustEqual(t, "DeleteExpired calls", ps.expired.Load(), int32(2))
		_, err := e.store.ConsumeAuthCode(ctx, tokens.Hash(code), e.clock.Now(), nil)
		if !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("expired code after the second tick: %v, want removed", err)
		}
		// The server is still serving.
		mustEqual(t, "healthz", e.browser().do("GET", "/healthz", nil).status, 200)
	})
}

// TestJanitorDeletesOnlyLongRetiredKeys: the janitor removes a retired
// signing key only well after no token it signed can be valid (access-token
// lifetime + publishing leeway + a day), and never a signing or pending key.
func TestJanitorDeletesOnlyLongRetiredKeys(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		ctx := context.Background()
		key := make([]byte, 32)
		e := start(t, open(t), func(o *provider.Options) { o.EncryptionKey = key })
		ids := func() map[string]bool {
			keys, err := e.store.ListSigningKeys(ctx)
			if err != nil {
				t.Fatal(err)
			}
			out := map[string]bool{}
			for _, k := range keys {
				out[k.ID] = true
			}
			return out
		}
		var first string
		for id := range ids() {
			first = id
		}
		now := e.clock.Now()
		rotated, err := provider.RotateSigningKeys(ctx, e.store, key, "ES256", now, now.Add(time.Minute), nil)
		if err != nil {
			t.Fatal(err)
		}
		second := rotated[0]
		// The first key retires when the second activates, a minute from now.
		e.clock.Advance(time.Minute + 15*time.Minute + 5*time.Minute + 24*time.Hour - time.Second)
		rotated, err = provider.RotateSigningKeys(ctx, e.store, key, "ES256", e.clock.Now(), e.clock.Now().Add(time.Hour), nil)
		if err != nil {
			t.Fatal(err)
		}
		pending := rotated[0]
		e.srv.RunJobs(ctx)
		if got := ids(); !got[first] || !got[second.ID] || !got[pending.ID] {
			t.Fatalf("keys one second before the first may go: %v", got)
		}
		e.clock.Advance(2 * time.Second)
		e.srv.RunJobs(ctx)
		got := ids()
		if got[first] {
			t.Fatalf("the long-retired key %s is still stored: %v", first, got)
		}
		if !got[second.ID] || !got[pending.ID] {
			t.Fatalf("the signing or the pending key was deleted: %v", got)
		}
	})
}
