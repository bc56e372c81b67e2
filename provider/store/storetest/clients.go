package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/store"
)

// testNotFound: every lookup or change of a record that does not exist says
// ErrNotFound, so callers can answer invalid_client / invalid_grant instead
// of server_error.
func testNotFound(t *testing.T, newStore factory) {
	now := at(time.Minute)
	tests := []struct {
		name string
		op   func(ctx context.Context, s store.Store) error
	}{
		{"GetClient", func(ctx context.Context, s store.Store) error { _, err := s.GetClient(ctx, "nope"); return err }},
		{"UpdateClient", func(ctx context.Context, s store.Store) error {
			_, err := s.UpdateClient(ctx, "nope", replaceWith(sampleClient("nope", base)))
			return err
		}},
		{"DeleteClient", func(ctx context.Context, s store.Store) error { return s.DeleteClient(ctx, "nope") }},
		{"DeleteRegisteredClient", func(ctx context.Context, s store.Store) error {
			return s.DeleteRegisteredClient(ctx, "nope", randomHash())
		}},
		{"GetUser", func(ctx context.Context, s store.Store) error { _, err := s.GetUser(ctx, "nope"); return err }},
		{"GetUserByUsername", func(ctx context.Context, s store.Store) error {
			_, err := s.GetUserByUsername(ctx, "nope")
			return err
		}},
		{"SetUserPassword", func(ctx context.Context, s store.Store) error { return s.SetUserPassword(ctx, "nope", "x") }},
		{"DeleteUser", func(ctx context.Context, s store.Store) error { return s.DeleteUser(ctx, "nope") }},
		{"ConsumeAuthCode", func(ctx context.Context, s store.Store) error {
			_, err := s.ConsumeAuthCode(ctx, randomHash(), now, nil)
			return err
		}},
		{"GetGrant", func(ctx context.Context, s store.Store) error { _, err := s.GetGrant(ctx, "nope"); return err }},
		// Identifiers come from requests: bytes a database cannot store
		// (NUL, invalid UTF-8) name nothing, they are not a server error.
		{"GetClient with NUL", func(ctx context.Context, s store.Store) error { _, err := s.GetClient(ctx, "a\x00b"); return err }},
		{"GetClient with invalid UTF-8", func(ctx context.Context, s store.Store) error { _, err := s.GetClient(ctx, "a\xffb"); return err }},
		{"GetUserByUsername with NUL", func(ctx context.Context, s store.Store) error {
			_, err := s.GetUserByUsername(ctx, "bob\x00")
			return err
		}},
		{"GetGrant with invalid UTF-8", func(ctx context.Context, s store.Store) error { _, err := s.GetGrant(ctx, "\xc3\x28"); return err }},
		{"DeleteClient with NUL", func(ctx context.Context, s store.Store) error { return s.DeleteClient(ctx, "\x00") }},
		{"RevokeGrant", func(ctx context.Context, s store.Store) error { return s.RevokeGrant(ctx, "nope", now) }},
		{"RevokeUserGrant", func(ctx context.Context, s store.Store) error {
			_, err := s.RevokeUserGrant(ctx, "u1", "nope", now)
			return err
		}},
		{"GetRefreshToken", func(ctx context.Context, s store.Store) error {
			_, _, err := s.GetRefreshToken(ctx, randomHash())
			return err
		}},
		{"RotateRefreshToken", func(ctx context.Context, s store.Store) error {
			_, err := s.RotateRefreshToken(ctx, randomHash(), now, grace, successor(now))
			return err
		}},
		{"GetConsent", func(ctx context.Context, s store.Store) error {
			_, err := s.GetConsent(ctx, "nope", "nope")
			return err
		}},
		{"GetSessionUser", func(ctx context.Context, s store.Store) error {
			_, _, err := s.GetSessionUser(ctx, randomHash(), now)
			return err
		}},
		{"GetInitialAccessToken", func(ctx context.Context, s store.Store) error {
			_, err := s.GetInitialAccessToken(ctx, randomHash(), now)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, newStore)
			// A neighbour exists, so "not found" is about the key, not an
			// empty table.
			e.grant(e.client("c1").ID, e.user("u1").ID)
			wantErr(t, tt.name, tt.op(e.ctx, e.s), store.ErrNotFound)
		})
	}
}

