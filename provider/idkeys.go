package provider

import (
	"context"
	"encoding/json"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/authzd/authz/provider/store"
	"github.com/authzd/authz/provider/tokens"
)

// idTokenKeys holds the ID-token signing keys, one per algorithm. A key is
// made the first time an ID token needs it (an RSA key costs a few hundred
// milliseconds, which a server that never issues an RS256 ID token should
// not pay) and stored with EnsureIDTokenKey, so replicas agree on one key
// per algorithm. Published keys are re-read at most once a second while
// some algorithm has none yet, so a key another replica just made is in
// this replica's JWKS by the time a relying party looks for it.
type idTokenKeys struct {
	store  store.Store
	encKey []byte
	now    func() time.Time
	rand   io.Reader

	mu       sync.Mutex
	signers  map[string]*tokens.IDTokenSigner
	public   [][]byte
	keySet   *tokens.KeySet
	loadedAt time.Time
}

func newIDTokenKeys(o Options, encKey []byte) *idTokenKeys {
	ks, _ := tokens.NewKeySet()
	return &idTokenKeys{store: o.Store, encKey: encKey, now: o.Now, rand: o.Rand, signers: map[string]*tokens.IDTokenSigner{}, keySet: ks}
}

// load re-reads the stored keys; k.mu is held.
func (k *idTokenKeys) load(ctx context.Context) error {
	keys, err := k.store.ListIDTokenKeys(ctx)
	if err != nil {
		return err
	}
	var public [][]byte
	for _, sk := range keys {
		public = append(public, sk.PublicJWK)
		if _, ok := k.signers[sk.Algorithm]; ok {
			continue
		}
		priv, err := tokens.DecryptPrivateKey(sk.ID, sk.Algorithm, sk.EncryptedPrivateKey, k.encKey)
		if err != nil {
			return err
		}
		s, err := tokens.NewIDTokenSigner(priv)
		if err != nil {
			return err
		}
		k.signers[sk.Algorithm] = s
	}
	ks, err := tokens.NewKeySet(public...)
	if err != nil {
		return err
	}
	k.public, k.keySet, k.loadedAt = public, ks, k.now()
	return nil
}

// refresh reloads while an algorithm has no key, at most once a second.
func (k *idTokenKeys) refresh(ctx context.Context) error {
	if len(k.signers) == len(tokens.IDTokenAlgorithms) || k.now().Sub(k.loadedAt) < time.Second {
		return nil
	}
	return k.load(ctx)
}

// signer returns the signer for alg, making and storing the key on first use.
func (k *idTokenKeys) signer(ctx context.Context, alg string) (*tokens.IDTokenSigner, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if s, ok := k.signers[alg]; ok {
		return s, nil
	}
	if err := k.load(ctx); err != nil {
		return nil, err
	}
	if s, ok := k.signers[alg]; ok {
		return s, nil
	}
	priv, err := tokens.GenerateIDTokenKey(k.rand, alg)
	if err != nil {
		return nil, err
	}
	pub, err := priv.PublicJWK()
	if err != nil {
		return nil, err
	}
	enc, err := tokens.EncryptPrivateKey(priv, k.encKey, k.rand)
	if err != nil {
		return nil, err
	}
	if _, err := k.store.EnsureIDTokenKey(ctx, store.SigningKey{ID: priv.ID, Algorithm: alg, PublicJWK: pub, EncryptedPrivateKey: enc, CreatedAt: k.now()}); err != nil {
		return nil, err
	}
	// Whichever replica won, the stored key is the one to use.
	if err := k.load(ctx); err != nil {
		return nil, err
	}
	s, ok := k.signers[alg]
	if !ok {
		return nil, store.ErrUnavailable
	}
	return s, nil
}

// publicKeys returns the ID-token public JWKs to publish.
func (k *idTokenKeys) publicKeys(ctx context.Context) ([][]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	err := k.refresh(ctx)
	return slices.Clone(k.public), err
}

// verifyHint checks an id_token_hint, reloading once for a key this
// replica has not seen.
func (k *idTokenKeys) verifyHint(ctx context.Context, token, issuer string) (tokens.IDTokenClaims, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	c, err := k.keySet.VerifyIDTokenHint(token, issuer)
	if err == nil {
		return c, nil
	}
	if rerr := k.refresh(ctx); rerr != nil {
		return c, rerr
	}
	return k.keySet.VerifyIDTokenHint(token, issuer)
}

// jwks is the published key set: the access-token keys and the ID-token keys.
func (s *Server) jwks() ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	access, err := s.keys.jwks()
	if err != nil || s.idKeys == nil {
		return access, err
	}
	idKeys, err := s.idKeys.publicKeys(ctx)
	if err != nil {
		s.log.Warn("reading ID-token keys failed; publishing the keys already loaded", "cause", err)
	}
	if len(idKeys) == 0 {
		return access, nil
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(access, &set); err != nil {
		return nil, err
	}
	for _, k := range idKeys {
		set.Keys = append(set.Keys, k)
	}
	return json.Marshal(set)
}
