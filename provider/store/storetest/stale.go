package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/authzd/authz/provider/store"
)

// testStaleClients covers MarkClientUsed and DeleteStaleClients: the janitor
// removes self-registered and metadata-document clients that never
// completed an authorization within unusedTTL, or have been idle (no live
// grant) for idleTTL; administrators' clients stay whatever their age
// (issue 11).
func testStaleClients(t *testing.T, newStore factory) {
	const unusedTTL, idleTTL = 24 * time.Hour, 90 * 24 * time.Hour

	t.Run("MarkClientUsedMovesForwardOnly", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		c := sampleClient("c1", base)
		c.UsedAt = time.Time{}
		e.must(e.s.CreateClient(e.ctx, c), "CreateClient")
		e.must(e.s.MarkClientUsed(e.ctx, "c1", at(time.Hour)), "MarkClientUsed")
		e.must(e.s.MarkClientUsed(e.ctx, "c1", at(time.Minute)), "MarkClientUsed earlier")
		got, err := e.s.GetClient(e.ctx, "c1")
		e.must(err, "GetClient")
		equalTime(t, "UsedAt", got.UsedAt, at(time.Hour))
		wantErr(t, "MarkClientUsed unknown", e.s.MarkClientUsed(e.ctx, "ghost", base), store.ErrNotFound)
	})

	// now is far enough after base for both TTLs to have run out for a
	// client created at base.
	now := at(100 * 24 * time.Hour)
	tests := []struct {
		name  string
		trust string
		used  time.Time // zero: never completed an authorization
		// created is the client's CreatedAt.
		created time.Time
		// grant adds a grant of the client: "" none, "live", "revoked",
		// "expired" (at now).
		grant string
		gone  bool
	}{
		{"registered, never used, older than unusedTTL", store.TrustRegistered, time.Time{}, now.Add(-unusedTTL), "", true},
		{"registered, never used, younger than unusedTTL", store.TrustRegistered, time.Time{}, now.Add(-unusedTTL + time.Microsecond), "", false},
		{"registered, never used, pending authorization", store.TrustRegistered, time.Time{}, now.Add(-2 * unusedTTL), "live", false},
		{"registered, used exactly idleTTL ago, no grant", store.TrustRegistered, now.Add(-idleTTL), base, "", true},
		{"registered, used just under idleTTL ago", store.TrustRegistered, now.Add(-idleTTL + time.Microsecond), base, "", false},
		{"registered, idle, only a revoked grant", store.TrustRegistered, now.Add(-idleTTL - time.Hour), base, "revoked", true},
		{"registered, idle, only an expired grant", store.TrustRegistered, now.Add(-idleTTL - time.Hour), base, "expired", true},
		{"registered, idle by UsedAt but a live grant", store.TrustRegistered, now.Add(-idleTTL - time.Hour), base, "live", false},
		{"admin, never used, old", store.TrustAdmin, time.Time{}, base, "", false},
		{"admin, idle", store.TrustAdmin, now.Add(-idleTTL - time.Hour), base, "", false},
		// A metadata-document client goes by the same rule: anyone can
		// publish documents at new URLs, and its next request fetches the
		// document again.
		{"metadata document, never used, old", store.TrustMetadataDocument, time.Time{}, base, "", true},
		{"metadata document, never used, younger than unusedTTL", store.TrustMetadataDocument, time.Time{}, now.Add(-unusedTTL + time.Microsecond), "", false},
		{"metadata document, never used, pending authorization", store.TrustMetadataDocument, time.Time{}, now.Add(-2 * unusedTTL), "live", false},
		{"metadata document, used exactly idleTTL ago, no grant", store.TrustMetadataDocument, now.Add(-idleTTL), base, "", true},
		{"metadata document, used just under idleTTL ago", store.TrustMetadataDocument, now.Add(-idleTTL + time.Microsecond), base, "", false},
		{"metadata document, idle, only a revoked grant", store.TrustMetadataDocument, now.Add(-idleTTL - time.Hour), base, "revoked", true},
		{"metadata document, idle by UsedAt but a live grant", store.TrustMetadataDocument, now.Add(-idleTTL - time.Hour), base, "live", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, newStore)
			u := e.user("u1")
			c := sampleClient("c1", tt.created)
			c.Trust, c.UsedAt = tt.trust, tt.used
			e.must(e.s.CreateClient(e.ctx, c), "CreateClient")
			keep := sampleClient("keep", tt.created)
			keep.Trust, keep.UsedAt = store.TrustRegistered, now
			e.must(e.s.CreateClient(e.ctx, keep), "CreateClient keep")
			var grantID string
			switch tt.grant {
			case "live":
				_, g := e.code("c1", u.ID, grantCreatedAt(now.Add(-time.Minute/2)))
				grantID = g.ID
			case "revoked":
				g := e.grant("c1", u.ID, grantCreatedAt(now.Add(-time.Hour)))
				e.must(e.s.RevokeGrant(e.ctx, g.ID, now.Add(-time.Minute)), "RevokeGrant")
				grantID = g.ID
			case "expired":
				grantID = e.grant("c1", u.ID, grantCreatedAt(now.Add(-grantTTL))).ID
			}
			e.consent(u.ID, "c1")

			deleted, err := e.s.DeleteStaleClients(e.ctx, now, unusedTTL, idleTTL)
			e.must(err, "DeleteStaleClients")
			n := len(deleted)
			_, getErr := e.s.GetClient(e.ctx, "c1")
			if tt.gone {
				if n != 1 || deleted[0].ID != "c1" || deleted[0].Trust != tt.trust {
					t.Errorf("DeleteStaleClients removed %+v, want exactly client c1 as it was", deleted)
				}
				wantErr(t, "GetClient after DeleteStaleClients", getErr, store.ErrNotFound)
				_, err := e.s.GetConsent(e.ctx, u.ID, "c1")
				wantErr(t, "GetConsent of a deleted client", err, store.ErrNotFound)
				if grantID != "" {
					_, err := e.s.GetGrant(e.ctx, grantID)
					wantErr(t, "GetGrant of a deleted client", err, store.ErrNotFound)
				}
			} else {
				if n != 0 {
					t.Errorf("DeleteStaleClients removed %d clients, want 0", n)
				}
				e.must(getErr, "GetClient of a client that must stay")
				_, err := e.s.GetConsent(e.ctx, u.ID, "c1")
				e.must(err, "GetConsent of a kept client")
			}
			list, err := e.s.ListClients(e.ctx)
			e.must(err, "ListClients")
			if !slices.ContainsFunc(list, func(c store.Client) bool { return c.ID == "keep" }) {
				t.Error("a recently used registered client was deleted")
			}
			deleted, err = e.s.DeleteStaleClients(e.ctx, now, unusedTTL, idleTTL)
			e.must(err, "DeleteStaleClients again")
			if n := len(deleted); n != 0 {
				t.Errorf("DeleteStaleClients again removed %d, want 0", n)
			}
		})
	}
}
