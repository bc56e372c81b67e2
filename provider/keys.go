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

	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/store"
	"github.com/authzd/authz/provider/tokens"
)

// keyManager holds the signing keys of every purpose (access tokens, and
// ID tokens per algorithm) and the published key set, re-reading them from
// the store every KeyRefreshInterval so that a rotation made by another
// process (`authz keys rotate`, another replica) takes effect without a
// restart.
//
// A rotated-in key is published at once but signs only from its
// activation, KeyActivationDelay after the rotation: by then every replica
// has reloaded and publishes it, so no replica meets a token whose key it
// has never seen. Should one still arrive (a replica whose reloads failed),
// verify reloads once before calling the token invalid. The same rules
// (keyInUse, keyPublished) hold for every purpose.
type keyManager struct {
	store  store.Store
	encKey []byte
	// prevKeys are the encryption keys encKey replaced
	// (Options.PreviousEncryptionKeys): signing keys sealed under one of
	// them still open, until `authz keys reencrypt` re-seals them.
	prevKeys [][]byte
	now      func() time.Time
	rand     io.Reader
	every    time.Duration
	// tokenTTL is how long a token signed by any of these keys is valid:
	// access tokens and ID tokens both live Options.AccessTokenTTL (see
	// Server.idToken), so one publication window serves both.
	tokenTTL time.Duration
	log      *slog.Logger

	reload     sync.Mutex // one reload at a time
	lastForced time.Time  // last reload for an unknown kid; guarded by reload
	cur        atomic.Pointer[keyState]
}

type keyState struct {
	loadedAt time.Time
	signers  []timed[*tokens.Signer] // access tokens, newest activation first
	// idSigners are the ID-token keys by algorithm, newest activation
	// first. An algorithm no ID token has used yet has none.
	idSigners map[string][]timed[*tokens.IDTokenSigner]
	jwks      []byte         // every published key, access and ID tokens
	keySet    *tokens.KeySet // published access-token keys
	idKeySet  *tokens.KeySet // published ID-token keys
	// underPrevious counts the keys in use that only a previous
	// encryption key opened.
	underPrevious int
}

// timed is a key that signs from its activation on, until a newer key of
// its purpose activates.
type timed[S any] struct {
	from   time.Time
	signer S
}

// signerAt returns the key that signs at now: the newest already active.
func signerAt[S any](list []timed[S], now time.Time) S {
	for _, s := range list {
		if !now.Before(s.from) {
			return s.signer
		}
	}
	// Only keys activating later (a clock behind the rotating process):
	// the earliest of them is the best there is.
	return list[len(list)-1].signer
}

// keyInUse: k signs now or will (it is not retired at now), so its private
// half is needed.
func keyInUse(k store.SigningKey, now time.Time) bool {
	return k.RetiredAt.IsZero() || now.Before(k.RetiredAt)
}

// keyPublished: k is in the JWKS until every token it signed has expired.
func keyPublished(k store.SigningKey, now time.Time, tokenTTL time.Duration) bool {
	return k.RetiredAt.IsZero() || now.Before(k.RetiredAt.Add(tokenTTL+publishLeeway))
}

// publishLeeway keeps a retired key published a little longer than the
// tokens it signed can live, to cover clock skew between servers.
const publishLeeway = 5 * time.Minute

// minForcedReload bounds reloads caused by tokens naming an unknown kid, so
// made-up kids cannot turn every request into a database read.
const minForcedReload = 5 * time.Second

