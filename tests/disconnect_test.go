package tests

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/store"
)

// stallingStore, once armed, holds GetClient and GetUserByUsername until
// the request's context ends (the client hung up), then fails them the way
// a database call with a cancelled context does. With outage set it fails
// GetUserByUsername as a database outage.
type stallingStore struct {
	store.Store
	armed, outage atomic.Bool
	entered       chan struct{}
}

func (s *stallingStore) stall(ctx context.Context) error {
	s.entered <- struct{}{}
	<-ctx.Done()
	return ctx.Err()
}

func (s *stallingStore) GetClient(ctx context.Context, id string) (store.Client, error) {
	if s.armed.Load() {
		return store.Client{}, s.stall(ctx)
	}
	return s.Store.GetClient(ctx, id)
}

func (s *stallingStore) GetUserByUsername(ctx context.Context, name string) (store.User, error) {
	if s.outage.Load() {
		return store.User{}, fmt.Errorf("%w: test outage", store.ErrUnavailable)
	}
	if s.armed.Load() {
		return store.User{}, s.stall(ctx)
	}
	return s.Store.GetUserByUsername(ctx, name)
}

// TestClientDisconnectIsNotAnError: a client that hangs up while the
// server waits on the store (a token request, a sign-in) is not logged as
// an ERROR: nothing went wrong on the server's side.
func TestClientDisconnectIsNotAnError(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		st := &stallingStore{Store: open(t), entered: make(chan struct{}, 1)}
		logs := &lockedBuffer{}
		e := start(t, st, func(o *provider.Options) {
			o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		})
		c, secret := e.client(store.ClientMetadata{GrantTypes: []string{oauth.GrantClientCredentials}})
		login := e.browser().do("GET", provider.PathLogin, nil)
		csrf := formFields(login.body)
		csrf.Set("username", "nobody")
		csrf.Set("password", "whatever-password")
		var cookies []string
		for _, ck := range login.header.Values("Set-Cookie") {
			cookies = append(cookies, strings.SplitN(ck, ";", 2)[0])
		}

		u, _ := url.Parse(e.issuer)
		requests := []struct{ name, raw string }{
			{"token request", fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Basic %s\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s",
				provider.PathToken, u.Host, basicAuth(c.ID, secret), len("grant_type=client_credentials"), "grant_type=client_credentials")},
			{"sign-in", fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nCookie: %s\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s",
				provider.PathLogin, u.Host, strings.Join(cookies, "; "), len(csrf.Encode()), csrf.Encode())},
		}
		st.armed.Store(true)
		for i, rq := range requests {
			conn, err := net.Dial("tcp", u.Host)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Write([]byte(rq.raw)); err != nil {
				t.Fatal(err)
			}
			select {
			case <-st.entered:
			case <-time.After(30 * time.Second):
				t.Fatalf("%s never reached the store:\n%s", rq.name, logs.String())
			}
			conn.Close() // the client hangs up while the server waits
			deadline := time.Now().Add(30 * time.Second)
			for strings.Count(logs.String(), "client went away") < i+1 {
				if time.Now().After(deadline) {
					t.Fatalf("%s: the disconnect was not logged as one:\n%s", rq.name, logs.String())
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		if out := logs.String(); strings.Contains(out, "level=ERROR") {
			t.Fatalf("a client disconnect was logged as an error:\n%s", out)
		}
	})
}

func basicAuth(id, secret string) string {
	req, _ := http.NewRequest("GET", "/", nil)
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	return strings.TrimPrefix(req.Header.Get("Authorization"), "Basic ")
}

// TestHTMLUnavailableCarriesRetryAfter: an HTML page answered 503 (sign-in
// while the database is down) says when to retry, as the JSON endpoints do.
func TestHTMLUnavailableCarriesRetryAfter(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		st := &stallingStore{Store: open(t), entered: make(chan struct{}, 1)}
		e := start(t, st, nil)
		b := e.browser()
		f := formFields(b.do("GET", provider.PathLogin, nil).body)
		f.Set("username", "alice")
		f.Set("password", "whatever-password")
		st.outage.Store(true)
		p := b.do("POST", provider.PathLogin, f)
		mustEqual(t, "sign-in during an outage", p.status, http.StatusServiceUnavailable)
		if p.header.Get("Retry-After") == "" {
			t.Fatal("503 page without Retry-After")
		}
		if !strings.HasPrefix(p.header.Get("Content-Type"), "text/html") {
			t.Fatalf("Content-Type %q, want the HTML page", p.header.Get("Content-Type"))
		}
	})
}
