package storetest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/store"
)

// Run runs the conformance suite against the stores newStore makes.
//
// newStore must return a fresh, empty store that no other call shares (the
// postgres store gives each call a schema of its own) and register any
// cleanup with t.Cleanup. Every subtest calls it once and runs with
// t.Parallel, so a failure names the behaviour that broke.
//
// Times: the suite passes every timestamp, and every now, in UTC at
// microsecond precision, because that is what a PostgreSQL timestamptz keeps.
// Implementations normalise whatever they are given to UTC microseconds at
// their boundary (house rule 5); the TimeNormalisation tests hand them values
// with nanoseconds and a non-UTC location and expect UTC microseconds back.
// Instants are compared with time.Time.Equal, never ==.
//
// Slices: a nil slice and an empty one are treated as equal everywhere, and
// JSON documents (ClientMetadata.JWKS, SigningKey.PublicJWK) are compared as
// JSON values, since a store may keep them as jsonb and reformat them.
//
// The NextRefreshFunc the suite passes to RotateRefreshToken never calls the
// store; implementations may hold a lock or a transaction while it runs.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	groups := []struct {
		name string
		run  func(*testing.T, factory)
	}{
		{"NotFound", testNotFound},
		{"Clients", testClients},
		{"Users", testUsers},
		{"AuthCodes", testAuthCodes},
		{"RedemptionEvents", testRedemptionEvents},
		{"Grants", testGrants},
		{"RevokeUserGrant", testRevokeUserGrant},
		{"RefreshTokens", testRefreshTokens},
		{"Concurrency", testConcurrency},
		{"Cascades", testCascades},
		{"AccessTokenRevocation", testAccessTokenRevocation},
		{"AccessTokenStatus", testAccessTokenStatus},
		{"ClientAssertions", testClientAssertions},
		{"Consents", testConsents},
		{"Counters", testCounters},
		{"MetadataDocumentClients", testMetadataDocumentClients},
		{"SigningKeys", testSigningKeys},
		{"FirstSigningKey", testFirstSigningKey},
		{"ResealSigningKey", testResealSigningKey},
		{"SigningKeyPurposes", testSigningKeyPurposes},
		{"FirstIDTokenKey", testFirstIDTokenKey},
		{"Sessions", testSessions},
		{"InitialAccessTokens", testInitialAccessTokens},
		{"DeleteExpired", testDeleteExpired},
		{"SweepKeepsEvidence", testSweepKeepsEvidence},
		{"StaleClients", testStaleClients},
		{"TimeNormalisation", testTimeNormalisation},
		{"NoAliasing", testNoAliasing},
		{"Audit", testAudit},
		{"CountLive", testCountLive},
		{"OIDC", testOIDC},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			g.run(t, newStore)
		})
	}
}

type factory = func(t *testing.T) store.Store

// base is the suite's fixed "now": UTC, whole microseconds, and far enough
// in the future that no real clock can make a fixture look expired.
var base = time.Date(2030, time.January, 2, 3, 4, 5, 123456000, time.UTC)

// at returns base+d.
func at(d time.Duration) time.Time { return base.Add(d) }

// Fixture lifetimes, relative to base.
const (
	codeTTL  = time.Minute      // auth code: base .. base+1m
	grantTTL = 24 * time.Hour   // grant: base .. base+24h
	redeemAt = time.Second      // codes made by env.grant are redeemed at base+1s
	idleTTL  = 12 * time.Hour   // refresh tokens made by env.refresh: base+1s .. base+12h1s
	grace    = 30 * time.Second // the grace window most rotation tests use
)

// randomHash is a 32-byte digest, the shape every stored secret has.
func randomHash() []byte {
	sum := sha256.Sum256([]byte(rand.Text()))
	return sum[:]
}

// randomID is a lower-case identifier, so ordering never depends on collation.
func randomID(prefix string) string {
	return prefix + "-" + strings.ToLower(rand.Text()[:12])
}