// ErrWrongEncryptionKey: a stored signing key cannot be decrypted with the
// encryption key given (Options.EncryptionKey, RotateSigningKeys's encKey):
// it is not the one the key was sealed with. The caller names its own
// setting (the CLI: --encryption-key, AUTHZ_ENCRYPTION_KEY or the
// AUTHZ_CONFIG file's encryption-key, whichever the operator used).
var ErrWrongEncryptionKey = errors.New("the encryption key is not the one the signing keys were stored with")

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
		if _, err := io.ReadFull(o.Rand, encKey); err != nil {
			return nil, err
		}
	}
	km := &keyManager{
		store: o.Store, encKey: encKey, prevKeys: o.PreviousEncryptionKeys, now: o.Now, rand: o.Rand,
		every: o.KeyRefreshInterval, tokenTTL: o.AccessTokenTTL, log: o.Logger,
	}
	keys, err := km.store.ListSigningKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading signing keys: %w", err)
	}
	if !slices.ContainsFunc(keys, func(k store.SigningKey) bool { return k.KeyPurpose() == store.PurposeAccessToken }) {
		// The first key signs at once: no token exists yet. The store
		// creates it only when there is none, so replicas starting together
		// on a fresh database end with one key; the losers load the winner's.
		k, err := newSigningKey(encKey, store.PurposeAccessToken, o.SigningAlgorithm, o.Now(), time.Time{}, o.Rand)
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
	if st.underPrevious > 0 {
		km.log.Warn("signing keys are sealed under a previous encryption key; run `authz keys reencrypt` before dropping it",
			"keys", st.underPrevious)
	}
	return km, nil
}

// derive is deriveKey(key, label) for the current encryption key, then
// for each previous one, in that order.
func (km *keyManager) derive(label string) [][]byte {
	out := [][]byte{deriveKey(km.encKey, label)}
	for _, k := range km.prevKeys {
		out = append(out, deriveKey(k, label))
	}
	return out
}

// openSigningKey decrypts k's private half with encKey, else with each of
// previous in turn (AES-GCM authenticates, so a wrong key fails rather
// than yielding garbage). previous reports that one of them opened it.
func openSigningKey(k store.SigningKey, encKey []byte, prevKeys [][]byte) (priv tokens.Key, previous bool, err error) {
	priv, err = tokens.DecryptPrivateKey(k.ID, k.Algorithm, k.EncryptedPrivateKey, encKey)
	if err == nil {
		return priv, false, nil
	}
	for _, p := range prevKeys {
		if priv, perr := tokens.DecryptPrivateKey(k.ID, k.Algorithm, k.EncryptedPrivateKey, p); perr == nil {
			return priv, true, nil
		}
	}
	return priv, false, err
}

// ReencryptSigningKeys re-seals under encKey every stored signing key that
// one of prevKeys sealed, so that those keys can be dropped (`authz keys
// reencrypt`). It refuses, before changing anything, when some key opens
// under none of them. Each key is replaced by compare-and-swap on the
// ciphertext it read: a concurrent run, rotation or janitor sweep loses
// nothing, and a key someone else changed meanwhile is left to them. It
// returns how many keys it re-sealed.
func ReencryptSigningKeys(ctx context.Context, st store.Store, encKey []byte, prevKeys [][]byte, r io.Reader) (int, error) {
	if r == nil {
		r = rand.Reader
	}
	keys, err := st.ListSigningKeys(ctx)
	if err != nil {
		return 0, err
	}
	type reseal struct {
		k    store.SigningKey
		priv tokens.Key
	}
	var todo []reseal
	for _, k := range keys {
		priv, previous, err := openSigningKey(k, encKey, prevKeys)
		if err != nil {
			return 0, fmt.Errorf("refusing to re-encrypt: signing key %s (%s) cannot be decrypted with the current or any previous key: %w", k.ID, k.KeyPurpose(), ErrWrongEncryptionKey)
		}
		if previous {
			todo = append(todo, reseal{k, priv})
		}
	}
	n := 0
	for _, t := range todo {
		sealed, err := tokens.EncryptPrivateKey(t.priv, encKey, r)
		if err != nil {
			return n, err
		}
		ok, err := st.ResealSigningKey(ctx, t.k.ID, t.k.EncryptedPrivateKey, sealed)
		if err != nil {
			return n, err
		}
		if ok {
			n++
		}
	}
	return n, nil
}

