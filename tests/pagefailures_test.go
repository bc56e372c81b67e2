package tests

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/store"
)

// pageFailStore fails ListUserGrants and GetUserByUsername with the error
// set, as a broken or unreachable database would.
type pageFailStore struct {
	store.Store
	fail atomic.Pointer[error]
}

func (s *pageFailStore) err() error {
	if p := s.fail.Load(); p != nil {
		return *p
	}
	return nil
}

func (s *pageFailStore) ListUserGrants(ctx context.Context, userID string, now time.Time) ([]store.Grant, error) {
	if err := s.err(); err != nil {
		return nil, err
	}
	return s.Store.ListUserGrants(ctx, userID, now)
}

func (s *pageFailStore) GetUserByUsername(ctx context.Context, name string) (store.User, error) {
	if err := s.err(); err != nil {
		return store.User{}, err
	}
	return s.Store.GetUserByUsername(ctx, name)
}

// TestPagesClassifyFailuresAsJSONDoes: the HTML pages (sign-in, connected
// apps) classify a failure as the JSON endpoints do: an outage is 503
// temporarily_unavailable with Retry-After; a failure that is not an
// outage is 500 server_error without one (it used to be a 503 on the apps
// page and at sign-in, telling the browser to retry a bug).
func TestPagesClassifyFailuresAsJSONDoes(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(t testing.TB) store.Store) {
		st := &pageFailStore{Store: open(t)}
		e := start(t, st, nil)
		user, pw := e.user("pages")
		b := e.browser()
		b.signIn(user, pw)
		mustEqual(t, "apps page", b.do("GET", provider.PathApps, nil).status, http.StatusOK)

		for _, tc := range []struct {
			name       string
			err        error
			status     int
			code       string
			retryAfter string
		}{
			{"outage", fmt.Errorf("%w: connection refused", store.ErrUnavailable), http.StatusServiceUnavailable, oauth.CodeTemporarilyUnavailable, "5"},
			{"not an outage", errors.New("scan: unexpected column"), http.StatusInternalServerError, oauth.CodeServerError, ""},
		} {
			st.fail.Store(&tc.err)
			for _, p := range []struct {
				what string
				got  page
			}{
				{"apps page", b.do("GET", provider.PathApps, nil)},
				{"sign-in", e.browser().loginAttempt(user, pw)},
			} {
				if p.got.status != tc.status || p.got.header.Get("Retry-After") != tc.retryAfter {
					t.Errorf("%s, %s: %d with Retry-After %q, want %d with %q", tc.name, p.what, p.got.status, p.got.header.Get("Retry-After"), tc.status, tc.retryAfter)
				}
				if p.what == "apps page" && !strings.Contains(p.got.body, tc.code) {
					t.Errorf("%s, %s: the page does not name %s", tc.name, p.what, tc.code)
				}
			}
			st.fail.Store(nil)
		}
	})
}
