package postgres

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authzd/authz/provider/store"
	"github.com/authzd/authz/provider/store/postgres/pgtest"
)

// TestRowDecodingMatchesPgx: grants, codes and refresh tokens decoded by
// scan.go from binary rows (the default, and here required: a fallback
// fails the test) equal what pgx's Scan makes of the same rows as text
// (simple protocol, the fallback), and what was stored, for the values
// that stress a decoder: empty, one-element and quoted or non-ASCII
// arrays, times before 1970 and 2000 and far ahead, NULL and non-NULL
// optional times, empty strings and non-UTF-8 bytes.
func TestRowDecodingMatchesPgx(t *testing.T) {
	t.Parallel()
	u := pgtest.URL(t)
	open := func(url string) *pgxpool.Pool {
		pool, err := pgxpool.New(t.Context(), url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		return pool
	}
	binPool, textPool := open(u), open(u+"&default_query_exec_mode=simple_protocol")
	ctx := t.Context()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	base := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	must(exec(ctx, binPool, insertClient, clientValues(store.Client{ID: "c", CreatedAt: base, UpdatedAt: base}, []byte(`{}`))...))
	must(insertUser(ctx, binPool, store.User{ID: "u", Username: "u", CreatedAt: base}))

	moon := time.Date(1969, 7, 20, 20, 17, 40, 123456000, time.UTC)
	y2k := time.Date(1999, 12, 31, 23, 59, 59, 999999000, time.UTC)
	far := time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC)
	cases := []struct {
		name string
		g    store.Grant
		c    store.AuthCode
		r    store.RefreshToken
	}{
		{name: "empty",
			g: store.Grant{ID: "", CodeHash: []byte{}, CreatedAt: base, ExpiresAt: base.Add(time.Hour)},
			c: store.AuthCode{Hash: []byte{}, CreatedAt: base, ExpiresAt: base.Add(time.Minute)},
			r: store.RefreshToken{Hash: []byte{}, ID: "r0", CreatedAt: base, ExpiresAt: base}},
		{name: "one",
			g: store.Grant{ID: "g1", Scopes: []string{"read"}, Resources: []string{"https://mcp.example.com/mcp"}, CodeHash: []byte{0, 0xff, '\\', 'x'},
				CreatedAt: moon, ExpiresAt: far, LastUsedAt: y2k, RevokedAt: base, AuthTime: moon},
			c: store.AuthCode{Hash: []byte{0, 0xff, '\\', 'x'}, RedirectURI: "http://127.0.0.1:1/cb", CodeChallenge: "ch", Nonce: "n",
				Scopes: []string{"read"}, Resources: []string{"https://mcp.example.com/mcp"}, CreatedAt: y2k, ExpiresAt: far, AuthTime: y2k},
			r: store.RefreshToken{Hash: []byte{0x80, 0}, ID: "r1", ParentID: "p", CreatedAt: moon, ExpiresAt: far, RotatedAt: y2k.Add(time.Microsecond)}},
		{name: "many",
			g: store.Grant{ID: "id with ' quote", Scopes: []string{"openid", "", "scope with spaces", `quote"s and \ back`, "ünïcødé", "{braces},commas", "NULL"},
				Resources: []string{"https://a.example/x", "https://b.example/y?q=1"}, CodeHash: []byte("\xfe\xed"),
				CreatedAt: base.Add(-time.Microsecond), ExpiresAt: far, AuthTime: base},
			c: store.AuthCode{Hash: []byte("\xfe\xed"), Nonce: "n\u00e9\x01", Scopes: []string{"", ""}, Resources: []string{},
				CreatedAt: base, ExpiresAt: base.Add(time.Minute)},
			r: store.RefreshToken{Hash: []byte{1}, ID: "r2", CreatedAt: base, ExpiresAt: base.Add(time.Hour)}},
	}
	for _, tc := range cases {
		tc.g.ClientID, tc.g.UserID = "c", "u"
		tc.c.ClientID, tc.c.UserID, tc.c.GrantID = "c", "u", tc.g.ID
		tc.r.ClientID, tc.r.GrantID = "c", tc.g.ID
		must(exec(ctx, binPool, SQLCreateAuthCode, CreateAuthCodeArgs(tc.c, tc.g)...))
		must(exec(ctx, binPool, SQLInsertRefresh, RefreshArgs(tc.r)...))

		check := func(what string, want any, read func(pool *pgxpool.Pool, fast bool) (any, error)) {
			t.Helper()
			fast, err := read(binPool, true)
			must(err)
			slow, err := read(textPool, false)
			must(err)
			if !reflect.DeepEqual(fast, slow) || !reflect.DeepEqual(fast, want) {
				t.Errorf("%s %s:\nbinary %#v\ntext   %#v\nstored %#v", tc.name, what, fast, slow, want)
			}
		}
		check("grant", wantGrant(tc.g), func(pool *pgxpool.Pool, fast bool) (any, error) {
			row := pool.QueryRow(ctx, `SELECT `+grantCols+` FROM grants WHERE id = $1`, tc.g.ID)
			if fast {
				return scanRow(row, decodeGrant, func(pgx.Rows) (store.Grant, error) {
					t.Errorf("%s grant: binary row fell back to pgx's Scan", tc.name)
					return store.Grant{}, nil
				})
			}
			return scanGrant(row)
		})
		check("code", wantCode(tc.c), func(pool *pgxpool.Pool, fast bool) (any, error) {
			row := pool.QueryRow(ctx, `SELECT `+codeCols+` FROM auth_codes WHERE hash = $1`, tc.c.Hash)
			if fast {
				return scanRow(row, decodeCode, func(pgx.Rows) (store.AuthCode, error) {
					t.Errorf("%s code: binary row fell back to pgx's Scan", tc.name)
					return store.AuthCode{}, nil
				})
			}
			return scanCode(row)
		})
		check("refresh token", wantRefresh(tc.r), func(pool *pgxpool.Pool, fast bool) (any, error) {
			row := pool.QueryRow(ctx, SQLGetRefresh, tc.r.Hash)
			if fast {
				return scanRow(row, decodeRefresh, func(pgx.Rows) (store.RefreshToken, error) {
					t.Errorf("%s refresh token: binary row fell back to pgx's Scan", tc.name)
					return store.RefreshToken{}, nil
				})
			}
			return scanRefresh(row)
		})
	}

	// No row is ErrNotFound on either path; a row of another shape (here
	// a text column where a time is expected) is pgx's error, not a
	// silently zero value.
	for _, pool := range []*pgxpool.Pool{binPool, textPool} {
		if _, err := scanGrant(pool.QueryRow(ctx, `SELECT `+grantCols+` FROM grants WHERE id = 'none'`)); err != store.ErrNotFound {
			t.Errorf("no row: %v", err)
		}
		if _, err := scanRefresh(pool.QueryRow(ctx, `SELECT hash, id, grant_id, client_id, parent_id, id, expires_at, rotated_at FROM refresh_tokens LIMIT 1`)); err == nil {
			t.Error("a text column scanned as a time without error")
		}
	}
}