// env is one subtest's store with fixture helpers that fail the test on error.
type env struct {
	t   *testing.T
	ctx context.Context
	s   store.Store
}

func newEnv(t *testing.T, newStore factory) *env {
	t.Helper()
	return &env{t: t, ctx: t.Context(), s: newStore(t)}
}

func (e *env) must(err error, what string) {
	e.t.Helper()
	if err != nil {
		e.t.Fatalf("%s: %v", what, err)
	}
}

// sampleClient is a confidential client with every metadata field set.
func sampleClient(id string, created time.Time) store.Client {
	return store.Client{
		ID:                    id,
		Trust:                 store.TrustRegistered,
		SecretHash:            randomHash(),
		SecretExpiresAt:       created.Add(90 * 24 * time.Hour),
		RegistrationTokenHash: randomHash(),
		Metadata: store.ClientMetadata{
			Name:                    "Example App " + id,
			RedirectURIs:            []string{"https://app.example.com/cb", "http://127.0.0.1/cb"},
			TokenEndpointAuthMethod: oauth.AuthPrivateKeyJWT,
			GrantTypes:              []string{oauth.GrantAuthorizationCode, oauth.GrantRefreshToken},
			ResponseTypes:           []string{"code"},
			ApplicationType:         "web",
			Scopes:                  []string{"openid", "read", "write"},
			Resources:               []string{"https://api.example.com/", "https://files.example.com/"},
			Introspect:              true,
			ClientURI:               "https://app.example.com/",
			LogoURI:                 "https://app.example.com/logo.png",
			TOSURI:                  "https://app.example.com/tos",
			PolicyURI:               "https://app.example.com/privacy",
			Contacts:                []string{"ops@example.com", "dev@example.com"},
			SoftwareID:              "4NRB1-0XZABZI9E6-5SM3R",
			SoftwareVersion:         "2.1.0",
			// Whitespace and key order on purpose: the value must survive
			// as JSON, not necessarily as bytes.
			JWKS: json.RawMessage(`{"keys": [ {"kty":"EC","crv":"P-256","kid":"k1",` +
				`"x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"} ] }`),
		},
		CreatedAt: created,
		UpdatedAt: created,
		UsedAt:    created.Add(time.Minute),
	}
}

// publicClient authenticates with "none": no secret, no registration token.
func publicClient(id string, created time.Time) store.Client {
	return store.Client{
		ID:    id,
		Trust: store.TrustAdmin,
		Metadata: store.ClientMetadata{
			RedirectURIs:            []string{"http://127.0.0.1/cb"},
			TokenEndpointAuthMethod: oauth.AuthNone,
			GrantTypes:              []string{},
			Scopes:                  nil,
		},
		CreatedAt: created,
		UpdatedAt: created,
	}
}

func (e *env) client(id string) store.Client {
	e.t.Helper()
	c := sampleClient(id, base)
	e.must(e.s.CreateClient(e.ctx, c), "CreateClient "+id)
	return c
}

func sampleUser(id, username string) store.User {
	return store.User{
		ID:           id,
		Username:     username,
		PasswordHash: "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$" + id,
		CreatedAt:    base,
	}
}

func (e *env) user(id string) store.User {
	e.t.Helper()
	u := sampleUser(id, "name-"+id)
	e.must(e.s.CreateUser(e.ctx, u), "CreateUser "+id)
	return u
}

// grantOpt adjusts a code and its grant before they are stored.
type grantOpt func(*store.AuthCode, *store.Grant)

// grantCreatedAt moves the code and the grant to start at t, keeping the
// default lifetimes.
func grantCreatedAt(t time.Time) grantOpt {
	return func(c *store.AuthCode, g *store.Grant) {
		c.CreatedAt, c.ExpiresAt = t, t.Add(codeTTL)
		g.CreatedAt, g.ExpiresAt = t, t.Add(grantTTL)
	}
}