// newSigningKey generates a key for purpose and seals its private half
// with encKey. activatesAt zero means it signs from now.
func newSigningKey(encKey []byte, purpose, alg string, now, activatesAt time.Time, r io.Reader) (store.SigningKey, error) {
	if alg == "" {
		alg = "ES256"
	}
	if r == nil {
		r = rand.Reader
	}
	if activatesAt.IsZero() {
		activatesAt = now
	}
	generate := tokens.GenerateKey
	if _, ok := store.IDTokenAlgorithm(purpose); ok {
		generate = tokens.GenerateIDTokenKey // RS256 too
	}
	k, err := generate(r, alg)
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
		ID: k.ID, Algorithm: alg, Purpose: purpose, PublicJWK: pub, EncryptedPrivateKey: enc, CreatedAt: now, ActivatesAt: activatesAt,
	}, nil
}

// RotateSigningKeys adds a new access-token key (of algorithm alg) and a
// new ID-token key for every algorithm that has one, each published at
// once and signing from activatesAt (now + KeyActivationDelay of the
// servers' key-reload interval); the key of the same purpose signing until
// then retires at that instant and stays published until the tokens it
// signed have expired. An algorithm no ID token has used yet gets its
// first key when one does, as before. It returns the new keys, the
// access-token key first.
//
// It refuses, before changing anything, when encKey cannot decrypt a key
// that still signs (of any purpose): a new key sealed with another key
// would leave the servers unable to load their keys at their next start.
// Each key is its own store operation; should one fail, the keys already
// rotated stay rotated and running the command again is safe (a key
// rotated twice merely signs for no time).
//
// Keys sealed under one of previous (the encryption keys encKey replaced)
// count as decryptable: the servers open them too.
func RotateSigningKeys(ctx context.Context, st store.Store, encKey []byte, alg string, now, activatesAt time.Time, r io.Reader, previous ...[]byte) ([]store.SigningKey, error) {
	keys, err := st.ListSigningKeys(ctx)
	if err != nil {
		return nil, err
	}
	idAlgs := map[string]bool{}
	signing := map[string]bool{} // purposes with a key signing now
	for _, k := range keys {
		if !keyInUse(k, now) {
			continue // retired: only its public half is still used
		}
		if !now.Before(k.Activation()) {
			signing[k.KeyPurpose()] = true
		}
		if _, _, err := openSigningKey(k, encKey, previous); err != nil {
			return nil, fmt.Errorf("refusing to rotate: signing key %s (%s) cannot be decrypted: %w (not the one the servers use)", k.ID, k.KeyPurpose(), ErrWrongEncryptionKey)
		}
		if a, ok := store.IDTokenAlgorithm(k.KeyPurpose()); ok {
			idAlgs[a] = true
		}
	}
	if activatesAt.Before(now) {
		activatesAt = now
	}
	type next struct{ purpose, alg string }
	todo := []next{{store.PurposeAccessToken, alg}}
	for _, a := range oauth.IDTokenAlgorithms {
		if idAlgs[a] {
			todo = append(todo, next{store.IDTokenPurpose(a), a})
		}
	}
	var out []store.SigningKey
	for _, n := range todo {
		// The delay lets every server publish the new key before tokens
		// signed with it appear; with no key of this purpose signing
		// (`keys rotate` before any server ran) there is nothing to hand
		// over from, and the servers already sign with the only key.
		act := activatesAt
		if !signing[n.purpose] {
			act = now
		}
		k, err := newSigningKey(encKey, n.purpose, n.alg, now, act, r)
		if err != nil {
			return out, err
		}
		if err := st.RotateSigningKey(ctx, k); err != nil {
			return out, err
		}
		out = append(out, k)
	}
	return out, nil
}