func testClients(t *testing.T, newStore factory) {
	t.Run("CreateGetRoundTrip", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			name string
			c    store.Client
		}{
			{"confidential with every field", sampleClient("conf", base)},
			{"public with nil and empty slices", publicClient("pub", base)},
			{"secret that never expires", func() store.Client {
				c := sampleClient("noexp", base)
				c.SecretExpiresAt = time.Time{}
				c.Metadata.JWKS = nil
				c.Metadata.JWKSURI = "https://app.example.com/jwks.json"
				return c
			}()},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, newStore)
				e.must(e.s.CreateClient(e.ctx, tt.c), "CreateClient")
				got, err := e.s.GetClient(e.ctx, tt.c.ID)
				e.must(err, "GetClient")
				equal(t, "client", got, tt.c, canonClient)
				if tt.c.SecretHash == nil && got.SecretHash != nil {
					t.Errorf("SecretHash = %x, want nil for a client without a secret", got.SecretHash)
				}
				if tt.c.RegistrationTokenHash == nil && got.RegistrationTokenHash != nil {
					t.Errorf("RegistrationTokenHash = %x, want nil", got.RegistrationTokenHash)
				}
				if tt.c.SecretExpiresAt.IsZero() && !got.SecretExpiresAt.IsZero() {
					t.Errorf("SecretExpiresAt = %v, want zero (never)", got.SecretExpiresAt)
				}
				if got.Public() != tt.c.Public() {
					t.Errorf("Public() = %v, want %v", got.Public(), tt.c.Public())
				}
			})
		}
	})

	t.Run("JWKSIsTheSameJSONValue", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		c := sampleClient("c1", base)
		e.must(e.s.CreateClient(e.ctx, c), "CreateClient")
		got, err := e.s.GetClient(e.ctx, c.ID)
		e.must(err, "GetClient")
		var want, have struct {
			Keys []map[string]string `json:"keys"`
		}
		e.must(json.Unmarshal(c.Metadata.JWKS, &want), "unmarshal sent JWKS")
		e.must(json.Unmarshal(got.Metadata.JWKS, &have), "unmarshal stored JWKS")
		if len(have.Keys) != 1 || have.Keys[0]["kid"] != "k1" || have.Keys[0]["x"] != want.Keys[0]["x"] {
			t.Errorf("JWKS = %s, want the same keys as %s", got.Metadata.JWKS, c.Metadata.JWKS)
		}
	})

	t.Run("DuplicateID", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		first := e.client("c1")
		second := sampleClient("c1", at(time.Hour))
		second.Metadata.Name = "impostor"
		wantErr(t, "CreateClient duplicate", e.s.CreateClient(e.ctx, second), store.ErrAlreadyExists)
		got, err := e.s.GetClient(e.ctx, "c1")
		e.must(err, "GetClient")
		equal(t, "client after a refused duplicate", got, first, canonClient)
	})

	t.Run("ListOrderedByCreatedAtThenID", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		list, err := e.s.ListClients(e.ctx)
		e.must(err, "ListClients on an empty store")
		if len(list) != 0 {
			t.Fatalf("ListClients on an empty store = %d clients, want 0", len(list))
		}
		// Inserted out of order; b and a share a CreatedAt, so ID decides.
		var want []store.Client
		for _, c := range []store.Client{
			sampleClient("client-d", at(time.Hour)),
			sampleClient("client-b", base),
			publicClient("client-c", at(-time.Hour)),
			sampleClient("client-a", base),
		} {
			e.must(e.s.CreateClient(e.ctx, c), "CreateClient "+c.ID)
			want = append(want, c)
		}
		want = []store.Client{want[2], want[3], want[1], want[0]}
		list, err = e.s.ListClients(e.ctx)
		e.must(err, "ListClients")
		equal(t, "ListClients", list, want, canonClients)
	})

	t.Run("Update", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		old := e.client("c1")
		other := e.client("c2")

		upd := sampleClient("c1", at(time.Hour)) // a different CreatedAt, SecretExpiresAt and UsedAt
		upd.Trust = store.TrustAdmin             // which UpdateClient must not grant
		upd.Metadata = store.ClientMetadata{
			Name:                    "Renamed",
			RedirectURIs:            []string{"https://new.example.com/cb"},
			TokenEndpointAuthMethod: oauth.AuthClientSecretBasic,
			Scopes:                  []string{"read"},
			Resources:               []string{},
			JWKS:                    nil,
		}
		upd.UpdatedAt = at(2 * time.Hour)
		upd.RegistrationTokenHash = randomHash() // which UpdateClient must not write
		var seen store.Client
		ret, err := e.s.UpdateClient(e.ctx, "c1", func(c *store.Client) error {
			seen = *c
			*c = upd
			return nil
		})
		e.must(err, "UpdateClient")
		equal(t, "the client edit is given", seen, old, canonClient)

		got, err := e.s.GetClient(e.ctx, "c1")
		e.must(err, "GetClient")
		// The doc names exactly what UpdateClient writes: secret hash,
		// metadata and UpdatedAt. Trust, CreatedAt, UsedAt,
		// SecretExpiresAt and the registration token hash are kept.
		want := upd
		want.CreatedAt, want.SecretExpiresAt = old.CreatedAt, old.SecretExpiresAt
		want.Trust, want.UsedAt = old.Trust, old.UsedAt
		want.RegistrationTokenHash = old.RegistrationTokenHash
		equal(t, "updated client", got, want, canonClient)
		equal(t, "UpdateClient's answer", ret, want, canonClient)

		got2, err := e.s.GetClient(e.ctx, "c2")
		e.must(err, "GetClient c2")
		equal(t, "untouched client", got2, other, canonClient)
	})

	t.Run("UpdateToNoSecret", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		old := e.client("c1")
		_, err := e.s.UpdateClient(e.ctx, "c1", func(c *store.Client) error {
			c.SecretHash, c.UpdatedAt = nil, at(time.Minute)
			return nil
		})
		e.must(err, "UpdateClient")
		got, err := e.s.GetClient(e.ctx, "c1")
		e.must(err, "GetClient")
		if got.SecretHash != nil {
			t.Errorf("secret hash = %x; want nil after replacing it with nil", got.SecretHash)
		}
		if !bytes.Equal(got.RegistrationTokenHash, old.RegistrationTokenHash) {
			t.Error("UpdateClient changed the registration token hash")
		}
	})

	// An edit that refuses writes nothing, and its error comes back as is
	// (the CLI words it for the operator).
	t.Run("UpdateRefusedByEdit", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		old := e.client("c1")
		refused := errors.New("refused")
		_, err := e.s.UpdateClient(e.ctx, "c1", func(c *store.Client) error {
			c.Metadata.Name, c.SecretHash = "Changed", nil
			return refused
		})
		wantErr(t, "UpdateClient with a refusing edit", err, refused)
		got, err := e.s.GetClient(e.ctx, "c1")
		e.must(err, "GetClient")
		equal(t, "client after a refused edit", got, old, canonClient)
	})

	// The administrator's update after (or racing) an RFC 7592 update
	// keeps the token that update issued: writing back the hash it read
	// would revive the spent token and kill the client's new one.
	t.Run("UpdateKeepsRotatedRegistrationToken", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		old := e.client("c1")
		next := randomHash()
		_, err := e.s.UpdateRegisteredClient(e.ctx, "c1", old.RegistrationTokenHash, next, func(c *store.Client) error {
			c.UpdatedAt = at(time.Hour)
			return nil
		})
		e.must(err, "UpdateRegisteredClient")
		_, err = e.s.UpdateClient(e.ctx, "c1", func(c *store.Client) error {
			c.Metadata.Name, c.UpdatedAt = "By the administrator", at(2*time.Hour)
			return nil
		})
		e.must(err, "UpdateClient")
		got, err := e.s.GetClient(e.ctx, "c1")
		e.must(err, "GetClient")
		if !bytes.Equal(got.RegistrationTokenHash, next) {
			t.Fatal("the administrator's update replaced the rotated registration token hash")
		}
		_, err = e.s.UpdateRegisteredClient(e.ctx, "c1", old.RegistrationTokenHash, randomHash(), mustNotEdit(t))
		wantErr(t, "an update with the spent token", err, store.ErrNotFound)
		wantErr(t, "a delete with the spent token", e.s.DeleteRegisteredClient(e.ctx, "c1", old.RegistrationTokenHash), store.ErrNotFound)
	})

	// RFC 7592 §2.2: the registration token that authorises an update is
	// spent by it, and replaced by the one the update issues. The stale or
	// a wrong hash changes nothing and never reaches the edit.
	t.Run("UpdateRegisteredClient", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		old := e.client("c1")
		upd := old
		upd.Metadata.Name, upd.UpdatedAt = "Renamed", at(time.Hour)
		upd.Trust = store.TrustAdmin             // which an update must not grant
		upd.RegistrationTokenHash = randomHash() // nor set other than through next
		next := randomHash()
		for _, bad := range []struct {
			name    string
			id      string
			present []byte
		}{
			{"with a wrong hash", "c1", randomHash()},
			{"with no hash", "c1", nil},
			{"an unknown client", "ghost", randomHash()},
		} {
			_, err := e.s.UpdateRegisteredClient(e.ctx, bad.id, bad.present, next, mustNotEdit(t))
			wantErr(t, bad.name, err, store.ErrNotFound)
		}
		got, err := e.s.GetClient(e.ctx, "c1")
		e.must(err, "GetClient")
		equal(t, "client after refused updates", got, old, canonClient)

		var seen store.Client
		ret, err := e.s.UpdateRegisteredClient(e.ctx, "c1", old.RegistrationTokenHash, next, func(c *store.Client) error {
			seen = *c
			*c = upd
			return nil
		})
		e.must(err, "UpdateRegisteredClient")
		equal(t, "the client edit is given", seen, old, canonClient)
		got, err = e.s.GetClient(e.ctx, "c1")
		e.must(err, "GetClient")
		want := upd
		want.Trust, want.RegistrationTokenHash = old.Trust, next
		equal(t, "updated client", got, want, canonClient)
		equal(t, "UpdateRegisteredClient's answer", ret, want, canonClient)
		_, err = e.s.UpdateRegisteredClient(e.ctx, "c1", old.RegistrationTokenHash, randomHash(), mustNotEdit(t))
		wantErr(t, "with the spent hash", err, store.ErrNotFound)
	})

	// An edit that refuses (invalid metadata, a wrong client_secret)
	// writes nothing and does not spend the token: the client can correct
	// its request and retry with the same one.
	t.Run("UpdateRegisteredClientRefusedByEdit", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		old := e.client("c1")
		refused := errors.New("refused")
		_, err := e.s.UpdateRegisteredClient(e.ctx, "c1", old.RegistrationTokenHash, randomHash(), func(c *store.Client) error {
			c.Metadata.Name, c.SecretHash = "Changed", nil
			return refused
		})
		wantErr(t, "UpdateRegisteredClient with a refusing edit", err, refused)
		got, err := e.s.GetClient(e.ctx, "c1")
		e.must(err, "GetClient")
		equal(t, "client after a refused edit", got, old, canonClient)
		_, err = e.s.UpdateRegisteredClient(e.ctx, "c1", old.RegistrationTokenHash, randomHash(), func(c *store.Client) error {
			c.UpdatedAt = at(time.Hour)
			return nil
		})
		e.must(err, "UpdateRegisteredClient with the unspent token")
	})

	// The edit is decided on the client as stored: allowances an
	// administrator narrowed after the client's request was authenticated
	// are what the edit sees, so it cannot write back wider ones.
	t.Run("UpdateRegisteredClientSeesAdministratorsChange", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		old := e.client("c1")
		_, err := e.s.UpdateClient(e.ctx, "c1", narrowAllowances(at(time.Minute)))
		e.must(err, "UpdateClient")
		var seen store.Client
		_, err = e.s.UpdateRegisteredClient(e.ctx, "c1", old.RegistrationTokenHash, randomHash(), func(c *store.Client) error {
			seen = *c
			selfUpdate(old.Metadata, "Renamed", at(time.Hour))(c)
			return nil
		})
		e.must(err, "UpdateRegisteredClient")
		got, err := e.s.GetClient(e.ctx, "c1")
		e.must(err, "GetClient")
		for what, c := range map[string]store.Client{"the edit's client": seen, "the stored client": got} {
			if msg := widerThanNarrowed(c); msg != "" {
				t.Errorf("%s: %s", what, msg)
			}
		}
		if got.Metadata.Name != "Renamed" {
			t.Errorf("name %q, want the update's", got.Metadata.Name)
		}
	})

	t.Run("UpdateUnknownCreatesNothing", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		_, err := e.s.UpdateClient(e.ctx, "ghost", func(*store.Client) error {
			t.Error("edit called for an unknown client")
			return nil
		})
		wantErr(t, "UpdateClient", err, store.ErrNotFound)
		_, err = e.s.GetClient(e.ctx, "ghost")
		wantErr(t, "GetClient after a failed update", err, store.ErrNotFound)
	})

	t.Run("Delete", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		e.client("c1")
		keep := e.client("c2")
		e.must(e.s.DeleteClient(e.ctx, "c1"), "DeleteClient")
		_, err := e.s.GetClient(e.ctx, "c1")
		wantErr(t, "GetClient after delete", err, store.ErrNotFound)
		wantErr(t, "DeleteClient twice", e.s.DeleteClient(e.ctx, "c1"), store.ErrNotFound)
		list, err := e.s.ListClients(e.ctx)
		e.must(err, "ListClients")
		equal(t, "ListClients after delete", list, []store.Client{keep}, canonClients)
		// The ID is free again.
		e.must(e.s.CreateClient(e.ctx, sampleClient("c1", at(time.Hour))), "CreateClient after delete")
	})

	// RFC 7592 §2.3: a delete is authorised by the registration token, in
	// the same operation; a wrong, missing or spent one deletes nothing.
	t.Run("DeleteRegisteredClient", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		old := e.client("c1")
		keep := e.client("c2")
		wantErr(t, "with a wrong hash", e.s.DeleteRegisteredClient(e.ctx, "c1", randomHash()), store.ErrNotFound)
		wantErr(t, "with no hash", e.s.DeleteRegisteredClient(e.ctx, "c1", nil), store.ErrNotFound)
		wantErr(t, "with another client's hash", e.s.DeleteRegisteredClient(e.ctx, "c1", keep.RegistrationTokenHash), store.ErrNotFound)
		got, err := e.s.GetClient(e.ctx, "c1")
		e.must(err, "GetClient")
		equal(t, "client after refused deletes", got, old, canonClient)

		e.must(e.s.DeleteRegisteredClient(e.ctx, "c1", old.RegistrationTokenHash), "DeleteRegisteredClient")
		_, err = e.s.GetClient(e.ctx, "c1")
		wantErr(t, "GetClient after delete", err, store.ErrNotFound)
		wantErr(t, "DeleteRegisteredClient twice", e.s.DeleteRegisteredClient(e.ctx, "c1", old.RegistrationTokenHash), store.ErrNotFound)
		list, err := e.s.ListClients(e.ctx)
		e.must(err, "ListClients")
		equal(t, "ListClients after delete", list, []store.Client{keep}, canonClients)
	})
}

