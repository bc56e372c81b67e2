package memory

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/authzd/authz/provider/store"
)

// Store keeps every record in maps behind one mutex. Each method holds the
// mutex for its whole run, which is what makes the domain operations
// (ConsumeAuthCode, RotateRefreshToken) atomic, as a transaction does in
// PostgreSQL. Values are deep-copied in and out, so a caller can never alias
// the store's state, and timestamps are normalised to UTC microseconds on
// the way in, as a timestamptz column would keep them.
type Store struct {
	mu sync.Mutex

	clients    map[string]store.Client
	users      map[string]store.User
	userByName map[string]string         // username → user ID
	codes      map[string]store.AuthCode // by string(hash)
	grants     map[string]store.Grant
	// grantByCode maps a code hash to the grant it started. It outlives the
	// code (deleted when consumed) so that a replayed code can still find
	// and revoke its grant (RFC 6749 §4.1.2).
	grantByCode map[string]string
	refresh     map[string]store.RefreshToken // by string(hash)
	revokedJTIs map[string]time.Time          // JWT ID → the token's expiry
	assertions  map[assertionKey]time.Time    // used client assertion → its expiry
	consents    map[consentKey]store.Consent
	keys        map[string]store.SigningKey
	sessions    map[string]store.Session            // by string(hash)
	iats        map[string]store.InitialAccessToken // by string(hash)
	counters    map[string]store.Counter
	audit       []store.AuditEvent // append-only, in ID order
	auditSeq    int64
	identities  map[identityKey]store.Identity
}

type identityKey struct{ provider, subject string }

type consentKey struct{ userID, clientID string }

type assertionKey struct{ clientID, jtiHash string }

var _ store.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store {
	return &Store{
		clients:     map[string]store.Client{},
		users:       map[string]store.User{},
		userByName:  map[string]string{},
		codes:       map[string]store.AuthCode{},
		grants:      map[string]store.Grant{},
		grantByCode: map[string]string{},
		refresh:     map[string]store.RefreshToken{},
		revokedJTIs: map[string]time.Time{},
		assertions:  map[assertionKey]time.Time{},
		consents:    map[consentKey]store.Consent{},
		keys:        map[string]store.SigningKey{},
		sessions:    map[string]store.Session{},
		iats:        map[string]store.InitialAccessToken{},
		counters:    map[string]store.Counter{},
		identities:  map[identityKey]store.Identity{},
	}
}

// Ping always succeeds: there is nothing to reach.
func (s *Store) Ping(context.Context) error { return nil }

// Close does nothing; the maps go with the process.
func (s *Store) Close() {}

// ---- Clients ----

func (s *Store) CreateClient(_ context.Context, c store.Client) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.clients[c.ID]; ok {
		return store.ErrAlreadyExists
	}
	s.clients[c.ID] = cloneClient(c)
	return nil
}

func (s *Store) GetClient(_ context.Context, id string) (store.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clients[id]
	if !ok {
		return store.Client{}, store.ErrNotFound
	}
	return cloneClient(c), nil
}