func grantExpiresAt(t time.Time) grantOpt {
	return func(_ *store.AuthCode, g *store.Grant) { g.ExpiresAt = t }
}

func codeExpiresAt(t time.Time) grantOpt {
	return func(c *store.AuthCode, _ *store.Grant) { c.ExpiresAt = t }
}

// code stores an authorization code with the grant it will start, both
// created at base unless opts say otherwise.
func (e *env) code(clientID, userID string, opts ...grantOpt) (store.AuthCode, store.Grant) {
	e.t.Helper()
	id, h := randomID("grant"), randomHash()
	g := store.Grant{
		ID: id, ClientID: clientID, UserID: userID,
		Scopes:    []string{"openid", "read"},
		Resources: []string{"https://api.example.com/"},
		CodeHash:  slices.Clone(h),
		CreatedAt: base,
		ExpiresAt: at(grantTTL),
	}
	c := store.AuthCode{
		Hash: h, ClientID: clientID, UserID: userID, GrantID: id,
		RedirectURI:   "https://app.example.com/cb",
		CodeChallenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
		Scopes:        []string{"openid", "read"},
		Resources:     []string{"https://api.example.com/"},
		CreatedAt:     base,
		ExpiresAt:     at(codeTTL),
	}
	for _, o := range opts {
		o(&c, &g)
	}
	e.must(e.s.CreateAuthCode(e.ctx, c, g), "CreateAuthCode")
	return c, g
}

// grant is a code redeemed redeemAt after its grant's creation: a grant that
// ListUserGrants shows and refresh tokens can belong to.
func (e *env) grant(clientID, userID string, opts ...grantOpt) store.Grant {
	e.t.Helper()
	c, g := e.code(clientID, userID, opts...)
	now := g.CreatedAt.Add(redeemAt)
	_, err := e.s.ConsumeAuthCode(e.ctx, c.Hash, now, nil)
	e.must(err, "ConsumeAuthCode")
	g.LastUsedAt = now
	return g
}

// grantRT is e.grant with the grant's first refresh token, stored the one
// way production stores it: by ConsumeAuthCode's redeem, in the same
// transaction as the code. It is idle-limited to idleTTL after redemption.
func (e *env) grantRT(clientID, userID string, opts ...grantOpt) (store.Grant, store.RefreshToken) {
	e.t.Helper()
	return e.grantRTUntil(clientID, userID, time.Time{}, opts...)
}

// grantRTUntil is grantRT with the refresh token's idle expiry given
// (zero: the default).
func (e *env) grantRTUntil(clientID, userID string, expires time.Time, opts ...grantOpt) (store.Grant, store.RefreshToken) {
	e.t.Helper()
	c, g := e.code(clientID, userID, opts...)
	return e.redeemRT(c, g, expires)
}

// redeemRT redeems c redeemAt after its grant's creation, storing the
// grant's first refresh token with the given idle expiry (zero: the
// default). It returns the grant as stored and the token.
func (e *env) redeemRT(c store.AuthCode, g store.Grant, expires time.Time) (store.Grant, store.RefreshToken) {
	e.t.Helper()
	now := g.CreatedAt.Add(redeemAt)
	if expires.IsZero() {
		expires = minTime(now.Add(idleTTL), g.ExpiresAt)
	}
	rt := store.RefreshToken{
		ID: randomID("rt"), Hash: randomHash(), GrantID: g.ID, ClientID: g.ClientID,
		CreatedAt: now, ExpiresAt: expires,
	}
	_, err := e.s.ConsumeAuthCode(e.ctx, c.Hash, now, func(store.AuthCode) (store.Redemption, error) {
		out := rt
		return store.Redemption{Refresh: &out}, nil
	})
	e.must(err, "ConsumeAuthCode with a refresh token")
	g.LastUsedAt = now
	return g, rt
}

func (e *env) getGrant(id string) store.Grant {
	e.t.Helper()
	g, err := e.s.GetGrant(e.ctx, id)
	e.must(err, "GetGrant "+id)
	return g
}

