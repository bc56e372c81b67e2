package storetest

import (
	"testing"
	"time"

	"github.com/authzd/authz/provider/store"
)

// accessTokenRevoked asks AccessTokenStatus only whether jti is revoked at now.
func (e *env) accessTokenRevoked(jti string, now time.Time) (bool, error) {
	st, err := e.s.AccessTokenStatus(e.ctx, jti, "", "", now)
	return st.Revoked, err
}

// testAccessTokenStatus: the one read introspection and UserInfo make about
// a signed access token answers, at one instant, whether its jti is revoked
// and what became of its grant, or (without a grant) of its client. A
// missing grant or client is an answer (Found false), not an error.
func testAccessTokenStatus(t *testing.T, newStore factory) {
	e := newEnv(t, newStore)
	c, gone, u := e.client("c1").ID, e.client("c-gone").ID, e.user("u1").ID
	live := e.grant(c, u)
	revoked := e.grant(c, u)
	e.must(e.s.RevokeGrant(e.ctx, revoked.ID, at(time.Minute)), "RevokeGrant")
	revoked.RevokedAt = at(time.Minute)
	short := e.grant(c, u, grantExpiresAt(at(time.Hour)))
	ofGone := e.grant(gone, u)
	e.must(e.s.DeleteClient(e.ctx, gone), "DeleteClient")

	exp := at(30 * time.Minute)
	e.must(e.s.RevokeAccessToken(e.ctx, "jti-revoked", exp), "RevokeAccessToken")
	now := at(2 * time.Minute)

	for _, tt := range []struct {
		name                   string
		jti, grantID, clientID string
		now                    time.Time
		revoked, found         bool
		grant                  *store.Grant
		live                   bool
	}{
		{"not revoked, client present", "jti-1", "", c, now, false, true, nil, true},
		{"not revoked, client missing", "jti-1", "", "c-none", now, false, false, nil, false},
		{"not revoked, client deleted", "jti-1", "", gone, now, false, false, nil, false},
		{"revoked, client present", "jti-revoked", "", c, now, true, true, nil, false},
		{"revoked, one microsecond before the entry expires", "jti-revoked", "", c, exp.Add(-time.Microsecond), true, true, nil, false},
		{"revoked, entry expired", "jti-revoked", "", c, exp, false, true, nil, true},
		{"not revoked, grant live", "jti-1", live.ID, c, now, false, true, &live, true},
		{"revoked, grant live", "jti-revoked", live.ID, c, now, true, true, &live, false},
		{"revoked entry expired, grant live", "jti-revoked", live.ID, c, exp, false, true, &live, true},
		{"grant revoked", "jti-1", revoked.ID, c, now, false, true, &revoked, false},
		{"grant one microsecond before its end", "jti-1", short.ID, c, at(time.Hour - time.Microsecond), false, true, &short, true},
		{"grant past its lifetime", "jti-1", short.ID, c, at(time.Hour), false, true, &short, false},
		{"grant missing", "jti-1", "grant-none", c, now, false, false, nil, false},
		{"grant of a deleted client", "jti-1", ofGone.ID, gone, now, false, false, nil, false},
		{"revoked, grant missing", "jti-revoked", "grant-none", c, now, true, false, nil, false},
	} {
		st, err := e.s.AccessTokenStatus(e.ctx, tt.jti, tt.grantID, tt.clientID, tt.now)
		e.must(err, "AccessTokenStatus "+tt.name)
		if st.Revoked != tt.revoked || st.Found != tt.found {
			t.Errorf("AccessTokenStatus %s: revoked %v, found %v; want %v, %v", tt.name, st.Revoked, st.Found, tt.revoked, tt.found)
		}
		switch {
		case tt.grant == nil && st.Grant != nil:
			t.Errorf("AccessTokenStatus %s: grant %+v, want none", tt.name, *st.Grant)
		case tt.grant != nil && st.Grant == nil:
			t.Errorf("AccessTokenStatus %s: no grant, want %s", tt.name, tt.grant.ID)
		case tt.grant != nil:
			equal(t, "AccessTokenStatus "+tt.name+": grant", *st.Grant, *tt.grant, canonGrant)
		}
		if got := st.Live(tt.now); got != tt.live {
			t.Errorf("AccessTokenStatus %s: Live = %v, want %v", tt.name, got, tt.live)
		}
	}
}