func (s *Store) ListClients(context.Context) ([]store.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]store.Client, 0, len(s.clients))
	for _, c := range s.clients {
		out = append(out, cloneClient(c))
	}
	slices.SortFunc(out, func(a, b store.Client) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

// UpdateClient runs edit under the store's lock on a copy of the client
// and keeps only SecretHash, Metadata and UpdatedAt from it: Trust,
// CreatedAt, UsedAt, SecretExpiresAt and the registration token hash stay
// as they are, so nothing edit did not decide is written back.
func (s *Store) UpdateClient(_ context.Context, id string, edit store.EditClientFunc) (store.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.clients[id]
	if !ok {
		return store.Client{}, store.ErrNotFound
	}
	return s.editClientLocked(cur, cur.RegistrationTokenHash, edit)
}

// UpdateRegisteredClient is UpdateClient that also replaces the
// registration token hash with next, under the same lock as the check that
// presented is still the client's registration token hash: edit sees the
// client as stored, allowances an administrator narrowed included.
func (s *Store) UpdateRegisteredClient(_ context.Context, id string, presented, next []byte, edit store.EditClientFunc) (store.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.clients[id]
	if !ok || !store.RegistrationTokenIs(cur, presented) {
		return store.Client{}, store.ErrNotFound
	}
	return s.editClientLocked(cur, next, edit)
}

// editClientLocked runs edit on a copy of cur and stores cur with the
// edit's SecretHash, Metadata and UpdatedAt and registration token hash
// regHash. The caller holds s.mu.
func (s *Store) editClientLocked(cur store.Client, regHash []byte, edit store.EditClientFunc) (store.Client, error) {
	n := cloneClient(cur)
	if err := edit(&n); err != nil {
		return store.Client{}, err
	}
	n = cloneClient(n)
	cur.SecretHash, cur.Metadata, cur.UpdatedAt = n.SecretHash, n.Metadata, n.UpdatedAt
	cur.RegistrationTokenHash = bytes.Clone(regHash)
	s.clients[cur.ID] = cur
	return cloneClient(cur), nil
}

// DeleteClient removes the client with its codes, grants, refresh tokens and
// consents: a client that is gone must leave no token that still works.
func (s *Store) DeleteClient(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.clients[id]; !ok {
		return store.ErrNotFound
	}
	s.deleteClientLocked(id)
	return nil
}

// DeleteRegisteredClient is DeleteClient under the same lock as the check
// that presented is still the client's registration token hash.
func (s *Store) DeleteRegisteredClient(_ context.Context, id string, presented []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.clients[id]
	if !ok || !store.RegistrationTokenIs(cur, presented) {
		return store.ErrNotFound
	}
	s.deleteClientLocked(id)
	return nil
}

func (s *Store) deleteClientLocked(id string) {
	delete(s.clients, id)
	s.dropGrantsLocked(func(g store.Grant) bool { return g.ClientID == id })
	for k := range s.consents {
		if k.clientID == id {
			delete(s.consents, k)
		}
	}
}

// MarkClientUsed moves UsedAt forward only.
func (s *Store) MarkClientUsed(_ context.Context, id string, now time.Time) error {
	now = norm(now)
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clients[id]
	if !ok {
		return store.ErrNotFound
	}
	if now.After(c.UsedAt) {
		c.UsedAt = now
		s.clients[id] = c
	}
	return nil
}

// SaveMetadataDocumentClient upserts a metadata-document client, dropping
// its consents when the document's redirect URIs or keys changed.
func (s *Store) SaveMetadataDocumentClient(_ context.Context, c store.Client) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := cloneClient(c)
	if cur, ok := s.clients[c.ID]; ok {
		if cur.Trust != store.TrustMetadataDocument {
			return store.ErrAlreadyExists
		}
		n.CreatedAt, n.UsedAt = cur.CreatedAt, cur.UsedAt
		if store.DocumentIdentityChanged(cur.Metadata, n.Metadata) {
			for k := range s.consents {
				if k.clientID == c.ID {
					delete(s.consents, k)
				}
			}
		}
	}
	s.clients[c.ID] = n
	return nil
}

// DeleteStaleClients decides and deletes under the one lock.
func (s *Store) DeleteStaleClients(_ context.Context, now time.Time, unusedTTL, idleTTL time.Duration) ([]store.Client, error) {
	now = norm(now)
	s.mu.Lock()
	defer s.mu.Unlock()
	live := map[string]bool{}
	for _, g := range s.grants {
		if g.Active(now) {
			live[g.ClientID] = true
		}
	}
	var doomed []store.Client
	for id, c := range s.clients {
		if store.ClientStale(c, live[id], now, unusedTTL, idleTTL) {
			doomed = append(doomed, cloneClient(c))
		}
	}
	for _, c := range doomed {
		s.deleteClientLocked(c.ID)
	}
	return doomed, nil
}

// ---- Users ----

func (s *Store) CreateUser(_ context.Context, u store.User) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.users[u.ID]; ok {
		return store.ErrAlreadyExists
	}
	if _, ok := s.userByName[u.Username]; ok {
		return store.ErrAlreadyExists
	}
	u.CreatedAt = norm(u.CreatedAt)
	s.users[u.ID] = u
	s.userByName[u.Username] = u.ID
	return nil
}

