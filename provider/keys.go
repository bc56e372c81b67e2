package provider

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/authzd/authz/provider/store"
	"github.com/authzd/authz/provider/tokens"
)

// keyManager holds the signing key and the published key set, re-reading
// them from the store every KeyRefreshInterval so that a rotation made by
// another process (`authz keys rotate`, another replica) takes effect
// without a restart.
type keyManager struct {
	store     store.Store
	encKey    []byte
	alg       string
	now       func() time.Time
	rand      io.Reader
	every     time.Duration
	accessTTL time.Duration
	log       *slog.Logger

	reload sync.Mutex // one reload at a time; others use the current state
	cur    atomic.Pointer[keyState]
}

type keyState struct {
	loadedAt time.Time
	signer   *tokens.Signer
	kid      string
	jwks     []byte
	keySet   *tokens.KeySet
}

// publishLeeway keeps a retired key published a little longer than the
// tokens it signed can live, to cover clock skew between servers.
const publishLeeway = 5 * time.Minute

func newKeyManager(ctx context.Context, o Options) (*keyManager, error) {
	encKey := o.EncryptionKey
	if encKey == nil {
		encKey = make([]byte, 32)
		if _, err := io.ReadFull(rand.Reader, encKey); err != nil {
			return nil, err
		}
	}
	km := &keyManager{
		store: o.Store, encKey: encKey, alg: o.SigningAlgorithm, now: o.Now, rand: o.Rand,
		every: o.KeyRefreshInterval, accessTTL: o.AccessTokenTTL, log: o.Logger,
	}
	keys, err := km.store.ListSigningKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading signing keys: %w", err)
	}
	if current(keys) == nil {
		if err := RotateSigningKey(ctx, o.Store, encKey, o.SigningAlgorithm, o.Now(), o.Rand); err != nil {
			return nil, fmt.Errorf("creating the first signing key: %w", err)
		}
	}
	st, err := km.load(ctx)
	if err != nil {
		return nil, err
	}
	km.cur.Store(st)
	return km, nil
}

// RotateSigningKey makes a new current signing key; the previous ones stay
// published until the tokens they signed have expired.
func RotateSigningKey(ctx context.Context, st store.Store, encKey []byte, alg string, now time.Time, r io.Reader) error {
	if alg == "" {
		alg = "ES256"
	}
	if r == nil {
		r = rand.Reader
	}
	k, err := tokens.GenerateKey(r, alg)
	if err != nil {
		return err
	}
	pub, err := k.PublicJWK()
	if err != nil {
		return err
	}
	enc, err := tokens.EncryptPrivateKey(k, encKey, r)
	if err != nil {
		return err
	}
	return st.RotateSigningKey(ctx, store.SigningKey{
		ID: k.ID, Algorithm: alg, PublicJWK: pub, EncryptedPrivateKey: enc, CreatedAt: now,
	})
}

func current(keys []store.SigningKey) *store.SigningKey {
	for i := range keys {
		if keys[i].RetiredAt.IsZero() {
			return &keys[i]
		}
	}
	return nil
}

func (km *keyManager) load(ctx context.Context) (*keyState, error) {
	keys, err := km.store.ListSigningKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading signing keys: %w", err)
	}
	cur := current(keys)
	if cur == nil {
		return nil, errors.New("no current signing key")
	}
	priv, err := tokens.DecryptPrivateKey(cur.ID, cur.Algorithm, cur.EncryptedPrivateKey, km.encKey)
	if err != nil {
		return nil, fmt.Errorf("cannot decrypt signing key %s: the encryption key (AUTHZ_ENCRYPTION_KEY) is not the one it was stored with: %w", cur.ID, err)
	}
	signer, err := tokens.NewSigner(priv)
	if err != nil {
		return nil, err
	}
	now := km.now()
	var published [][]byte
	for _, k := range keys {
		if k.RetiredAt.IsZero() || now.Before(k.RetiredAt.Add(km.accessTTL+publishLeeway)) {
			published = append(published, k.PublicJWK)
		}
	}
	jwks, err := tokens.PublicJWKSet(published...)
	if err != nil {
		return nil, err
	}
	ks, err := tokens.NewKeySet(published...)
	if err != nil {
		return nil, err
	}
	return &keyState{loadedAt: now, signer: signer, kid: cur.ID, jwks: jwks, keySet: ks}, nil
}

// state returns the current keys, reloading them when they are older than
// the refresh interval. A failed reload keeps the keys already loaded.
func (km *keyManager) state(ctx context.Context) *keyState {
	st := km.cur.Load()
	if km.now().Sub(st.loadedAt) < km.every {
		return st
	}
	if !km.reload.TryLock() {
		return st
	}
	defer km.reload.Unlock()
	if st = km.cur.Load(); km.now().Sub(st.loadedAt) < km.every {
		return st
	}
	next, err := km.load(ctx)
	if err != nil {
		km.log.Warn("reloading signing keys failed; keeping the loaded ones", "cause", err)
		// Try again after another interval rather than on every request.
		cp := *st
		cp.loadedAt = km.now()
		km.cur.Store(&cp)
		return st
	}
	km.cur.Store(next)
	return next
}

func (km *keyManager) jwks() ([]byte, error) {
	return km.state(context.Background()).jwks, nil
}
