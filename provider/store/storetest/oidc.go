package storetest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/authzd/authz/provider/store"
)

// testOIDC covers what the OpenID Connect layer stores: profile claims,
// upstream identities (created once, linked only by verified email, gone
// with their user, one user under concurrent first sign-ins), the nonce and
// auth_time an ID token repeats. ID-token keys are signing keys of their own
// purpose: see testSigningKeyPurposes.
func testOIDC(t *testing.T, newStore factory) {
	t.Run("ProfileRoundTrip", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		u := sampleUser("u-prof", "prof")
		u.Name, u.Email, u.EmailVerified, u.Provider = "Ada Lovelace", "ada@example.com", true, "corp"
		e.must(e.s.CreateUser(e.ctx, u), "CreateUser")
		got, err := e.s.GetUser(e.ctx, u.ID)
		e.must(err, "GetUser")
		equal(t, "user", got, u, canonUser)
		e.must(e.s.SetUserProfile(e.ctx, u.ID, "Ada", "", false), "SetUserProfile")
		got, _ = e.s.GetUserByUsername(e.ctx, u.Username)
		if got.Name != "Ada" || got.Email != "" || got.EmailVerified {
			t.Fatalf("profile after SetUserProfile = %+v", got)
		}
		wantErr(t, "SetUserProfile unknown", e.s.SetUserProfile(e.ctx, "nobody", "", "", false), store.ErrNotFound)
	})

	signIn := func(e *env, provider, sub, id, email string, verified, link bool) (store.User, bool, error) {
		return e.s.SignInUpstream(e.ctx, store.UpstreamSignIn{
			Provider: provider, Subject: sub, LinkVerifiedEmail: link,
			Profile: store.User{ID: id, Username: provider + ":" + sub, Name: "N " + id, Email: email, EmailVerified: verified, Provider: provider, CreatedAt: base},
		}, base)
	}

	t.Run("UpstreamCreatedOnceThenFound", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		u, created, err := signIn(e, "corp", "sub-1", "u-a", "a@example.com", true, false)
		e.must(err, "first sign-in")
		if !created || u.ID != "u-a" || u.Provider != "corp" {
			t.Fatalf("first sign-in = %+v created=%v", u, created)
		}
		u2, created, err := signIn(e, "corp", "sub-1", "u-b", "new@example.com", true, false)
		e.must(err, "second sign-in")
		if created || u2.ID != "u-a" || u2.Email != "new@example.com" {
			t.Fatalf("second sign-in = %+v created=%v, want u-a with the copied email", u2, created)
		}
		if _, err := e.s.GetUser(e.ctx, "u-b"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("a second user was created: %v", err)
		}
		ids, err := e.s.ListIdentities(e.ctx, "u-a")
		e.must(err, "ListIdentities")
		if len(ids) != 1 || ids[0].Provider != "corp" || ids[0].Subject != "sub-1" {
			t.Fatalf("identities = %+v", ids)
		}
		// Same subject at another provider is another person.
		_, created, err = signIn(e, "other", "sub-1", "u-c", "", false, false)
		e.must(err, "other provider")
		if !created {
			t.Fatal("a subject of another provider reused the user")
		}
		// Deleting the user removes the identity: the next sign-in starts over.
		e.must(e.s.DeleteUser(e.ctx, "u-a"), "DeleteUser")
		if ids, _ := e.s.ListIdentities(e.ctx, "u-a"); len(ids) != 0 {
			t.Fatalf("identities after delete = %+v", ids)
		}
		_, created, err = signIn(e, "corp", "sub-1", "u-d", "a@example.com", true, false)
		e.must(err, "sign-in after delete")
		if !created {
			t.Fatal("sign-in after delete found a deleted user")
		}
	})

	t.Run("LinkOnlyToVerifiedEmail", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		local := sampleUser("u-local", "local")
		local.Email, local.EmailVerified = "Bob@Example.com", true
		e.must(e.s.CreateUser(e.ctx, local), "CreateUser")
		unverified := sampleUser("u-unv", "unv")
		unverified.Email = "carol@example.com"
		e.must(e.s.CreateUser(e.ctx, unverified), "CreateUser")

		// Linking not allowed: a new user even with the same address (kept
		// unverified here so it is no link target for the cases below).
		u, created, err := signIn(e, "corp", "s-nolink", "u-n1", "bob@example.com", false, false)
		e.must(err, "no-link sign-in")
		if !created || u.ID == local.ID {
			t.Fatal("linked without permission")
		}
		// A local address that is not verified is never a link target.
		u, created, err = signIn(e, "corp", "s-carol", "u-n2", "carol@example.com", true, true)
		e.must(err, "unverified local")
		if !created || u.ID == unverified.ID {
			t.Fatal("linked to a user whose email is not verified")
		}
		// Verified on both sides, allowed: the existing user (case-insensitive address).
		u, created, err = signIn(e, "corp2", "s-bob", "u-n3", "bob@example.com", true, true)
		e.must(err, "link")
		if created || u.ID != local.ID {
			t.Fatalf("link = %+v created=%v, want %s", u, created, local.ID)
		}
		u, _, err = signIn(e, "corp2", "s-bob", "u-n4", "", false, true)
		e.must(err, "after link")
		if u.ID != local.ID {
			t.Fatal("the linked identity does not find its user")
		}
	})

	t.Run("ConcurrentFirstSignInMakesOneUser", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		const n = 8
		var wg sync.WaitGroup
		ids := make([]string, n)
		errs := make([]error, n)
		createdCount := make([]bool, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				u, c, err := signIn(e, "corp", "same", randomID("u"), "", false, false)
				ids[i], createdCount[i], errs[i] = u.ID, c, err
			}()
		}
		wg.Wait()
		made := 0
		for i := range n {
			e.must(errs[i], "concurrent sign-in")
			if ids[i] != ids[0] {
				t.Fatalf("sign-ins returned users %s and %s", ids[0], ids[i])
			}
			if createdCount[i] {
				made++
			}
		}
		if made != 1 {
			t.Fatalf("%d sign-ins created the user, want 1", made)
		}
	})

	t.Run("NonceAndAuthTime", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		e.client("c1")
		e.user("u1")
		authAt := base.Add(-time.Hour).Add(123 * time.Microsecond)
		c, g := e.code("c1", "u1", func(c *store.AuthCode, g *store.Grant) {
			c.Nonce, c.AuthTime, g.AuthTime = "n-0S6_WzA2Mj", authAt, authAt
		})
		got, err := e.s.ConsumeAuthCode(e.ctx, c.Hash, at(redeemAt), nil)
		e.must(err, "ConsumeAuthCode")
		equal(t, "code", got, c, canonCode)
		gg := e.getGrant(g.ID)
		equalTime(t, "grant auth_time", gg.AuthTime, authAt)
	})

}