func (s *Store) GetUser(_ context.Context, id string) (store.User, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[id]
	if !ok {
		return store.User{}, store.ErrNotFound
	}
	return u, nil
}

func (s *Store) GetUserByUsername(_ context.Context, username string) (store.User, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.userByName[username]
	if !ok {
		return store.User{}, store.ErrNotFound
	}
	return s.users[id], nil
}

func (s *Store) ListUsers(context.Context) ([]store.User, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]store.User, 0, len(s.users))
	for _, u := range s.users {
		out = append(out, u)
	}
	slices.SortFunc(out, func(a, b store.User) int { return cmp.Compare(a.Username, b.Username) })
	return out, nil
}

func (s *Store) SetUserPassword(_ context.Context, id, passwordHash string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[id]
	if !ok {
		return store.ErrNotFound
	}
	u.PasswordHash = passwordHash
	s.users[id] = u
	return nil
}

// DeleteUser removes the user with their grants (and so their codes and
// refresh tokens), consents and sessions.
func (s *Store) DeleteUser(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[id]
	if !ok {
		return store.ErrNotFound
	}
	delete(s.users, id)
	delete(s.userByName, u.Username)
	s.dropGrantsLocked(func(g store.Grant) bool { return g.UserID == id })
	for k := range s.consents {
		if k.userID == id {
			delete(s.consents, k)
		}
	}
	for k, se := range s.sessions {
		if se.UserID == id {
			delete(s.sessions, k)
		}
	}
	for k, in := range s.identities {
		if in.UserID == id {
			delete(s.identities, k)
		}
	}
	return nil
}

// ---- Authorization codes and grants ----

// CreateAuthCode stores a code and the grant it will start, as one record
// pair: the grant exists (unredeemed) from the moment the code does.
func (s *Store) CreateAuthCode(_ context.Context, code store.AuthCode, g store.Grant) error {
	if err := store.CheckCodeGrant(code, g); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.clients[g.ClientID]; !ok {
		return fmt.Errorf("memory: client %q: %w", g.ClientID, store.ErrNotFound)
	}
	if _, ok := s.users[g.UserID]; !ok {
		return fmt.Errorf("memory: user %q: %w", g.UserID, store.ErrNotFound)
	}
	if _, ok := s.grants[g.ID]; ok {
		return store.ErrAlreadyExists
	}
	if _, ok := s.grantByCode[string(code.Hash)]; ok {
		return store.ErrAlreadyExists
	}
	s.codes[string(code.Hash)] = cloneCode(code)
	s.grants[g.ID] = cloneGrant(g)
	s.grantByCode[string(code.Hash)] = g.ID
	return nil
}

// ConsumeAuthCode is the single-use gate. The code is deleted on every
// outcome but "unknown", so it can be presented successfully at most once.
// The decision is store.DecideRedemption's, taken under the mutex.
func (s *Store) ConsumeAuthCode(_ context.Context, hash []byte, now time.Time, redeem store.RedeemFunc) (store.AuthCode, error) {
	now = norm(now)
	s.mu.Lock()
	defer s.mu.Unlock()
	var code *store.AuthCode
	if c, ok := s.codes[string(hash)]; ok {
		code = &c
	}
	var grant *store.Grant
	if gid, ok := s.grantByCode[string(hash)]; ok {
		if g, ok := s.grants[gid]; ok {
			grant = &g
		}
	}
	outcome, err := store.DecideRedemption(code, grant, now)
	switch outcome {
	case store.RedeemReplay:
		// RFC 6749 §4.1.2: revoke every token issued from the code, i.e.
		// the whole grant.
		s.revokeLocked(grant.ID, now)
		return store.ReplayedCode(*grant), err
	case store.RedeemSpent:
		return store.ReplayedCode(*grant), err
	case store.RedeemRefuse:
		delete(s.codes, string(hash))
		return store.AuthCode{}, err
	case store.RedeemOK:
	default:
		return store.AuthCode{}, err
	}
	c, g := *code, *grant
	// Nothing changes until every step below has succeeded, as in one
	// transaction.
	var red store.Redemption
	if redeem != nil {
		var err error
		if red, err = redeem(cloneCode(c)); err != nil {
			delete(s.codes, string(hash))
			s.revokeLocked(g.ID, now)
			return store.AuthCode{}, err
		}
		if rt := red.Refresh; rt != nil {
			if _, dup := s.refresh[string(rt.Hash)]; dup {
				return store.AuthCode{}, store.ErrAlreadyExists
			}
		}
	}
	delete(s.codes, string(hash))
	g.LastUsedAt = now
	s.grants[g.ID] = g
	if red.Refresh != nil {
		s.refresh[string(red.Refresh.Hash)] = cloneRefresh(*red.Refresh)
	}
	for _, e := range red.Events {
		s.appendAuditLocked(e)
	}
	return cloneCode(c), nil
}

