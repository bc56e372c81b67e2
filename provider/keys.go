package provider

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/authzd/authz/provider/store"
	"github.com/authzd/authz/provider/tokens"
)

// keyManager holds the signing keys and the published key set, re-reading
// them from the store every KeyRefreshInterval so that a rotation made by
// another process (`authz keys rotate`, another replica) takes effect
// without a restart.
//
// A rotated-in key is published at once but signs only from its
// activation, KeyActivationDelay after the rotation: by then every replica
// has reloaded and publishes it, so no replica meets a token whose key it
// has never seen. Should one still arrive (a replica whose reloads failed),
// verify reloads once before calling the token invalid.
type keyManager struct {
	store     store.Store
	encKey    []byte
	now       func() time.Time
	every     time.Duration
	accessTTL time.Duration
	log       *slog.Logger

	reload     sync.Mutex // one reload at a time
	lastForced time.Time  // last reload for an unknown kid; guarded by reload
	cur        atomic.Pointer[keyState]
}

type keyState struct {
	loadedAt time.Time
	signers  []timedSigner // newest activation first
	jwks     []byte
	keySet   *tokens.KeySet
}

// timedSigner is a key that signs from its activation on, until a newer
// key activates.
type timedSigner struct {
	from   time.Time
	signer *tokens.Signer
}

// signerAt returns the key that signs at now: the newest already active.
func (st *keyState) signerAt(now time.Time) *tokens.Signer {
	for _, s := range st.signers {
		if !now.Before(s.from) {
			return s.signer
		}
	}
	// Only keys activating later (a clock behind the rotating process):
	// the earliest of them is the best there is.
	return st.signers[len(st.signers)-1].signer
}

// publishLeeway keeps a retired key published a little longer than the
// tokens it signed can live, to cover clock skew between servers.
const publishLeeway = 5 * time.Minute

// minForcedReload bounds reloads caused by tokens naming an unknown kid, so
// made-up kids cannot turn every request into a database read.
const minForcedReload = 5 * time.Second

// KeyActivationDelay is how long a new signing key is published before any
// replica signs with it: two key-reload intervals, so every replica has
// reloaded at least once in between, even if one reload failed.
func KeyActivationDelay(keyRefreshInterval time.Duration) time.Duration {
	return 2 * keyRefreshInterval
}