func (e *env) getRefresh(hash []byte) store.RefreshToken {
	e.t.Helper()
	rt, _, err := e.s.GetRefreshToken(e.ctx, hash)
	e.must(err, "GetRefreshToken")
	return rt
}

// rotate rotates hash at now with a fresh successor and fails the test on error.
func (e *env) rotate(hash []byte, now time.Time, grace time.Duration) store.Rotation {
	e.t.Helper()
	rot, err := e.s.RotateRefreshToken(e.ctx, hash, now, grace, successor(now))
	e.must(err, "RotateRefreshToken")
	return rot
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// successor is the NextRefreshFunc a token endpoint would pass: a fresh
// token of the same grant, linked to old, idle-limited by the grant's
// lifetime. Its hash is derived from old's, as the token endpoint derives
// the successor's secret from the presented one, so every call for one
// token proposes the same successor (one successor per token); its ID is
// fresh each call. It is safe for concurrent use.
func successor(now time.Time) store.NextRefreshFunc {
	return func(old store.RefreshToken, g store.Grant) (store.RefreshToken, error) {
		return store.RefreshToken{
			ID: randomID("rt"), Hash: successorHash(old.Hash), GrantID: g.ID, ClientID: old.ClientID, ParentID: old.ID,
			CreatedAt: now,
			ExpiresAt: minTime(now.Add(idleTTL), g.ExpiresAt),
		}, nil
	}
}

// successorHash stands for HMAC(server key, presented secret).
func successorHash(h []byte) []byte {
	sum := sha256.Sum256(append([]byte("storetest successor\x00"), h...))
	return sum[:]
}

// recorder wraps a NextRefreshFunc and remembers its last call.
type recorder struct {
	calls int
	old   store.RefreshToken
	grant store.Grant
	made  store.RefreshToken
}

func (r *recorder) next(f store.NextRefreshFunc) store.NextRefreshFunc {
	return func(old store.RefreshToken, g store.Grant) (store.RefreshToken, error) {
		r.calls++
		r.old, r.grant = old, g
		rt, err := f(old, g)
		r.made = rt
		return rt, err
	}
}

// wantErr fails the test unless err matches want: nil means success, and a
// sentinel is matched with errors.Is, so implementations may wrap.
func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Fatalf("%s: unexpected error %v", what, err)
	case want != nil && !errors.Is(err, want):
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

// wantOneOf fails the test unless err matches one of the sentinels.
func wantOneOf(t *testing.T, what string, err error, want ...error) {
	t.Helper()
	for _, w := range want {
		if errors.Is(err, w) {
			return
		}
	}
	t.Fatalf("%s: got error %v, want one of %v", what, err, want)
}

// equal compares two values after canonicalising both, so nil and empty
// slices, time locations and JSON formatting do not count as differences.
func equal[T any](t *testing.T, what string, got, want T, canon func(T) T) {
	t.Helper()
	if g, w := canon(got), canon(want); !reflect.DeepEqual(g, w) {
		t.Errorf("%s differs:\n got  %+v\n want %+v", what, g, w)
	}
}

func equalTime(t *testing.T, what string, got, want time.Time) {
	t.Helper()
	if !got.Equal(want) {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

// Canonical forms. time.Time.UTC drops the monotonic reading and the
// location, so two instants that are Equal become DeepEqual.

func cTime(t time.Time) time.Time { return t.UTC() }

func cStrings(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

func cBytes(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// cJSON re-encodes a JSON document with sorted keys and no insignificant
// whitespace; anything that is not JSON is compared as bytes.
func cJSON(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return b
	}
	out, err := json.Marshal(v)
	if err != nil {
		return b
	}
	return out
}

func canonClient(c store.Client) store.Client {
	c.SecretHash, c.RegistrationTokenHash = cBytes(c.SecretHash), cBytes(c.RegistrationTokenHash)
	c.SecretExpiresAt, c.CreatedAt, c.UpdatedAt, c.UsedAt = cTime(c.SecretExpiresAt), cTime(c.CreatedAt), cTime(c.UpdatedAt), cTime(c.UsedAt)
	c.DocumentExpiresAt = cTime(c.DocumentExpiresAt)
	m := &c.Metadata
	m.RedirectURIs, m.GrantTypes, m.ResponseTypes = cStrings(m.RedirectURIs), cStrings(m.GrantTypes), cStrings(m.ResponseTypes)
	m.Scopes, m.Resources, m.Contacts = cStrings(m.Scopes), cStrings(m.Resources), cStrings(m.Contacts)
	m.JWKS = cJSON(m.JWKS)
	return c
}

func canonClients(cs []store.Client) []store.Client {
	out := make([]store.Client, len(cs))
	for i, c := range cs {
		out[i] = canonClient(c)
	}
	return out
}

func canonUser(u store.User) store.User {
	u.CreatedAt = cTime(u.CreatedAt)
	return u
}

func canonGrant(g store.Grant) store.Grant {
	g.Scopes, g.Resources, g.CodeHash = cStrings(g.Scopes), cStrings(g.Resources), cBytes(g.CodeHash)
	g.CreatedAt, g.ExpiresAt, g.LastUsedAt, g.RevokedAt = cTime(g.CreatedAt), cTime(g.ExpiresAt), cTime(g.LastUsedAt), cTime(g.RevokedAt)
	g.AuthTime = cTime(g.AuthTime)
	return g
}

func canonCode(c store.AuthCode) store.AuthCode {
	c.Hash, c.Scopes, c.Resources = cBytes(c.Hash), cStrings(c.Scopes), cStrings(c.Resources)
	c.CreatedAt, c.ExpiresAt, c.AuthTime = cTime(c.CreatedAt), cTime(c.ExpiresAt), cTime(c.AuthTime)
	return c
}

func canonRefresh(r store.RefreshToken) store.RefreshToken {
	r.Hash = cBytes(r.Hash)
	r.CreatedAt, r.ExpiresAt, r.RotatedAt = cTime(r.CreatedAt), cTime(r.ExpiresAt), cTime(r.RotatedAt)
	return r
}

func canonConsent(c store.Consent) store.Consent {
	c.Scopes, c.Resources, c.UpdatedAt = cStrings(c.Scopes), cStrings(c.Resources), cTime(c.UpdatedAt)
	return c
}

func canonKey(k store.SigningKey) store.SigningKey {
	k.Purpose = k.KeyPurpose()
	k.PublicJWK, k.EncryptedPrivateKey = cJSON(k.PublicJWK), cBytes(k.EncryptedPrivateKey)
	k.CreatedAt, k.ActivatesAt, k.RetiredAt = cTime(k.CreatedAt), cTime(k.Activation()), cTime(k.RetiredAt)
	return k
}

func canonKeys(ks []store.SigningKey) []store.SigningKey {
	out := make([]store.SigningKey, len(ks))
	for i, k := range ks {
		out[i] = canonKey(k)
	}
	return out
}

func canonSession(s store.Session) store.Session {
	s.Hash, s.CreatedAt, s.ExpiresAt = cBytes(s.Hash), cTime(s.CreatedAt), cTime(s.ExpiresAt)
	return s
}

func canonIAT(t store.InitialAccessToken) store.InitialAccessToken {
	t.Hash, t.CreatedAt, t.ExpiresAt = cBytes(t.Hash), cTime(t.CreatedAt), cTime(t.ExpiresAt)
	t.AllowGrants, t.Scopes, t.Resources = cStrings(t.AllowGrants), cStrings(t.Scopes), cStrings(t.Resources)
	return t
}

// grantIDs lists the IDs of gs in order.
func grantIDs(gs []store.Grant) []string {
	ids := make([]string, len(gs))
	for i, g := range gs {
		ids[i] = g.ID
	}
	return ids
}
