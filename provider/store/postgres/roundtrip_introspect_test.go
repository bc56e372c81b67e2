package postgres_test

import (
	"testing"
	"time"

	"github.com/authzd/authz/provider/store"
)

// TestAccessTokenStatusTakesOneRoundTrip: what introspection and UserInfo
// ask the store about a signed access token (is it revoked, does its grant
// or client still exist) costs one round trip in every case once the
// statements are prepared, not one per question (issue 13: introspection
// must not regress). A count, never a time.
func TestAccessTokenStatusTakesOneRoundTrip(t *testing.T) {
	st, _, rt, must := roundTripStore(t)
	ctx := t.Context()
	code := hash("code")
	must(st.CreateAuthCode(ctx,
		store.AuthCode{Hash: code, ClientID: "c", UserID: "u", GrantID: "g", CreatedAt: base, ExpiresAt: base.Add(time.Minute)},
		store.Grant{ID: "g", ClientID: "c", UserID: "u", CodeHash: code, CreatedAt: base, ExpiresAt: base.Add(24 * time.Hour)}))
	must(st.RevokeAccessToken(ctx, "revoked", base.Add(time.Hour)))

	now := base.Add(time.Second)
	for _, tc := range []struct {
		what                   string
		jti, grantID, clientID string
		live                   bool
	}{
		{"client_credentials token", "j", "", "c", true},
		{"revoked client_credentials token", "revoked", "", "c", false},
		{"token of a missing client", "j", "", "gone", false},
		{"token of a grant", "j", "g", "c", true},
		{"revoked token of a grant", "revoked", "g", "c", false},
		{"token of a missing grant", "j", "gone", "c", false},
	} {
		ask := func() store.AccessTokenStatus {
			s, err := st.AccessTokenStatus(ctx, tc.jti, tc.grantID, tc.clientID, now)
			must(err)
			return s
		}
		ask() // the first use of a statement prepares it
		rt.Reset()
		s := ask()
		n := rt.Count()
		t.Logf("%s: %d round trips", tc.what, n)
		if n != 1 {
			t.Errorf("AccessTokenStatus, %s: %d round trips, want 1", tc.what, n)
		}
		if s.Live(now) != tc.live {
			t.Errorf("AccessTokenStatus, %s: live %v, want %v", tc.what, s.Live(now), tc.live)
		}
	}
}