func (s *Store) GetGrant(_ context.Context, id string) (store.Grant, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.grants[id]
	if !ok {
		return store.Grant{}, store.ErrNotFound
	}
	return cloneGrant(g), nil
}

// ListUserGrants lists the grants a user would recognise as "apps with
// access": redeemed, not revoked, not past their lifetime. Newest means most
// recently created; ties go by ID so the order is stable.
func (s *Store) ListUserGrants(_ context.Context, userID string, now time.Time) ([]store.Grant, error) {
	now = norm(now)
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []store.Grant
	for _, g := range s.grants {
		if g.UserID == userID && !g.LastUsedAt.IsZero() && g.Active(now) {
			out = append(out, cloneGrant(g))
		}
	}
	slices.SortFunc(out, func(a, b store.Grant) int {
		return cmp.Or(b.CreatedAt.Compare(a.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

func (s *Store) RevokeGrant(_ context.Context, id string, now time.Time) error {
	now = norm(now)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.revokeLocked(id, now) {
		return store.ErrNotFound
	}
	return nil
}

// RevokeUserGrant checks the owner, revokes and forgets the consent under
// the one mutex.
func (s *Store) RevokeUserGrant(_ context.Context, userID, id string, now time.Time) (store.Grant, error) {
	now = norm(now)
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.grants[id]
	if !ok || g.UserID != userID {
		return store.Grant{}, store.ErrNotFound
	}
	s.revokeLocked(id, now)
	delete(s.consents, consentKey{userID, g.ClientID})
	return cloneGrant(s.grants[id]), nil
}

// revokeLocked marks grant id revoked at now unless it already is, so the
// first revocation instant is kept. It reports whether the grant exists.
func (s *Store) revokeLocked(id string, now time.Time) bool {
	g, ok := s.grants[id]
	if !ok {
		return false
	}
	if g.RevokedAt.IsZero() {
		g.RevokedAt = now
		s.grants[id] = g
	}
	return true
}

// dropGrantsLocked deletes the grants that match, with their codes and
// refresh tokens, and returns how many records it removed.
func (s *Store) dropGrantsLocked(match func(store.Grant) bool) int64 {
	var n int64
	dropped := map[string]bool{}
	for id, g := range s.grants {
		if !match(g) {
			continue
		}
		dropped[id] = true
		delete(s.grants, id)
		delete(s.grantByCode, string(g.CodeHash))
		n++
		if _, ok := s.codes[string(g.CodeHash)]; ok {
			delete(s.codes, string(g.CodeHash))
			n++
		}
	}
	if len(dropped) == 0 {
		return n
	}
	for h, rt := range s.refresh {
		if dropped[rt.GrantID] {
			delete(s.refresh, h)
			n++
		}
	}
	return n
}

// ---- Refresh tokens ----

func (s *Store) GetRefreshToken(_ context.Context, hash []byte) (store.RefreshToken, store.Grant, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt, ok := s.refresh[string(hash)]
	if !ok {
		return store.RefreshToken{}, store.Grant{}, store.ErrNotFound
	}
	g, ok := s.grants[rt.GrantID]
	if !ok { // cannot happen: tokens go with their grant
		return store.RefreshToken{}, store.Grant{}, store.ErrNotFound
	}
	return cloneRefresh(rt), cloneGrant(g), nil
}

// RotateRefreshToken decides win, grace or reuse (store.DecideRotation)
// under the mutex, so two presentations of one token are strictly ordered.
// next runs with the mutex held and must not call the store.
func (s *Store) RotateRefreshToken(_ context.Context, hash []byte, now time.Time, grace time.Duration, next store.NextRefreshFunc) (store.Rotation, error) {
	now = norm(now)
	s.mu.Lock()
	defer s.mu.Unlock()
	var old *store.RefreshToken
	var grant *store.Grant
	if rt, ok := s.refresh[string(hash)]; ok {
		old = &rt
		if g, ok := s.grants[rt.GrantID]; ok {
			grant = &g
		}
	}
	outcome, err := store.DecideRotation(old, grant, now, grace)
	if errors.Is(err, store.ErrRefreshReused) {
		s.revokeLocked(grant.ID, now)
	}
	if err != nil {
		return store.Rotation{}, err
	}
	o, g := *old, *grant

	// next gets copies: whatever it does with them, our state is unchanged
	// until we decide below. Its error is returned as is, with nothing
	// written, so a refused request (another client's token, a scope it may
	// not have) does not spend a live token.
	succ, err := next(cloneRefresh(o), cloneGrant(g))
	if err != nil {
		return store.Rotation{}, err
	}
	succ = cloneRefresh(succ)
	if err := store.CheckSuccessor(o, succ); err != nil {
		return store.Rotation{}, err
	}
	stored, exists := s.refresh[string(succ.Hash)]
	switch {
	case exists && outcome == store.RotateWithinGrace:
		// One successor per token: the one the first rotation stored.
		if err := store.SameSuccessor(o, stored); err != nil {
			return store.Rotation{}, err
		}
		succ = stored
	case exists:
		return store.Rotation{}, store.ErrAlreadyExists
	default:
		s.refresh[string(succ.Hash)] = succ
	}
	rot := store.Rotation{Old: cloneRefresh(o), WithinGrace: outcome == store.RotateWithinGrace}
	if outcome == store.RotateWin {
		// RotatedAt records the first exchange only, so the grace window
		// cannot be stretched by presenting the token again and again.
		o.RotatedAt = now
		s.refresh[string(hash)] = o
	}
	if store.TouchDue(g.LastUsedAt, now) {
		g.LastUsedAt = now
		s.grants[g.ID] = g
	}
	rot.Grant, rot.New = cloneGrant(g), cloneRefresh(succ)
	return rot, nil
}

// ---- Access-token revocation (RFC 7009) ----

// RevokeAccessToken remembers jti until expiresAt. Revoking again keeps the
// later expiry, so an entry never disappears while its token could be valid.
func (s *Store) RevokeAccessToken(_ context.Context, jti string, expiresAt time.Time) error {
	expiresAt = norm(expiresAt)
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.revokedJTIs[jti]; !ok || expiresAt.After(cur) {
		s.revokedJTIs[jti] = expiresAt
	}
	return nil
}

// AccessTokenStatus reads the revocation entry and the grant or client
// under the one mutex, so the answer is of one instant.
func (s *Store) AccessTokenStatus(_ context.Context, jti, grantID, clientID string, now time.Time) (store.AccessTokenStatus, error) {
	now = norm(now)
	s.mu.Lock()
	defer s.mu.Unlock()
	var st store.AccessTokenStatus
	exp, ok := s.revokedJTIs[jti]
	st.Revoked = ok && now.Before(exp)
	if grantID == "" {
		_, st.Found = s.clients[clientID]
		return st, nil
	}
	if g, ok := s.grants[grantID]; ok {
		g = cloneGrant(g)
		st.Found, st.Grant = true, &g
	}
	return st, nil
}

// ---- Client assertions (RFC 7523 §3 item 7) ----

// UseClientAssertion checks and records under the one mutex, so of many
// concurrent uses of one assertion exactly one wins.
func (s *Store) UseClientAssertion(_ context.Context, a store.ClientAssertion, now time.Time) error {
	now = norm(now)
	k := assertionKey{a.ClientID, string(a.JTIHash)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if exp, ok := s.assertions[k]; ok && now.Before(exp) {
		return store.ErrAlreadyExists
	}
	s.assertions[k] = norm(a.ExpiresAt)
	return nil
}

// ---- Consents ----

func (s *Store) GetConsent(_ context.Context, userID, clientID string) (store.Consent, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.consents[consentKey{userID, clientID}]
	if !ok {
		return store.Consent{}, store.ErrNotFound
	}
	return cloneConsent(c), nil
}

// AddConsent merges under the one mutex, so concurrent consents never lose
// each other's scopes.
func (s *Store) AddConsent(_ context.Context, c store.Consent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.users[c.UserID]; !ok {
		return fmt.Errorf("memory: user %q: %w", c.UserID, store.ErrNotFound)
	}
	if _, ok := s.clients[c.ClientID]; !ok {
		return fmt.Errorf("memory: client %q: %w", c.ClientID, store.ErrNotFound)
	}
	k := consentKey{c.UserID, c.ClientID}
	cur, ok := s.consents[k]
	if !ok {
		cur = store.Consent{UserID: c.UserID, ClientID: c.ClientID}
	}
	cur.Scopes = union(cur.Scopes, c.Scopes)
	cur.Resources = union(cur.Resources, c.Resources)
	cur.UpdatedAt = c.UpdatedAt
	s.consents[k] = cloneConsent(cur)
	return nil
}

// union appends to a the elements of b it lacks, keeping a's order.
func union(a, b []string) []string {
	out := slices.Clone(a)
	for _, v := range b {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

func (s *Store) DeleteConsent(_ context.Context, userID, clientID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.consents, consentKey{userID, clientID})
	return nil
}

// ---- Counters ----

func (s *Store) HitCounter(_ context.Context, key string, window time.Duration, now time.Time) (store.Counter, error) {
	now = norm(now)
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.counters[key]
	if !ok || !now.Before(c.ExpiresAt) {
		c = store.Counter{Key: key, ExpiresAt: norm(now.Add(window))}
	}
	c.Count++
	s.counters[key] = c
	return c, nil
}

func (s *Store) UnhitCounter(_ context.Context, key string, now time.Time) error {
	now = norm(now)
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.counters[key]; ok && now.Before(c.ExpiresAt) && c.Count > 0 {
		c.Count--
		s.counters[key] = c
	}
	return nil
}

func (s *Store) GetCounter(_ context.Context, key string, now time.Time) (store.Counter, error) {
	now = norm(now)
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.counters[key]
	if !ok || !now.Before(c.ExpiresAt) {
		return store.Counter{}, store.ErrNotFound
	}
	return c, nil
}

func (s *Store) DeleteCounters(_ context.Context, prefix string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for k := range s.counters {
		if strings.HasPrefix(k, prefix) {
			delete(s.counters, k)
			n++
		}
	}
	return n, nil
}

// ---- Signing keys ----

func (s *Store) RotateSigningKey(_ context.Context, k store.SigningKey) error {
	k = cloneKey(k)
	k.RetiredAt = time.Time{} // stored as the newest key
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.keys[k.ID]; ok {
		return store.ErrAlreadyExists
	}
	for id, old := range s.keys {
		if old.Purpose != k.Purpose {
			continue
		}
		if old.RetiredAt.IsZero() || old.RetiredAt.After(k.ActivatesAt) {
			old.RetiredAt = k.ActivatesAt
			s.keys[id] = old
		}
	}
	s.keys[k.ID] = k
	return nil
}

func (s *Store) ResealSigningKey(_ context.Context, id string, old, sealed []byte) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[id]
	if !ok || !bytes.Equal(k.EncryptedPrivateKey, old) {
		return false, nil
	}
	k.EncryptedPrivateKey = bytes.Clone(sealed)
	s.keys[id] = k
	return true, nil
}

func (s *Store) CreateFirstSigningKey(_ context.Context, k store.SigningKey) error {
	k = cloneKey(k)
	k.RetiredAt = time.Time{}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, old := range s.keys {
		if old.Purpose == k.Purpose || old.ID == k.ID {
			return store.ErrAlreadyExists
		}
	}
	s.keys[k.ID] = k
	return nil
}

func (s *Store) ListSigningKeys(context.Context) ([]store.SigningKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]store.SigningKey, 0, len(s.keys))
	for _, k := range s.keys {
		out = append(out, cloneKey(k))
	}
	slices.SortFunc(out, func(a, b store.SigningKey) int {
		return cmp.Or(b.CreatedAt.Compare(a.CreatedAt), cmp.Compare(b.ID, a.ID))
	})
	return out, nil
}

// DeleteSigningKeysRetiredBefore removes keys retired strictly before t; the
// current key is never retired and so never removed.
func (s *Store) DeleteSigningKeysRetiredBefore(_ context.Context, t time.Time) error {
	t = norm(t)
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, k := range s.keys {
		if !k.RetiredAt.IsZero() && k.RetiredAt.Before(t) {
			delete(s.keys, id)
		}
	}
	return nil
}

// ---- Sessions ----

func (s *Store) CreateSession(_ context.Context, se store.Session) error {
	se.Hash, se.CreatedAt, se.ExpiresAt = bytes.Clone(se.Hash), norm(se.CreatedAt), norm(se.ExpiresAt)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.users[se.UserID]; !ok {
		return fmt.Errorf("memory: user %q: %w", se.UserID, store.ErrNotFound)
	}
	if _, ok := s.sessions[string(se.Hash)]; ok {
		return store.ErrAlreadyExists
	}
	s.sessions[string(se.Hash)] = se
	return nil
}

// GetSessionUser reads the session and its user under one lock, as
// PostgreSQL's join reads them in one statement.
func (s *Store) GetSessionUser(_ context.Context, hash []byte, now time.Time) (store.Session, store.User, error) {
	now = norm(now)
	s.mu.Lock()
	defer s.mu.Unlock()
	se, ok := s.sessions[string(hash)]
	if !ok {
		return store.Session{}, store.User{}, store.ErrNotFound
	}
	u, ok := s.users[se.UserID]
	if !ok {
		return store.Session{}, store.User{}, store.ErrNotFound
	}
	if !now.Before(se.ExpiresAt) {
		return store.Session{}, store.User{}, store.ErrExpired
	}
	se.Hash = bytes.Clone(se.Hash)
	return se, u, nil
}

func (s *Store) DeleteSession(_ context.Context, hash []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sessions, string(hash))
	return nil
}

// ---- Initial access tokens (RFC 7591 §3) ----

func (s *Store) CreateInitialAccessToken(_ context.Context, t store.InitialAccessToken) error {
	t.Hash, t.CreatedAt, t.ExpiresAt = bytes.Clone(t.Hash), norm(t.CreatedAt), norm(t.ExpiresAt)
	t.AllowGrants, t.Scopes, t.Resources = slices.Clone(t.AllowGrants), slices.Clone(t.Scopes), slices.Clone(t.Resources)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.iats[string(t.Hash)]; ok {
		return store.ErrAlreadyExists
	}
	s.iats[string(t.Hash)] = t
	return nil
}

func (s *Store) GetInitialAccessToken(_ context.Context, hash []byte, now time.Time) (store.InitialAccessToken, error) {
	now = norm(now)
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.iats[string(hash)]
	if !ok {
		return store.InitialAccessToken{}, store.ErrNotFound
	}
	if !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt) { // zero: never expires
		return store.InitialAccessToken{}, store.ErrExpired
	}
	t.Hash = bytes.Clone(t.Hash)
	t.AllowGrants, t.Scopes, t.Resources = slices.Clone(t.AllowGrants), slices.Clone(t.Scopes), slices.Clone(t.Resources)
	return t, nil
}

// ---- Garbage collection ----

// DeleteExpired removes what can no longer be used at now. Revoked grants
// that are still within their lifetime stay, so that a replay of their code
// is still recognised as one.
func (s *Store) DeleteExpired(_ context.Context, now time.Time) (int64, error) {
	now = norm(now)
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	// Codes first, so a grant whose code expires now counts as "never
	// redeemed and its code gone" in the same sweep.
	for h, c := range s.codes {
		if !now.Before(c.ExpiresAt) {
			delete(s.codes, h)
			n++
		}
	}
	n += s.dropGrantsLocked(func(g store.Grant) bool {
		if !now.Before(g.ExpiresAt) {
			return true
		}
		_, codeLive := s.codes[string(g.CodeHash)]
		return g.LastUsedAt.IsZero() && !codeLive
	})
	for h, rt := range s.refresh {
		if !now.Before(rt.ExpiresAt) {
			delete(s.refresh, h)
			n++
		}
	}
	for h, se := range s.sessions {
		if !now.Before(se.ExpiresAt) {
			delete(s.sessions, h)
			n++
		}
	}
	for h, t := range s.iats {
		if !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt) {
			delete(s.iats, h)
			n++
		}
	}
	for jti, exp := range s.revokedJTIs {
		if !now.Before(exp) {
			delete(s.revokedJTIs, jti)
			n++
		}
	}
	for k, c := range s.counters {
		if !now.Before(c.ExpiresAt) {
			delete(s.counters, k)
			n++
		}
	}
	for k, exp := range s.assertions {
		if !now.Before(exp) {
			delete(s.assertions, k)
			n++
		}
	}
	return n, nil
}

// ---- Copies and normalisation ----

// norm normalises a timestamp as a timestamptz column would keep it: UTC,
// microsecond precision (house rule 5). The zero time stays zero.
func norm(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}

// slices.Clone and bytes.Clone keep nil as nil and empty as empty, and never
// share the backing array.

func cloneClient(c store.Client) store.Client {
	c.SecretHash, c.RegistrationTokenHash = bytes.Clone(c.SecretHash), bytes.Clone(c.RegistrationTokenHash)
	c.SecretExpiresAt, c.CreatedAt, c.UpdatedAt, c.UsedAt = norm(c.SecretExpiresAt), norm(c.CreatedAt), norm(c.UpdatedAt), norm(c.UsedAt)
	c.DocumentExpiresAt = norm(c.DocumentExpiresAt)
	m := &c.Metadata
	m.RedirectURIs, m.GrantTypes, m.ResponseTypes = slices.Clone(m.RedirectURIs), slices.Clone(m.GrantTypes), slices.Clone(m.ResponseTypes)
	m.Scopes, m.Resources, m.Contacts = slices.Clone(m.Scopes), slices.Clone(m.Resources), slices.Clone(m.Contacts)
	m.PostLogoutRedirectURIs = slices.Clone(m.PostLogoutRedirectURIs)
	m.JWKS = bytes.Clone(m.JWKS)
	return c
}

func cloneGrant(g store.Grant) store.Grant {
	g.Scopes, g.Resources, g.CodeHash = slices.Clone(g.Scopes), slices.Clone(g.Resources), bytes.Clone(g.CodeHash)
	g.CreatedAt, g.ExpiresAt, g.LastUsedAt, g.RevokedAt = norm(g.CreatedAt), norm(g.ExpiresAt), norm(g.LastUsedAt), norm(g.RevokedAt)
	g.AuthTime = norm(g.AuthTime)
	return g
}

func cloneCode(c store.AuthCode) store.AuthCode {
	c.Hash, c.Scopes, c.Resources = bytes.Clone(c.Hash), slices.Clone(c.Scopes), slices.Clone(c.Resources)
	c.CreatedAt, c.ExpiresAt, c.AuthTime = norm(c.CreatedAt), norm(c.ExpiresAt), norm(c.AuthTime)
	return c
}

func cloneRefresh(r store.RefreshToken) store.RefreshToken {
	r.Hash = bytes.Clone(r.Hash)
	r.CreatedAt, r.ExpiresAt, r.RotatedAt = norm(r.CreatedAt), norm(r.ExpiresAt), norm(r.RotatedAt)
	return r
}

func cloneConsent(c store.Consent) store.Consent {
	c.Scopes, c.Resources, c.UpdatedAt = slices.Clone(c.Scopes), slices.Clone(c.Resources), norm(c.UpdatedAt)
	return c
}

func cloneKey(k store.SigningKey) store.SigningKey {
	k.Purpose = k.KeyPurpose()
	k.PublicJWK, k.EncryptedPrivateKey = bytes.Clone(k.PublicJWK), bytes.Clone(k.EncryptedPrivateKey)
	k.CreatedAt, k.ActivatesAt, k.RetiredAt = norm(k.CreatedAt), norm(k.Activation()), norm(k.RetiredAt)
	return k
}