func newKeyManager(ctx context.Context, o Options) (*keyManager, error) {
	encKey := o.EncryptionKey
	if encKey == nil {
		encKey = make([]byte, 32)
		if _, err := io.ReadFull(rand.Reader, encKey); err != nil {
			return nil, err
		}
	}
	km := &keyManager{
		store: o.Store, encKey: encKey, now: o.Now,
		every: o.KeyRefreshInterval, accessTTL: o.AccessTokenTTL, log: o.Logger,
	}
	keys, err := km.store.ListSigningKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading signing keys: %w", err)
	}
	if len(keys) == 0 {
		// The first key signs at once: no token exists yet. The store
		// creates it only on an empty table, so replicas starting together
		// on a fresh database end with one key; the losers load the winner's.
		k, err := newSigningKey(encKey, o.SigningAlgorithm, o.Now(), time.Time{}, o.Rand)
		if err != nil {
			return nil, err
		}
		if err := km.store.CreateFirstSigningKey(ctx, k); err != nil && !errors.Is(err, store.ErrAlreadyExists) {
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

// newSigningKey generates a key and seals its private half with encKey.
// activatesAt zero means it signs from now.
func newSigningKey(encKey []byte, alg string, now, activatesAt time.Time, r io.Reader) (store.SigningKey, error) {
	if alg == "" {
		alg = "ES256"
	}
	if r == nil {
		r = rand.Reader
	}
	if activatesAt.IsZero() {
		activatesAt = now
	}
	k, err := tokens.GenerateKey(r, alg)
	if err != nil {
		return store.SigningKey{}, err
	}
	pub, err := k.PublicJWK()
	if err != nil {
		return store.SigningKey{}, err
	}
	enc, err := tokens.EncryptPrivateKey(k, encKey, r)
	if err != nil {
		return store.SigningKey{}, err
	}
	return store.SigningKey{
		ID: k.ID, Algorithm: alg, PublicJWK: pub, EncryptedPrivateKey: enc, CreatedAt: now, ActivatesAt: activatesAt,
	}, nil
}

// RotateSigningKey adds a new signing key, published at once and signing
// from activatesAt (now + KeyActivationDelay of the servers' key-reload
// interval); the key signing until then retires at that instant and stays
// published until the tokens it signed have expired. It refuses when encKey
// cannot decrypt the keys that still sign: a new key sealed with another
// key would leave the servers unable to load their keys at their next start.
func RotateSigningKey(ctx context.Context, st store.Store, encKey []byte, alg string, now, activatesAt time.Time, r io.Reader) (store.SigningKey, error) {
	keys, err := st.ListSigningKeys(ctx)
	if err != nil {
		return store.SigningKey{}, err
	}
	for _, k := range keys {
		if !k.RetiredAt.IsZero() && !k.RetiredAt.After(now) {
			continue // retired: only its public half is still used
		}
		if _, err := tokens.DecryptPrivateKey(k.ID, k.Algorithm, k.EncryptedPrivateKey, encKey); err != nil {
			return store.SigningKey{}, fmt.Errorf("refusing to rotate: signing key %s cannot be decrypted with this AUTHZ_ENCRYPTION_KEY (it is not the one the servers use)", k.ID)
		}
	}
	if activatesAt.Before(now) {
		activatesAt = now
	}
	k, err := newSigningKey(encKey, alg, now, activatesAt, r)
	if err != nil {
		return store.SigningKey{}, err
	}
	return k, st.RotateSigningKey(ctx, k)
}

// KeyState names a signing key's state at now, for `authz keys list`:
// "pending" (published, not signing yet), "signing", "retired" (published
// for the tokens it signed) or "expired" (no longer published).
func KeyState(k store.SigningKey, now time.Time, accessTokenTTL time.Duration) string {
	switch {
	case now.Before(k.Activation()):
		return "pending"
	case k.RetiredAt.IsZero() || now.Before(k.RetiredAt):
		return "signing"
	case now.Before(k.RetiredAt.Add(accessTokenTTL + publishLeeway)):
		return "retired"
	}
	return "expired"
}

func (km *keyManager) load(ctx context.Context) (*keyState, error) {
	keys, err := km.store.ListSigningKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading signing keys: %w", err)
	}
	now := km.now()
	var signers []timedSigner
	var published [][]byte
	for _, k := range keys {
		if k.RetiredAt.IsZero() || now.Before(k.RetiredAt) {
			// It signs now or will: decrypt it.
			priv, err := tokens.DecryptPrivateKey(k.ID, k.Algorithm, k.EncryptedPrivateKey, km.encKey)
			if err != nil {
				return nil, fmt.Errorf("cannot decrypt signing key %s: the encryption key (AUTHZ_ENCRYPTION_KEY) is not the one it was stored with: %w", k.ID, err)
			}
			signer, err := tokens.NewSigner(priv)
			if err != nil {
				return nil, err
			}
			signers = append(signers, timedSigner{from: k.Activation(), signer: signer})
		}
		if k.RetiredAt.IsZero() || now.Before(k.RetiredAt.Add(km.accessTTL+publishLeeway)) {
			published = append(published, k.PublicJWK)
		}
	}
	if len(signers) == 0 {
		return nil, errors.New("no current signing key")
	}
	slices.SortStableFunc(signers, func(a, b timedSigner) int { return b.from.Compare(a.from) })
	jwks, err := tokens.PublicJWKSet(published...)
	if err != nil {
		return nil, err
	}
	ks, err := tokens.NewKeySet(published...)
	if err != nil {
		return nil, err
	}
	return &keyState{loadedAt: now, signers: signers, jwks: jwks, keySet: ks}, nil
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

// signer returns the key to sign with now.
func (km *keyManager) signer(ctx context.Context) *tokens.Signer {
	return km.state(ctx).signerAt(km.now())
}

// verify checks an access token issued by this server (any replica). A
// token naming a kid this replica does not know makes it reload the keys
// once before calling the token invalid: single-flight (concurrent callers
// wait for one reload) and at most once per minForcedReload. ok is false
// for a token that is not valid; err is set only when the keys could not be
// reloaded, and then nothing can be decided (the caller answers 503).
func (km *keyManager) verify(ctx context.Context, token, issuer string, now time.Time) (cl tokens.AccessTokenClaims, ok bool, err error) {
	st := km.state(ctx)
	cl, verr := st.keySet.Verify(token, issuer, now, 0)
	if errors.Is(verr, tokens.ErrUnknownKey) {
		if st, err = km.reloadForUnknownKey(ctx, st); err != nil {
			return cl, false, err
		}
		cl, verr = st.keySet.Verify(token, issuer, now, 0)
	}
	return cl, verr == nil, nil
}

// reloadForUnknownKey reloads the keys unless another caller did since seen
// was loaded, or a forced reload happened less than minForcedReload ago.
func (km *keyManager) reloadForUnknownKey(ctx context.Context, seen *keyState) (*keyState, error) {
	km.reload.Lock()
	defer km.reload.Unlock()
	if cur := km.cur.Load(); cur.keySet != seen.keySet {
		return cur, nil // reloaded while we waited: one reload serves everyone
	}
	now := km.now()
	if !km.lastForced.IsZero() && now.Sub(km.lastForced) < minForcedReload {
		return seen, nil
	}
	next, err := km.load(ctx)
	if err != nil {
		// Not rate-limited: until a reload succeeds nobody can tell whether
		// the token is ours, so each caller gets the error, not a guess.
		km.log.Warn("reloading signing keys for an unknown kid failed", "cause", err)
		return seen, err
	}
	// A successful reload has the keys of every rotation made up to now,
	// and a key rotated in later does not sign for KeyActivationDelay: an
	// unknown kid until the next allowed reload is not ours.
	km.lastForced = now
	km.cur.Store(next)
	return next, nil
}

func (km *keyManager) jwks() ([]byte, error) {
	return km.state(context.Background()).jwks, nil
}
