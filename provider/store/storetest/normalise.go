package storetest

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"testing"
	"time"

	"github.com/authzd/authz/provider/store"
)

// testTimeNormalisation hands the store instants with nanoseconds and a
// non-UTC location, and expects them back in UTC at microsecond precision:
// the precision a timestamptz keeps, so memory and postgres answer alike.
// The extra nanoseconds are under half a microsecond, so truncating and
// rounding agree.
func testTimeNormalisation(t *testing.T, newStore factory) {
	loc := time.FixedZone("IST", 5*3600+30*60)
	// odd(d) is at(d) in another zone with 321ns more; at(d) is what must come back.
	odd := func(d time.Duration) time.Time { return at(d).In(loc).Add(321 * time.Nanosecond) }
	check := func(t *testing.T, what string, got time.Time, d time.Duration) {
		t.Helper()
		if want := at(d); !got.Equal(want) {
			t.Errorf("%s = %v, want %v (UTC microseconds)", what, got, want)
		}
		if got.Location() != time.UTC {
			t.Errorf("%s location = %v, want UTC", what, got.Location())
		}
	}

	t.Run("Client", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		c := sampleClient("c1", odd(0))
		c.SecretExpiresAt, c.UpdatedAt = odd(time.Hour), odd(time.Minute)
		e.must(e.s.CreateClient(e.ctx, c), "CreateClient")
		got, err := e.s.GetClient(e.ctx, "c1")
		e.must(err, "GetClient")
		check(t, "CreatedAt", got.CreatedAt, 0)
		check(t, "UpdatedAt", got.UpdatedAt, time.Minute)
		check(t, "SecretExpiresAt", got.SecretExpiresAt, time.Hour)
		c.UpdatedAt = odd(2 * time.Minute)
		_, err = e.s.UpdateClient(e.ctx, c.ID, replaceWith(c))
		e.must(err, "UpdateClient")
		list, err := e.s.ListClients(e.ctx)
		e.must(err, "ListClients")
		check(t, "UpdatedAt after UpdateClient", list[0].UpdatedAt, 2*time.Minute)
	})

	t.Run("User", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		u := sampleUser("u1", "alice")
		u.CreatedAt = odd(0)
		e.must(e.s.CreateUser(e.ctx, u), "CreateUser")
		got, err := e.s.GetUserByUsername(e.ctx, "alice")
		e.must(err, "GetUserByUsername")
		check(t, "CreatedAt", got.CreatedAt, 0)
	})

	t.Run("CodeGrantAndRefresh", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		cl, u := e.client("c1"), e.user("u1")
		c, g := e.code(cl.ID, u.ID, func(c *store.AuthCode, g *store.Grant) {
			c.CreatedAt, c.ExpiresAt = odd(0), odd(codeTTL)
			g.CreatedAt, g.ExpiresAt = odd(0), odd(grantTTL)
		})
		rt := store.RefreshToken{
			ID: "rt1", Hash: randomHash(), GrantID: g.ID, ClientID: cl.ID,
			CreatedAt: odd(time.Second), ExpiresAt: odd(time.Hour),
		}
		got, err := e.s.ConsumeAuthCode(e.ctx, c.Hash, odd(time.Second), func(store.AuthCode) (store.Redemption, error) {
			return store.Redemption{Refresh: &rt}, nil
		})
		e.must(err, "ConsumeAuthCode")
		check(t, "code CreatedAt", got.CreatedAt, 0)
		check(t, "code ExpiresAt", got.ExpiresAt, codeTTL)
		gg := e.getGrant(g.ID)
		check(t, "grant CreatedAt", gg.CreatedAt, 0)
		check(t, "grant ExpiresAt", gg.ExpiresAt, grantTTL)
		check(t, "grant LastUsedAt (from now)", gg.LastUsedAt, time.Second)

		rot, err := e.s.RotateRefreshToken(e.ctx, rt.Hash, odd(2*time.Minute), grace,
			func(old store.RefreshToken, g store.Grant) (store.RefreshToken, error) {
				return store.RefreshToken{
					ID: "rt2", Hash: randomHash(), GrantID: g.ID, ClientID: old.ClientID, ParentID: old.ID,
					CreatedAt: odd(2 * time.Minute), ExpiresAt: odd(2 * time.Hour),
				}, nil
			})
		e.must(err, "RotateRefreshToken")
		check(t, "Rotation.Old CreatedAt", rot.Old.CreatedAt, time.Second)
		check(t, "Rotation.New ExpiresAt", rot.New.ExpiresAt, 2*time.Hour)
		old := e.getRefresh(rt.Hash)
		check(t, "refresh CreatedAt", old.CreatedAt, time.Second)
		check(t, "refresh ExpiresAt", old.ExpiresAt, time.Hour)
		check(t, "refresh RotatedAt (from now)", old.RotatedAt, 2*time.Minute)
		next := e.getRefresh(rot.New.Hash)
		check(t, "successor CreatedAt", next.CreatedAt, 2*time.Minute)
		check(t, "successor ExpiresAt", next.ExpiresAt, 2*time.Hour)
		check(t, "grant LastUsedAt after rotation", e.getGrant(g.ID).LastUsedAt, 2*time.Minute)

		e.must(e.s.RevokeGrant(e.ctx, g.ID, odd(time.Hour)), "RevokeGrant")
		list, err := e.s.ListUserGrants(e.ctx, u.ID, odd(time.Minute))
		e.must(err, "ListUserGrants")
		if len(list) != 0 {
			t.Errorf("ListUserGrants = %v, want none after revocation", grantIDs(list))
		}
		check(t, "grant RevokedAt (from now)", e.getGrant(g.ID).RevokedAt, time.Hour)
	})

	t.Run("ConsentSessionTokenKey", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		c, u := e.client("c1").ID, e.user("u1").ID

		e.must(e.s.AddConsent(e.ctx, store.Consent{UserID: u, ClientID: c, Scopes: []string{"read"}, UpdatedAt: odd(time.Minute)}), "AddConsent")
		con, err := e.s.GetConsent(e.ctx, u, c)
		e.must(err, "GetConsent")
		check(t, "consent UpdatedAt", con.UpdatedAt, time.Minute)

		sess := store.Session{Hash: randomHash(), UserID: u, CreatedAt: odd(0), ExpiresAt: odd(time.Hour)}
		e.must(e.s.CreateSession(e.ctx, sess), "CreateSession")
		gotSess, _, err := e.s.GetSessionUser(e.ctx, sess.Hash, odd(time.Minute))
		e.must(err, "GetSessionUser")
		check(t, "session CreatedAt", gotSess.CreatedAt, 0)
		check(t, "session ExpiresAt", gotSess.ExpiresAt, time.Hour)

		iat := store.InitialAccessToken{Hash: randomHash(), CreatedAt: odd(0), ExpiresAt: odd(time.Hour)}
		e.must(e.s.CreateInitialAccessToken(e.ctx, iat), "CreateInitialAccessToken")
		gotIAT, err := e.s.GetInitialAccessToken(e.ctx, iat.Hash, odd(time.Minute))
		e.must(err, "GetInitialAccessToken")
		check(t, "initial access token CreatedAt", gotIAT.CreatedAt, 0)
		check(t, "initial access token ExpiresAt", gotIAT.ExpiresAt, time.Hour)

		k1 := store.SigningKey{ID: "k1", Algorithm: "EdDSA", PublicJWK: []byte(`{"kty":"OKP"}`), EncryptedPrivateKey: []byte{1}, CreatedAt: odd(0)}
		k2 := store.SigningKey{ID: "k2", Algorithm: "EdDSA", PublicJWK: []byte(`{"kty":"OKP"}`), EncryptedPrivateKey: []byte{2}, CreatedAt: odd(time.Hour)}
		e.must(e.s.RotateSigningKey(e.ctx, k1), "RotateSigningKey k1")
		e.must(e.s.RotateSigningKey(e.ctx, k2), "RotateSigningKey k2")
		keys, err := e.s.ListSigningKeys(e.ctx)
		e.must(err, "ListSigningKeys")
		if len(keys) != 2 {
			t.Fatalf("ListSigningKeys = %d keys, want 2", len(keys))
		}
		check(t, "k2 CreatedAt", keys[0].CreatedAt, time.Hour)
		check(t, "k1 CreatedAt", keys[1].CreatedAt, 0)
		check(t, "k1 RetiredAt", keys[1].RetiredAt, time.Hour)
	})
}

