package postgres_test

import (
	"encoding/binary"
	"strconv"
	"testing"
	"time"

	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/store"
	"github.com/authzd/authz/provider/store/postgres"
	"github.com/authzd/authz/provider/store/postgres/pgtest"
)

// The store's own work per grant operation, one call at a time on one
// connection, so allocs/op and B/op repeat exactly (README, "Per-request
// work"). The time per op is the round trips' and says little on a shared
// machine; nothing asserts on any of it.

// benchHash is a distinct 32-byte hash per (chain, i).
func benchHash(chain, i uint64) []byte {
	var b [32]byte
	binary.BigEndian.PutUint64(b[:8], chain)
	binary.BigEndian.PutUint64(b[8:16], i)
	return b[:]
}

// benchStore holds client "c" and user "u", as the server's grants need.
func benchStore(b *testing.B) *postgres.Store {
	b.Helper()
	st := postgres.New(pgtest.Pool(b))
	benchMust(b, st.CreateClient(b.Context(), store.Client{ID: "c", Metadata: store.ClientMetadata{TokenEndpointAuthMethod: oauth.AuthNone}, CreatedAt: base, UpdatedAt: base}))
	benchMust(b, st.CreateUser(b.Context(), store.User{ID: "u", Username: "u", PasswordHash: "x", CreatedAt: base}))
	return st
}

func benchMust(b *testing.B, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}

// benchGrant stores grant gid with its code (as the consent step does)
// with the scopes and resources a real grant carries. It lives long
// enough for a benchmark's ops a minute apart.
func benchGrant(b *testing.B, st *postgres.Store, gid string, code []byte) {
	b.Helper()
	scopes, resources := []string{"openid", "read", "write"}, []string{"https://mcp.example.com/mcp"}
	benchMust(b, st.CreateAuthCode(b.Context(),
		store.AuthCode{Hash: code, ClientID: "c", UserID: "u", GrantID: gid, RedirectURI: "http://127.0.0.1:8080/cb",
			CodeChallenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", Scopes: scopes, Resources: resources,
			CreatedAt: base, ExpiresAt: base.Add(time.Minute), AuthTime: base},
		store.Grant{ID: gid, ClientID: "c", UserID: "u", CodeHash: code, Scopes: scopes, Resources: resources,
			CreatedAt: base, ExpiresAt: base.Add(10 * 365 * 24 * time.Hour), AuthTime: base}))
}

// firstRefresh is a redemption storing the grant's first refresh token
// and a grant.created event, as the server's code exchange does.
func firstRefresh(gid string, h []byte) store.RedeemFunc {
	return func(store.AuthCode) (store.Redemption, error) {
		return store.Redemption{
			Refresh: &store.RefreshToken{ID: gid + "-rt", Hash: h, GrantID: gid, ClientID: "c", CreatedAt: base, ExpiresAt: base.Add(12 * time.Hour)},
			Events: []store.AuditEvent{{Time: base, Name: "grant.created", Actor: "user", Subject: "u", ClientID: "c",
				ClientIP: "192.0.2.1", RequestID: "req-" + gid, Outcome: "ok", Details: map[string]string{"grant_id": gid, "scope": "openid read write"}}},
		}, nil
	}
}

// BenchmarkRotateRefreshToken is one winning rotation of one chain per op,
// last_used_at touched every op (each op is a minute later).
func BenchmarkRotateRefreshToken(b *testing.B) {
	st := benchStore(b)
	ctx := b.Context()
	code := benchHash(1<<63, 0)
	benchGrant(b, st, "g", code)
	_, err := st.ConsumeAuthCode(ctx, code, base, firstRefresh("g", benchHash(0, 0)))
	benchMust(b, err)
	var i uint64
	for b.Loop() {
		now := base.Add(time.Duration(i+1) * time.Minute)
		h := benchHash(0, i+1)
		_, err := st.RotateRefreshToken(ctx, benchHash(0, i), now, 30*time.Second, func(old store.RefreshToken, g store.Grant) (store.RefreshToken, error) {
			return store.RefreshToken{ID: "rt" + strconv.FormatUint(i+1, 10), Hash: h, GrantID: g.ID, ClientID: old.ClientID, ParentID: old.ID,
				CreatedAt: now, ExpiresAt: now.Add(12 * time.Hour)}, nil
		})
		benchMust(b, err)
		i++
	}
}

// BenchmarkConsumeAuthCode is one successful code redemption per op, its
// first refresh token and audit event stored with it. The codes are made
// before the timer starts.
func BenchmarkConsumeAuthCode(b *testing.B) {
	st := benchStore(b)
	ctx := b.Context()
	made, next := 0, 0
	for b.Loop() {
		if next == made {
			b.StopTimer()
			for range 256 {
				benchGrant(b, st, "g"+strconv.Itoa(made), benchHash(1<<63|uint64(made), 0))
				made++
			}
			b.StartTimer()
		}
		gid := "g" + strconv.Itoa(next)
		_, err := st.ConsumeAuthCode(ctx, benchHash(1<<63|uint64(next), 0), base, firstRefresh(gid, benchHash(uint64(next), 0)))
		benchMust(b, err)
		next++
	}
}