func exec(ctx context.Context, pool *pgxpool.Pool, sql string, args ...any) error {
	_, err := pool.Exec(ctx, sql, args...)
	return err
}

// wantGrant, wantCode and wantRefresh are what reading g back must give:
// arrays never nil, times as the database keeps them.
func wantGrant(g store.Grant) store.Grant {
	g.Scopes, g.Resources = arr(g.Scopes), arr(g.Resources)
	g.CreatedAt, g.ExpiresAt, g.LastUsedAt, g.RevokedAt, g.AuthTime = ts(g.CreatedAt), ts(g.ExpiresAt), fromNullTS(g.LastUsedAt), fromNullTS(g.RevokedAt), fromNullTS(g.AuthTime)
	return g
}

func wantCode(c store.AuthCode) store.AuthCode {
	c.Scopes, c.Resources = arr(c.Scopes), arr(c.Resources)
	c.CreatedAt, c.ExpiresAt, c.AuthTime = ts(c.CreatedAt), ts(c.ExpiresAt), fromNullTS(c.AuthTime)
	return c
}

func wantRefresh(r store.RefreshToken) store.RefreshToken {
	r.CreatedAt, r.ExpiresAt, r.RotatedAt = ts(r.CreatedAt), ts(r.ExpiresAt), fromNullTS(r.RotatedAt)
	return r
}

func fromNullTS(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return ts(t)
}