// fixedHash is a deterministic 32-byte digest, for values built twice.
func fixedHash(s string) []byte {
	sum := sha256.Sum256([]byte(s))
	return sum[:]
}

// scribbleBytes and scribbleStrings overwrite what a caller could still hold.
func scribbleBytes(b []byte) {
	for i := range b {
		b[i] = 'X'
	}
}

func scribbleStrings(s []string) {
	for i := range s {
		s[i] = "scribbled"
	}
}

// testNoAliasing: a store keeps its own copies. Changing a slice after
// passing it in, or one it handed out, must not change what it holds.
func testNoAliasing(t *testing.T, newStore factory) {

	t.Run("Client", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		mk := func() store.Client {
			c := sampleClient("c1", base)
			c.SecretHash, c.RegistrationTokenHash = fixedHash("secret"), fixedHash("reg")
			return c
		}
		scribble := func(c store.Client) {
			scribbleBytes(c.SecretHash)
			scribbleBytes(c.RegistrationTokenHash)
			scribbleBytes(c.Metadata.JWKS)
			m := c.Metadata
			for _, s := range [][]string{m.RedirectURIs, m.GrantTypes, m.ResponseTypes, m.Scopes, m.Resources, m.Contacts} {
				scribbleStrings(s)
			}
		}
		in := mk()
		e.must(e.s.CreateClient(e.ctx, in), "CreateClient")
		scribble(in)
		got, err := e.s.GetClient(e.ctx, "c1")
		e.must(err, "GetClient")
		equal(t, "client after the caller changed its input", got, mk(), canonClient)
		scribble(got)
		list, err := e.s.ListClients(e.ctx)
		e.must(err, "ListClients")
		scribble(list[0])
		got, err = e.s.GetClient(e.ctx, "c1")
		e.must(err, "GetClient")
		equal(t, "client after the caller changed its outputs", got, mk(), canonClient)

		upd := mk()
		upd.UpdatedAt = at(time.Minute)
		_, err = e.s.UpdateClient(e.ctx, "c1", replaceWith(upd))
		e.must(err, "UpdateClient")
		scribble(upd)
		got, err = e.s.GetClient(e.ctx, "c1")
		e.must(err, "GetClient")
		want := mk()
		want.UpdatedAt = at(time.Minute)
		equal(t, "client after the caller changed its update", got, want, canonClient)
	})

	t.Run("CodeGrantRefresh", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		e.client("c1")
		e.user("u1")
		mk := func() (store.AuthCode, store.Grant) {
			h := fixedHash("code")
			return store.AuthCode{
					Hash: h, ClientID: "c1", UserID: "u1", GrantID: "g1", RedirectURI: "https://app.example.com/cb",
					CodeChallenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
					Scopes:        []string{"openid", "read"}, Resources: []string{"https://api.example.com/"},
					CreatedAt: base, ExpiresAt: at(codeTTL),
				}, store.Grant{
					ID: "g1", ClientID: "c1", UserID: "u1",
					Scopes: []string{"openid", "read"}, Resources: []string{"https://api.example.com/"},
					CodeHash: fixedHash("code"), CreatedAt: base, ExpiresAt: at(grantTTL),
				}
		}
		scribbleGrant := func(g store.Grant) {
			scribbleStrings(g.Scopes)
			scribbleStrings(g.Resources)
			scribbleBytes(g.CodeHash)
		}
		code, grant := mk()
		e.must(e.s.CreateAuthCode(e.ctx, code, grant), "CreateAuthCode")
		scribbleBytes(code.Hash)
		scribbleStrings(code.Scopes)
		scribbleStrings(code.Resources)
		scribbleGrant(grant)
		wantCode, wantGrant := mk()
		equal(t, "grant after the caller changed its input", e.getGrant("g1"), wantGrant, canonGrant)

		rt := store.RefreshToken{ID: "rt1", Hash: fixedHash("rt1"), GrantID: "g1", ClientID: "c1", CreatedAt: at(time.Second), ExpiresAt: at(time.Hour)}
		got, err := e.s.ConsumeAuthCode(e.ctx, fixedHash("code"), at(time.Second), func(store.AuthCode) (store.Redemption, error) {
			out := rt
			return store.Redemption{Refresh: &out}, nil
		})
		e.must(err, "ConsumeAuthCode")
		equal(t, "code after the caller changed its input", got, wantCode, canonCode)
		scribbleStrings(got.Scopes)
		scribbleBytes(got.Hash)
		wantGrant.LastUsedAt = at(time.Second)
		scribbleGrant(e.getGrant("g1"))
		list, err := e.s.ListUserGrants(e.ctx, "u1", at(time.Second))
		e.must(err, "ListUserGrants")
		for _, g := range list {
			scribbleGrant(g)
		}
		equal(t, "grant after the caller changed its outputs", e.getGrant("g1"), wantGrant, canonGrant)

		scribbleBytes(rt.Hash)
		var made store.RefreshToken
		rot, err := e.s.RotateRefreshToken(e.ctx, fixedHash("rt1"), at(2*time.Minute), grace,
			func(old store.RefreshToken, g store.Grant) (store.RefreshToken, error) {
				scribbleBytes(old.Hash) // next gets copies too
				scribbleGrant(g)
				made = store.RefreshToken{ID: "rt2", Hash: fixedHash("rt2"), GrantID: "g1", ClientID: "c1", ParentID: "rt1",
					CreatedAt: at(2 * time.Minute), ExpiresAt: at(2 * time.Hour)}
				return made, nil
			})
		e.must(err, "RotateRefreshToken")
		scribbleBytes(made.Hash)
		scribbleBytes(rot.New.Hash)
		scribbleBytes(rot.Old.Hash)
		scribbleGrant(rot.Grant)
		old, g, err := e.s.GetRefreshToken(e.ctx, fixedHash("rt1"))
		e.must(err, "GetRefreshToken rt1")
		if old.ID != "rt1" || !bytes.Equal(old.Hash, fixedHash("rt1")) || !old.RotatedAt.Equal(at(2*time.Minute)) {
			t.Errorf("rt1 = %+v, want rotated at %v", old, at(2*time.Minute))
		}
		wantGrant.LastUsedAt = at(2 * time.Minute)
		equal(t, "grant after next and the caller changed copies", g, wantGrant, canonGrant)
		next, _, err := e.s.GetRefreshToken(e.ctx, fixedHash("rt2"))
		e.must(err, "GetRefreshToken rt2")
		if next.ID != "rt2" || !bytes.Equal(next.Hash, fixedHash("rt2")) {
			t.Errorf("successor = %+v, want rt2", next)
		}
	})

	t.Run("ConsentKeySession", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		c, u := e.client("c1").ID, e.user("u1").ID

		mkConsent := func() store.Consent {
			return store.Consent{UserID: u, ClientID: c, Scopes: []string{"read"}, Resources: []string{"https://api.example.com/"}, UpdatedAt: base}
		}
		in := mkConsent()
		e.must(e.s.AddConsent(e.ctx, in), "AddConsent")
		scribbleStrings(in.Scopes)
		scribbleStrings(in.Resources)
		got, err := e.s.GetConsent(e.ctx, u, c)
		e.must(err, "GetConsent")
		scribbleStrings(got.Scopes)
		got, err = e.s.GetConsent(e.ctx, u, c)
		e.must(err, "GetConsent")
		equal(t, "consent", got, mkConsent(), canonConsent)

		jwk, _ := json.Marshal(map[string]string{"kty": "OKP", "crv": "Ed25519", "kid": "k1"})
		mkKey := func() store.SigningKey {
			return store.SigningKey{ID: "k1", Algorithm: "EdDSA", PublicJWK: append([]byte(nil), jwk...), EncryptedPrivateKey: fixedHash("priv"), CreatedAt: base}
		}
		k := mkKey()
		e.must(e.s.RotateSigningKey(e.ctx, k), "RotateSigningKey")
		scribbleBytes(k.PublicJWK)
		scribbleBytes(k.EncryptedPrivateKey)
		keys, err := e.s.ListSigningKeys(e.ctx)
		e.must(err, "ListSigningKeys")
		scribbleBytes(keys[0].PublicJWK)
		scribbleBytes(keys[0].EncryptedPrivateKey)
		keys, err = e.s.ListSigningKeys(e.ctx)
		e.must(err, "ListSigningKeys")
		equal(t, "signing keys", keys, []store.SigningKey{mkKey()}, canonKeys)

		sess := store.Session{Hash: fixedHash("cookie"), UserID: u, CreatedAt: base, ExpiresAt: at(time.Hour)}
		e.must(e.s.CreateSession(e.ctx, sess), "CreateSession")
		scribbleBytes(sess.Hash)
		gotSess, _, err := e.s.GetSessionUser(e.ctx, fixedHash("cookie"), base)
		e.must(err, "GetSessionUser after the caller changed its input")
		scribbleBytes(gotSess.Hash)
		_, _, err = e.s.GetSessionUser(e.ctx, fixedHash("cookie"), base)
		e.must(err, "GetSessionUser after the caller changed its output")

		iat := store.InitialAccessToken{Hash: fixedHash("iat"), CreatedAt: base}
		e.must(e.s.CreateInitialAccessToken(e.ctx, iat), "CreateInitialAccessToken")
		scribbleBytes(iat.Hash)
		gotIAT, err := e.s.GetInitialAccessToken(e.ctx, fixedHash("iat"), base)
		e.must(err, "GetInitialAccessToken after the caller changed its input")
		scribbleBytes(gotIAT.Hash)
		_, err = e.s.GetInitialAccessToken(e.ctx, fixedHash("iat"), base)
		e.must(err, "GetInitialAccessToken after the caller changed its output")
	})
}