// KeyState names a signing key's state at now, for `authz keys list`:
// "pending" (published, not signing yet), "signing", "retired" (published
// for the tokens it signed) or "expired" (no longer published). tokenTTL
// is the access-token lifetime, which ID tokens share.
func KeyState(k store.SigningKey, now time.Time, tokenTTL time.Duration) string {
	switch {
	case now.Before(k.Activation()):
		return "pending"
	case keyInUse(k, now):
		return "signing"
	case keyPublished(k, now, tokenTTL):
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
	st := &keyState{loadedAt: now, idSigners: map[string][]timed[*tokens.IDTokenSigner]{}}
	var access, idTokens [][]byte
	for _, k := range keys {
		purpose := k.KeyPurpose()
		idAlg, isID := store.IDTokenAlgorithm(purpose)
		if !isID && purpose != store.PurposeAccessToken {
			continue // not ours to use (a newer version's purpose)
		}
		if keyInUse(k, now) {
			priv, previous, err := openSigningKey(k, km.encKey, km.prevKeys)
			if err != nil {
				return nil, fmt.Errorf("cannot decrypt signing key %s: %w: %v", k.ID, ErrWrongEncryptionKey, err)
			}
			if previous {
				st.underPrevious++
			}
			if isID {
				signer, err := tokens.NewIDTokenSigner(priv)
				if err != nil {
					return nil, err
				}
				st.idSigners[idAlg] = append(st.idSigners[idAlg], timed[*tokens.IDTokenSigner]{from: k.Activation(), signer: signer})
			} else {
				signer, err := tokens.NewSigner(priv)
				if err != nil {
					return nil, err
				}
				st.signers = append(st.signers, timed[*tokens.Signer]{from: k.Activation(), signer: signer})
			}
		}
		if keyPublished(k, now, km.tokenTTL) {
			if isID {
				idTokens = append(idTokens, k.PublicJWK)
			} else {
				access = append(access, k.PublicJWK)
			}
		}
	}
	if len(st.signers) == 0 {
		return nil, errors.New("no current signing key")
	}
	sortTimed(st.signers)
	for _, l := range st.idSigners {
		sortTimed(l)
	}
	if st.jwks, err = tokens.PublicJWKSet(append(access, idTokens...)...); err != nil {
		return nil, err
	}
	if st.keySet, err = tokens.NewKeySet(access...); err != nil {
		return nil, err
	}
	if st.idKeySet, err = tokens.NewKeySet(idTokens...); err != nil {
		return nil, err
	}
	return st, nil
}

// sortTimed orders keys by activation, newest first.
func sortTimed[S any](l []timed[S]) {
	slices.SortStableFunc(l, func(a, b timed[S]) int { return b.from.Compare(a.from) })
}

// state returns the current keys, reloading them when they are older than
// maxAge. A failed reload keeps the keys already loaded.
func (km *keyManager) state(ctx context.Context, maxAge time.Duration) *keyState {
	st := km.cur.Load()
	if km.now().Sub(st.loadedAt) < maxAge {
		return st
	}
	if !km.reload.TryLock() {
		return st
	}
	defer km.reload.Unlock()
	if st = km.cur.Load(); km.now().Sub(st.loadedAt) < maxAge {
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

// signer returns the key to sign access tokens with now.
func (km *keyManager) signer(ctx context.Context) *tokens.Signer {
	return signerAt(km.state(ctx, km.every).signers, km.now())
}

// idSigner returns the key to sign ID tokens of alg with now. The first
// key of an algorithm is made the first time an ID token needs it (an RSA
// key costs a few hundred milliseconds, which a server that never issues
// an RS256 ID token should not pay) and signs at once, since no ID token
// of that algorithm exists yet; the store keeps one first key per
// algorithm however many replicas try at once, and the losers use the
// winner's. From then on `authz keys rotate` rotates it like any key.
func (km *keyManager) idSigner(ctx context.Context, alg string) (*tokens.IDTokenSigner, error) {
	if l := km.state(ctx, km.every).idSigners[alg]; len(l) > 0 {
		return signerAt(l, km.now()), nil
	}
	km.reload.Lock()
	defer km.reload.Unlock()
	// Another replica (or caller) may have made it since the last load.
	st, err := km.load(ctx)
	if err != nil {
		return nil, err
	}
	km.cur.Store(st)
	if l := st.idSigners[alg]; len(l) > 0 {
		return signerAt(l, km.now()), nil
	}
	k, err := newSigningKey(km.encKey, store.IDTokenPurpose(alg), alg, km.now(), time.Time{}, km.rand)
	if err != nil {
		return nil, err
	}
	if err := km.store.CreateFirstSigningKey(ctx, k); err != nil && !errors.Is(err, store.ErrAlreadyExists) {
		return nil, err
	}
	if st, err = km.load(ctx); err != nil {
		return nil, err
	}
	km.cur.Store(st)
	if l := st.idSigners[alg]; len(l) > 0 {
		return signerAt(l, km.now()), nil
	}
	return nil, fmt.Errorf("%w: the ID-token key for %s was stored but not loaded", store.ErrUnavailable, alg)
}

// loadIDSigner makes sure this replica has loaded alg's ID-token keys when
// the store has them, reloading (at most once a second) when it has none:
// another replica may have made the algorithm's first key. It never makes
// one; the error is the store's.
func (km *keyManager) loadIDSigner(ctx context.Context, alg string) error {
	// Checked before the lock too: this runs before every code exchange
	// and refresh, and a server whose clients never ask for openid has no
	// ID-token key, so the lock would otherwise be taken by each of them.
	if st := km.state(ctx, km.every); len(st.idSigners[alg]) > 0 || km.now().Sub(st.loadedAt) < time.Second {
		return nil
	}
	km.reload.Lock()
	defer km.reload.Unlock()
	st := km.cur.Load()
	if len(st.idSigners[alg]) > 0 || km.now().Sub(st.loadedAt) < time.Second {
		return nil
	}
	next, err := km.load(ctx)
	if err != nil {
		return err
	}
	km.cur.Store(next)
	return nil
}

// verify checks an access token issued by this server (any replica). A
// token naming a kid this replica does not know makes it reload the keys
// once before calling the token invalid: single-flight (concurrent callers
// wait for one reload) and at most once per minForcedReload. ok is false
// for a token that is not valid; err is set only when the keys could not be
// reloaded, and then nothing can be decided (the caller answers 503).
func (km *keyManager) verify(ctx context.Context, token, issuer string, now time.Time) (cl tokens.AccessTokenClaims, ok bool, err error) {
	st := km.state(ctx, km.every)
	cl, verr := st.keySet.Verify(token, issuer, now, 0)
	if errors.Is(verr, tokens.ErrUnknownKey) {
		if st, err = km.reloadForUnknownKey(ctx, st); err != nil {
			return cl, false, err
		}
		cl, verr = st.keySet.Verify(token, issuer, now, 0)
	}
	return cl, verr == nil, nil
}

// verifyIDTokenHint checks an id_token_hint against the published ID-token
// keys: a hint this replica cannot verify makes it reload once, as verify
// does, since its key may be one another replica just made. A hint whose
// key is no longer published (retired by a rotation longer ago than the
// ID-token lifetime) is not accepted.
func (km *keyManager) verifyIDTokenHint(ctx context.Context, token, issuer string) (tokens.IDTokenClaims, error) {
	st := km.state(ctx, km.every)
	c, err := st.idKeySet.VerifyIDTokenHint(token, issuer)
	if err == nil {
		return c, nil
	}
	next, rerr := km.reloadForUnknownKey(ctx, st)
	if rerr != nil {
		return c, rerr
	}
	if next == st {
		return c, err
	}
	return next.idKeySet.VerifyIDTokenHint(token, issuer)
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

// jwks is the published key set: access-token and ID-token keys. While
// some ID-token algorithm has no key yet, it is re-read at most once a
// second rather than every reload interval: another replica may have just
// made that algorithm's first key, which signs at once, and a relying
// party fetching the JWKS for it must find it here too.
func (km *keyManager) jwks(ctx context.Context) []byte {
	maxAge := km.every
	if st := km.cur.Load(); len(st.idSigners) < len(oauth.IDTokenAlgorithms) {
		maxAge = min(maxAge, time.Second)
	}
	return km.state(ctx, maxAge).jwks
}

// jwks serves the JWKS endpoint.
func (s *Server) jwks() ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.keys.jwks(ctx), nil
}
