package memory_test

import (
	"crypto/sha256"
	"encoding/binary"
	"strconv"
	"testing"
	"time"

	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/store"
	"github.com/authzd/authz/provider/store/memory"
	"github.com/authzd/authz/provider/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return memory.New() })
}

// BenchmarkRotateRefreshToken measures one winning rotation: lookup, the
// win / grace / reuse decision and storing the successor. The successor's
// hash is cheap to make so the store's cost dominates.
func BenchmarkRotateRefreshToken(b *testing.B) {
	now := time.Date(2030, time.January, 2, 3, 4, 5, 0, time.UTC)
	hash := func(chain, i uint64) []byte {
		var buf [16]byte
		binary.BigEndian.PutUint64(buf[:8], chain)
		binary.BigEndian.PutUint64(buf[8:], i)
		sum := sha256.Sum256(buf[:])
		return sum[:]
	}
	// setup makes a store with `chains` redeemed grants, each with a first
	// refresh token hash(chain, 0).
	setup := func(b *testing.B, chains int) *memory.Store {
		b.Helper()
		ctx := b.Context()
		s := memory.New()
		must := func(err error) {
			if err != nil {
				b.Fatal(err)
			}
		}
		must(s.CreateClient(ctx, store.Client{ID: "c", Metadata: store.ClientMetadata{TokenEndpointAuthMethod: oauth.AuthNone}, CreatedAt: now}))
		must(s.CreateUser(ctx, store.User{ID: "u", Username: "u", CreatedAt: now}))
		for c := range uint64(chains) {
			gid := "g" + strconv.FormatUint(c, 10)
			code := hash(^c, 0)
			must(s.CreateAuthCode(ctx,
				store.AuthCode{Hash: code, ClientID: "c", UserID: "u", GrantID: gid, CreatedAt: now, ExpiresAt: now.Add(time.Minute)},
				store.Grant{ID: gid, ClientID: "c", UserID: "u", CodeHash: code, CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour)}))
			_, err := s.ConsumeAuthCode(ctx, code, now, func(store.AuthCode) (store.Redemption, error) {
				return store.Redemption{Refresh: &store.RefreshToken{ID: "rt", Hash: hash(c, 0), GrantID: gid, ClientID: "c", CreatedAt: now, ExpiresAt: now.Add(12 * time.Hour)}}, nil
			})
			must(err)
		}
		return s
	}
	next := func(h []byte) store.NextRefreshFunc {
		return func(old store.RefreshToken, g store.Grant) (store.RefreshToken, error) {
			return store.RefreshToken{ID: "rt", Hash: h, GrantID: g.ID, ClientID: old.ClientID, ParentID: old.ID, CreatedAt: now, ExpiresAt: now.Add(12 * time.Hour)}, nil
		}
	}

	b.Run("serial", func(b *testing.B) {
		s := setup(b, 1)
		ctx := b.Context()
		var i uint64
		for b.Loop() {
			if _, err := s.RotateRefreshToken(ctx, hash(0, i), now, 30*time.Second, next(hash(0, i+1))); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})

	// parallel: one rotation chain per goroutine, all contending for the
	// store's single mutex.
	b.Run("parallel", func(b *testing.B) {
		const chains = 256
		s := setup(b, chains)
		ctx := b.Context()
		ids := make(chan uint64, chains)
		for c := range uint64(chains) {
			ids <- c
		}
		b.RunParallel(func(pb *testing.PB) {
			c := <-ids
			var i uint64
			for pb.Next() {
				if _, err := s.RotateRefreshToken(ctx, hash(c, i), now, 30*time.Second, next(hash(c, i+1))); err != nil {
					b.Error(err)
					return
				}
				i++
			}
		})
	})
}