func testUsers(t *testing.T, newStore factory) {
	t.Run("CreateGetRoundTrip", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		u := e.user("u1")
		got, err := e.s.GetUser(e.ctx, u.ID)
		e.must(err, "GetUser")
		equal(t, "GetUser", got, u, canonUser)
		got, err = e.s.GetUserByUsername(e.ctx, u.Username)
		e.must(err, "GetUserByUsername")
		equal(t, "GetUserByUsername", got, u, canonUser)
	})

	t.Run("Duplicates", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			name string
			dup  store.User
		}{
			{"same id", sampleUser("u1", "someone-else")},
			{"same username", sampleUser("u2", "alice")},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, newStore)
				first := sampleUser("u1", "alice")
				e.must(e.s.CreateUser(e.ctx, first), "CreateUser")
				wantErr(t, "CreateUser duplicate", e.s.CreateUser(e.ctx, tt.dup), store.ErrAlreadyExists)
				list, err := e.s.ListUsers(e.ctx)
				e.must(err, "ListUsers")
				equal(t, "ListUsers after a refused duplicate", list, []store.User{first}, canonUsers)
			})
		}
	})

	t.Run("ListOrderedByUsername", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		list, err := e.s.ListUsers(e.ctx)
		e.must(err, "ListUsers on an empty store")
		if len(list) != 0 {
			t.Fatalf("ListUsers on an empty store = %d users, want 0", len(list))
		}
		zed, alice, mike := sampleUser("u1", "zed"), sampleUser("u2", "alice"), sampleUser("u3", "mike")
		for _, u := range []store.User{zed, alice, mike} {
			e.must(e.s.CreateUser(e.ctx, u), "CreateUser "+u.Username)
		}
		list, err = e.s.ListUsers(e.ctx)
		e.must(err, "ListUsers")
		equal(t, "ListUsers", list, []store.User{alice, mike, zed}, canonUsers)
	})

	t.Run("SetPassword", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		u := e.user("u1")
		other := e.user("u2")
		e.must(e.s.SetUserPassword(e.ctx, u.ID, "$argon2id$new"), "SetUserPassword")
		got, err := e.s.GetUser(e.ctx, u.ID)
		e.must(err, "GetUser")
		u.PasswordHash = "$argon2id$new"
		equal(t, "user after SetUserPassword", got, u, canonUser)
		got, err = e.s.GetUser(e.ctx, other.ID)
		e.must(err, "GetUser other")
		equal(t, "other user", got, other, canonUser)
	})

	t.Run("Delete", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		u := e.user("u1")
		keep := e.user("u2")
		e.must(e.s.DeleteUser(e.ctx, u.ID), "DeleteUser")
		_, err := e.s.GetUser(e.ctx, u.ID)
		wantErr(t, "GetUser after delete", err, store.ErrNotFound)
		_, err = e.s.GetUserByUsername(e.ctx, u.Username)
		wantErr(t, "GetUserByUsername after delete", err, store.ErrNotFound)
		wantErr(t, "DeleteUser twice", e.s.DeleteUser(e.ctx, u.ID), store.ErrNotFound)
		list, err := e.s.ListUsers(e.ctx)
		e.must(err, "ListUsers")
		equal(t, "ListUsers after delete", list, []store.User{keep}, canonUsers)
		// The username is free again, under a new ID.
		e.must(e.s.CreateUser(e.ctx, sampleUser("u3", u.Username)), "CreateUser with a freed username")
	})
}

func canonUsers(us []store.User) []store.User {
	out := make([]store.User, len(us))
	for i, u := range us {
		out[i] = canonUser(u)
	}
	return out
}

// mustNotEdit is an edit for an update that must be refused before its
// edit runs (a wrong or spent registration token, an unknown client).
func mustNotEdit(t *testing.T) store.EditClientFunc {
	return func(*store.Client) error {
		t.Error("edit called for an update that must be refused first")
		return errors.New("edit called")
	}
}

// narrowed are the allowances narrowAllowances leaves: a strict subset of
// sampleClient's on each of scope, resources and the introspection right.
var (
	narrowedScopes    = []string{"read"}
	narrowedResources = []string{"https://api.example.com/"}
)

// narrowAllowances is the administrator's `authz client update --scope
// read --resource https://api.example.com/` without --introspect.
func narrowAllowances(now time.Time) store.EditClientFunc {
	return func(c *store.Client) error {
		c.Metadata.Scopes = slices.Clone(narrowedScopes)
		c.Metadata.Resources = slices.Clone(narrowedResources)
		c.Metadata.Introspect = false
		c.UpdatedAt = now
		return nil
	}
}

// selfUpdate is what an RFC 7592 update decides on the client as stored:
// the client asks for wanted's scopes, resources and introspection (the
// ones it was registered with) and a new name, and the server keeps the
// administrator's allowances, intersecting the scopes with them (as
// provider's keepAllowances does).
func selfUpdate(wanted store.ClientMetadata, name string, now time.Time) func(c *store.Client) {
	return func(c *store.Client) {
		m := c.Metadata
		m.Name = name
		m.Scopes = slices.DeleteFunc(slices.Clone(wanted.Scopes), func(s string) bool { return !slices.Contains(c.Metadata.Scopes, s) })
		c.Metadata, c.UpdatedAt = m, now
	}
}

// widerThanNarrowed says which allowance c has beyond narrowAllowances'
// ("" if none).
func widerThanNarrowed(c store.Client) string {
	for _, s := range c.Metadata.Scopes {
		if !slices.Contains(narrowedScopes, s) {
			return "scope " + s + " was removed by the administrator"
		}
	}
	for _, r := range c.Metadata.Resources {
		if !slices.Contains(narrowedResources, r) {
			return "resource " + r + " was removed by the administrator"
		}
	}
	if c.Metadata.Introspect {
		return "the introspection right was removed by the administrator"
	}
	return ""
}

// replaceWith is an UpdateClient edit that replaces the whole client with
// c (the store keeps only what UpdateClient writes).
func replaceWith(c store.Client) store.EditClientFunc {
	return func(dst *store.Client) error { *dst = c; return nil }
}
