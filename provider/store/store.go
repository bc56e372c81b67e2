package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/authzd/authz/provider/oauth"
)

// Sentinel errors. Implementations return these (possibly wrapped) so callers
// can decide with errors.Is; anything else is an operational failure.
var (
	// ErrNotFound: no such record (or it was deleted).
	ErrNotFound = errors.New("store: not found")
	// ErrAlreadyExists: a record with the same key exists.
	ErrAlreadyExists = errors.New("store: already exists")
	// ErrExpired: the record exists but its expiry instant has been reached.
	// A record is valid while now < ExpiresAt; at now == ExpiresAt it is expired.
	ErrExpired = errors.New("store: expired")
	// ErrGrantRevoked: the grant the record belongs to is revoked or past its
	// absolute lifetime.
	ErrGrantRevoked = errors.New("store: grant revoked")
	// ErrCodeReused: an authorization code was presented after it had been
	// redeemed, while tokens of the grant it started were live. That grant
	// has now been revoked (RFC 6749 §4.1.2).
	ErrCodeReused = errors.New("store: authorization code reused")
	// ErrCodeSpent: an authorization code was presented after it had been
	// consumed, and no token of the grant it started is live: the grant
	// was already revoked (by a redemption that failed its checks, a
	// replay before, or the user), is past its lifetime, or never issued a
	// token. Nothing was revoked or written.
	ErrCodeSpent = errors.New("store: authorization code already spent")
	// ErrRefreshReused: a rotated refresh token was presented after the grace
	// window. The whole grant has been revoked (RFC 9700 §4.14.2).
	ErrRefreshReused = errors.New("store: refresh token reused")
	// ErrUnavailable: the store could not be reached or failed transiently.
	// Callers answer 503 temporarily_unavailable, never invalid_grant.
	ErrUnavailable = errors.New("store: unavailable")
)

// Trust levels: how a client came to exist. Only an administrator's
// clients are trusted beyond what RFC 7591 lets anyone claim (issue 11).
const (
	// TrustAdmin: created by an administrator (`authz client create`).
	TrustAdmin = "admin"
	// TrustRegistered: created through dynamic registration (RFC 7591) by
	// anyone who could reach the endpoint.
	TrustRegistered = "registered"
	// TrustMetadataDocument: a client ID metadata document (an https URL
	// as client_id), known only by what that document says.
	TrustMetadataDocument = "metadata-document"
)

// Client is a registered OAuth client.
type Client struct {
	ID string
	// Trust is one of the Trust* constants. The provider treats anything
	// other than TrustAdmin, the empty string included, as untrusted.
	Trust string
	// SecretHash is SHA-256 of the client secret; nil for public clients.
	SecretHash []byte
	// SecretExpiresAt is when the secret stops working; zero means never.
	SecretExpiresAt time.Time
	// RegistrationTokenHash is SHA-256 of the RFC 7592 registration access
	// token; nil for clients not managed through the registration endpoint.
	RegistrationTokenHash []byte
	Metadata              ClientMetadata
	// DocumentExpiresAt is, for a TrustMetadataDocument client, when its
	// cached metadata document must be fetched again; zero otherwise.
	DocumentExpiresAt time.Time
	CreatedAt         time.Time
	UpdatedAt         time.Time
	// UsedAt is when the client last completed an authorization or used
	// a grant, to within a day (MarkClientUsed); zero until the first
	// completed authorization. The janitor removes self-registered and
	// metadata-document clients by it (DeleteStaleClients).
	UsedAt time.Time
}

// DocumentIdentityChanged reports whether a client metadata document
// changed what a user's consent relied on: where codes go (redirect URIs)
// or the keys that authenticate the client. Consent given to the old
// document must then be asked for again. Both stores call this one rule.
func DocumentIdentityChanged(old, cur ClientMetadata) bool {
	return !slices.Equal(old.RedirectURIs, cur.RedirectURIs) || old.JWKSURI != cur.JWKSURI ||
		!jsonEqual(old.JWKS, cur.JWKS) || old.TokenEndpointAuthMethod != cur.TokenEndpointAuthMethod
}

func jsonEqual(a, b json.RawMessage) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return bytes.Equal(a, b)
	}
	return reflect.DeepEqual(x, y)
}

// Public reports whether the client authenticates with "none".
func (c Client) Public() bool { return c.Metadata.TokenEndpointAuthMethod == oauth.AuthNone }

// ClientMetadata is what a client declares about itself (RFC 7591 §2) plus
// the administrator's allowances. It is stored as one document; the JSON names
// follow RFC 7591 where one exists.
type ClientMetadata struct {
	Name                    string   `json:"client_name,omitempty"`
	RedirectURIs            []string `json:"redirect_uris"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
	GrantTypes              []string `json:"grant_types,omitempty"`
	ResponseTypes           []string `json:"response_types,omitempty"`
	ApplicationType         string   `json:"application_type,omitempty"`
	// Scopes the client may request; also its default when a request names
	// none. Empty: any scope the server offers, and no default.
	Scopes []string `json:"scopes,omitempty"`
	// Resources (RFC 8707) the client may request tokens for. Empty: any
	// resource the server is configured with.
	Resources []string `json:"resources,omitempty"`
	// Introspect marks a resource server an administrator trusts to learn
	// about access tokens whose audience includes one of its Resources
	// (RFC 7662 §4). Without it a client may introspect only its own tokens.
	Introspect      bool            `json:"introspect,omitempty"`
	ClientURI       string          `json:"client_uri,omitempty"`
	LogoURI         string          `json:"logo_uri,omitempty"`
	TOSURI          string          `json:"tos_uri,omitempty"`
	PolicyURI       string          `json:"policy_uri,omitempty"`
	Contacts        []string        `json:"contacts,omitempty"`
	SoftwareID      string          `json:"software_id,omitempty"`
	SoftwareVersion string          `json:"software_version,omitempty"`
	JWKSURI         string          `json:"jwks_uri,omitempty"`
	JWKS            json.RawMessage `json:"jwks,omitempty"`
	// IDTokenSignedResponseAlg is the client's ID-token algorithm (OIDC
	// Registration §2); empty means RS256.
	IDTokenSignedResponseAlg string `json:"id_token_signed_response_alg,omitempty"`
	// PostLogoutRedirectURIs are where RP-initiated logout may return
	// (OpenID Connect RP-Initiated Logout §3.1), matched exactly.
	PostLogoutRedirectURIs []string `json:"post_logout_redirect_uris,omitempty"`
}

// User is a built-in account that can log in to the authorization server.
type User struct {
	ID       string
	Username string
	// PasswordHash is an encoded argon2id hash (never a plaintext password).
	// Empty for a user created through an upstream provider: no password
	// can match it.
	PasswordHash string
	// Name, Email and EmailVerified are the OpenID Connect standard claims
	// of the profile and email scopes (OIDC Core §5.1). The CLI sets them;
	// upstream sign-in copies them from the provider.
	Name          string
	Email         string
	EmailVerified bool
	// Provider names the upstream identity provider the user was created
	// through; empty for a local account.
	Provider  string
	CreatedAt time.Time
}

// Grant is one completed authorization of one client by one user on one
// device. A user may hold many grants for the same client; refresh tokens and
// access tokens belong to exactly one grant, and revoking the grant ends them.
type Grant struct {
	ID        string
	ClientID  string
	UserID    string
	Scopes    []string
	Resources []string
	// CodeHash is the SHA-256 of the authorization code that started the
	// grant, kept so that a replayed code can revoke it.
	CodeHash  []byte
	CreatedAt time.Time
	// ExpiresAt is the absolute lifetime: no token of the grant outlives it.
	ExpiresAt time.Time
	// LastUsedAt is zero until the grant's code is redeemed, then moves with
	// every refresh. Grants that were never redeemed are not listed.
	LastUsedAt time.Time
	// RevokedAt is zero while the grant is live.
	RevokedAt time.Time
	// AuthTime is when the user authenticated for this grant; an ID token
	// from a refresh repeats it (OIDC Core §12.2). Zero for grants made
	// before it was recorded.
	AuthTime time.Time
}

// Active reports whether tokens of the grant may be used at now.
func (g Grant) Active(now time.Time) bool {
	return g.RevokedAt.IsZero() && now.Before(g.ExpiresAt)
}

// AuthCode is an authorization code, stored by hash only.
type AuthCode struct {
	Hash          []byte
	ClientID      string
	UserID        string
	GrantID       string
	RedirectURI   string
	CodeChallenge string // S256 only
	Scopes        []string
	Resources     []string
	// Nonce is the OpenID Connect nonce sent at authorize, echoed in the ID
	// token of the code exchange only (OIDC Core §3.1.2.1, §12.2).
	Nonce string
	// AuthTime is when the user authenticated (OIDC Core §2 auth_time).
	AuthTime  time.Time
	CreatedAt time.Time
	ExpiresAt time.Time
}

// RefreshToken is one link of a grant's rotation chain, stored by hash only.
type RefreshToken struct {
	ID       string
	Hash     []byte
	GrantID  string
	ClientID string
	// ParentID is the token this one was rotated from; empty for the first.
	ParentID  string
	CreatedAt time.Time
	// ExpiresAt is the idle lifetime (never later than the grant's ExpiresAt).
	ExpiresAt time.Time
	// RotatedAt is zero until the token is first exchanged.
	RotatedAt time.Time
}

// Rotation is the outcome of a successful RotateRefreshToken.
type Rotation struct {
	Old   RefreshToken // as it was before this call
	Grant Grant
	New   RefreshToken
	// WithinGrace is true when Old had already been rotated and was presented
	// again inside the grace window: a concurrent refresh that also wins.
	WithinGrace bool
}

// Consent remembers what a user allowed a client, so the same request later
// skips the consent page.
type Consent struct {
	UserID    string
	ClientID  string
	Scopes    []string
	Resources []string
	UpdatedAt time.Time
}

// Counter is a fixed-window counter shared by every replica (failed logins,
// registrations per client IP). It counts from its first hit until
// ExpiresAt; the next hit after that starts a new window at one.
type Counter struct {
	Key       string
	Count     int
	ExpiresAt time.Time
}

// SigningKey is a key pair for access tokens or ID tokens. The private key
// is encrypted at rest by the caller; the store never sees it in the clear.
type SigningKey struct {
	ID        string // the JWK "kid"
	Algorithm string // "ES256", "EdDSA", or "RS256" for ID tokens
	// Purpose is what the key signs, and the set a rotation retires
	// within: PurposeAccessToken (empty means that), or IDTokenPurpose(alg).
	Purpose             string
	PublicJWK           []byte // JSON Web Key of the public key
	EncryptedPrivateKey []byte
	// CreatedAt is when the key was added; it is published from then on.
	CreatedAt time.Time
	// ActivatesAt is when the key starts signing. Until then it is only
	// published, so every replica has loaded it before any token signed
	// with it exists. Zero means CreatedAt.
	ActivatesAt time.Time
	// RetiredAt is zero until a newer key is added, then that key's
	// ActivatesAt (possibly still ahead): the key signs until then, and
	// stays published until the tokens it signed have expired.
	RetiredAt time.Time
}

// PurposeAccessToken is the purpose of the access-token keys: one set,
// whatever their algorithm (AUTHZ_SIGNING_ALG may change between
// rotations).
const PurposeAccessToken = "access_token"

const idTokenPurposePrefix = "id_token:"

// IDTokenPurpose is the purpose of the keys that sign ID tokens with alg:
// one set per algorithm, since each client chooses its ID tokens'
// algorithm (OpenID Connect Registration §2) and each needs a current key.
func IDTokenPurpose(alg string) string { return idTokenPurposePrefix + alg }

// IDTokenAlgorithm returns the algorithm of an ID-token purpose, and false
// for any other purpose.
func IDTokenAlgorithm(purpose string) (string, bool) {
	return strings.CutPrefix(purpose, idTokenPurposePrefix)
}

// KeyPurpose returns k.Purpose, or PurposeAccessToken when it is empty.
func (k SigningKey) KeyPurpose() string {
	if k.Purpose == "" {
		return PurposeAccessToken
	}
	return k.Purpose
}

// Activation returns when k starts signing: ActivatesAt, or CreatedAt when
// that is zero.
func (k SigningKey) Activation() time.Time {
	if k.ActivatesAt.IsZero() {
		return k.CreatedAt
	}
	return k.ActivatesAt
}

// Session is a browser login session at the authorization server.
type Session struct {
	Hash      []byte // SHA-256 of the cookie value
	UserID    string
	CreatedAt time.Time
	ExpiresAt time.Time
}

// ClientAssertion is a private_key_jwt assertion that has been used (RFC 7523
// §3 item 7: a jti is accepted once), remembered until it can no longer be
// accepted anyway.
type ClientAssertion struct {
	ClientID string
	// JTIHash is SHA-256 of the assertion's jti. The jti is whatever the
	// client chose; a digest keeps what is stored small and plain bytes.
	JTIHash []byte
	// ExpiresAt is when the assertion stops being acceptable (its exp plus
	// the allowed clock skew); the record is kept until then.
	ExpiresAt time.Time
}

// InitialAccessToken authorizes dynamic client registration under the
// "token" registration policy (RFC 7591 §3).
type InitialAccessToken struct {
	Hash      []byte
	CreatedAt time.Time
	// ExpiresAt zero means it never expires.
	ExpiresAt time.Time
	// The administrator's policy for clients registered with the token:
	// AllowGrants are grant types a self-registered client may not
	// otherwise have (client_credentials); Scopes and Resources become the
	// client's allowances. Empty: nothing beyond an anonymous registration.
	AllowGrants []string
	Scopes      []string
	Resources   []string
}

// RedeemFunc checks a consumed authorization code and returns what to store
// with it. It must not call the store.
type RedeemFunc func(code AuthCode) (Redemption, error)

// Redemption is what ConsumeAuthCode stores with a good code, in the
// transaction that spends it: either all of it exists and the code is
// spent, or none of it and the code is still redeemable.
type Redemption struct {
	// Refresh is the grant's first refresh token, or nil for none.
	Refresh *RefreshToken
	// Events are the audit events of the redemption (grant.created). They
	// are recorded with it so that an event exists if and only if the grant
	// was created, and at no extra round trip or commit (issue 13); their
	// IDs are assigned by the store, as AppendAuditEvent's.
	Events []AuditEvent
}

// NextRefreshFunc validates the presented refresh token and its grant, and
// returns the successor to store. It runs inside RotateRefreshToken's
// transaction, after the reuse check and before anything is written: an
// error from it aborts the rotation with nothing written, and is returned
// as is. It must derive the successor's hash deterministically from the
// presented token (one successor per token, see RotateRefreshToken) and
// must not call the store.
type NextRefreshFunc func(old RefreshToken, g Grant) (RefreshToken, error)

// EditClientFunc is UpdateClient's and UpdateRegisteredClient's change:
// it sets c's SecretHash, Metadata and UpdatedAt (changes to any other
// field are ignored), or returns an error to write nothing. It runs inside
// the store's operation, with the client locked, so it must not call the
// store.
type EditClientFunc func(c *Client) error

// Store is the persistence contract. Every implementation must pass
// storetest.Run.
type Store interface {
	// Ping reports whether the store is reachable.
	Ping(ctx context.Context) error

	// Clients.
	CreateClient(ctx context.Context, c Client) error // ErrAlreadyExists
	GetClient(ctx context.Context, id string) (Client, error)
	ListClients(ctx context.Context) ([]Client, error) // ordered by CreatedAt, then ID
	// UpdateClient is the administrator's read-modify-write of client id,
	// one operation holding the client against concurrent changes: it calls
	// edit on the client as stored and writes back only what edit may
	// change, SecretHash, Metadata and UpdatedAt. The registration token
	// hash is never written, so an RFC 7592 update racing the administrator
	// is neither undone nor its spent token revived. It returns the client
	// as stored; ErrNotFound if it does not exist; edit's error unchanged,
	// with nothing written.
	UpdateClient(ctx context.Context, id string, edit EditClientFunc) (Client, error)
	// UpdateRegisteredClient is UpdateClient for an RFC 7592 §2.2 update,
	// which spends the registration access token that authorised it: in
	// one operation holding the client, it checks (in constant time) that
	// the client's registration token hash is still presented, calls edit
	// on the client as stored, and writes SecretHash, Metadata and UpdatedAt
	// from it with next as the new registration token hash. The edit sees
	// what an administrator's update committed before it, so the client's
	// update never writes back an allowance read before an administrator
	// removed it. Of updates racing with one token exactly one wins; the
	// others, like an unknown client or a wrong or empty presented hash,
	// get ErrNotFound without edit being called (house rules 3 and 11: no
	// read, check, write). It returns the client as stored; edit's error
	// unchanged, with nothing written and the token not spent.
	UpdateRegisteredClient(ctx context.Context, id string, presented, next []byte, edit EditClientFunc) (Client, error)
	// DeleteClient removes the client with its codes, grants, refresh tokens
	// and consents.
	DeleteClient(ctx context.Context, id string) error
	// DeleteRegisteredClient is DeleteClient for an RFC 7592 §2.3 delete:
	// it removes the client only while its registration token hash is still
	// presented, the hash of the token that authorised the delete, in one
	// operation. Of a delete and an update racing with one token exactly one
	// wins; a loser, like an unknown client, gets ErrNotFound.
	DeleteRegisteredClient(ctx context.Context, id string, presented []byte) error
	// SaveMetadataDocumentClient inserts or replaces c, a client whose
	// identity is its metadata document (c.Trust is TrustMetadataDocument),
	// keeping an existing row's CreatedAt so its grants keep their foreign
	// keys. When DocumentIdentityChanged(stored, c) every consent given to
	// the client is dropped in the same operation. A client with that ID
	// that is not a metadata-document client is never replaced:
	// ErrAlreadyExists.
	SaveMetadataDocumentClient(ctx context.Context, c Client) error
	// MarkClientUsed moves the client's UsedAt forward to now (never back).
	// ErrNotFound if it does not exist.
	MarkClientUsed(ctx context.Context, id string, now time.Time) error
	// DeleteStaleClients removes, in one operation, every client that
	// ClientStale says is stale: a self-registered or metadata-document
	// client (SweptTrusts) without a live grant at now (one neither
	// revoked nor past its lifetime) that either never completed an
	// authorization (zero UsedAt) and was created at or before
	// now-unusedTTL, or was last used at or before now-idleTTL; with them
	// go their codes, grants, tokens and consents, as DeleteClient. It returns the clients it removed, as they
	// were (so the caller can record each deletion).
	DeleteStaleClients(ctx context.Context, now time.Time, unusedTTL, idleTTL time.Duration) ([]Client, error)

	// Users.
	CreateUser(ctx context.Context, u User) error // ErrAlreadyExists on ID or Username
	GetUser(ctx context.Context, id string) (User, error)
	GetUserByUsername(ctx context.Context, username string) (User, error)
	ListUsers(ctx context.Context) ([]User, error) // ordered by Username
	SetUserPassword(ctx context.Context, id, passwordHash string) error
	// DeleteUser removes the user with their grants, tokens, consents and sessions.
	DeleteUser(ctx context.Context, id string) error

	// CreateAuthCode stores a code together with the (not yet redeemed) grant
	// it will start. They must pass CheckCodeGrant.
	CreateAuthCode(ctx context.Context, code AuthCode, grant Grant) error
	// ConsumeAuthCode is the single-use gate: it deletes the code and returns
	// it, marking its grant used at now. The outcome is DecideRedemption's,
	// taken with the grant and the code locked. A code already consumed
	// whose grant has live tokens (redeemed, not revoked, within its
	// lifetime) returns ErrCodeReused and revokes that grant; one whose
	// grant has none returns ErrCodeSpent and changes nothing. Either comes
	// with ReplayedCode of the grant (the code itself is gone), so the
	// caller can say which grant it revoked, or found dead; an expired code is deleted and
	// returns ErrExpired; a code whose grant was revoked returns
	// ErrGrantRevoked; an unknown code returns ErrNotFound.
	//
	// redeem (may be nil) runs inside the same transaction once the code is
	// known good. If it returns an error, the code stays spent, its grant is
	// revoked and the error is returned unchanged. Otherwise the Redemption
	// it returns (refresh token, audit events) is stored in that
	// transaction: either the code is spent and all of it exists, or none
	// of it, so a failure while storing it leaves the code redeemable and a
	// retry is not a replay. A lost commit acknowledgement is resolved by
	// the store: if the transaction committed, the call succeeds.
	ConsumeAuthCode(ctx context.Context, hash []byte, now time.Time, redeem RedeemFunc) (AuthCode, error)

	// Grants.
	GetGrant(ctx context.Context, id string) (Grant, error)
	// ListUserGrants returns the user's redeemed, live grants at now, newest first.
	ListUserGrants(ctx context.Context, userID string, now time.Time) ([]Grant, error)
	// RevokeGrant marks the grant revoked at now (idempotent); every refresh
	// token of it stops working. ErrNotFound if it does not exist.
	RevokeGrant(ctx context.Context, id string, now time.Time) error
	// RevokeUserGrant is "Revoke" on the connected-apps page, one
	// operation (house rule 11): if grant id belongs to userID it is
	// revoked at now (the first revocation instant is kept, as
	// RevokeGrant's) and userID's consent to the grant's client is
	// forgotten, so the next authorization asks again. It returns the
	// grant as revoked. A grant that does not exist or is another user's is
	// ErrNotFound, and nothing changes. Idempotent: revoking again changes
	// nothing and returns the grant with its first RevokedAt.
	RevokeUserGrant(ctx context.Context, userID, id string, now time.Time) (Grant, error)

	// GetRefreshToken returns a token and its grant, whatever their state.
	GetRefreshToken(ctx context.Context, hash []byte) (RefreshToken, Grant, error)
	// RotateRefreshToken exchanges a refresh token in one transaction,
	// deciding with store.DecideRotation once the grant and the token are
	// locked:
	//   - unknown → ErrNotFound; grant revoked or past its lifetime →
	//     ErrGrantRevoked; token past its idle lifetime → ErrExpired;
	//   - rotated grace or more ago → the grant is revoked, ErrRefreshReused
	//     (before next runs: a replay is reuse whatever else it asks for);
	//   - next(old, grant) runs; its error aborts with nothing written; what
	//     it returns must pass CheckSuccessor;
	//   - never rotated → it is marked rotated at now and the successor is
	//     stored (a win);
	//   - rotated less than grace ago → WithinGrace: one successor per
	//     token. next derives the successor deterministically from the
	//     presented token, so it proposes the same hash as at the first
	//     rotation; the store answers with the successor stored then
	//     (Rotation.New is that record) and stores the proposal only if no
	//     token has its hash. A stored token under that hash that is not
	//     old's successor fails SameSuccessor.
	// The grant's LastUsedAt moves to now on success when TouchDue says so
	// (at most once per LastUsedGranularity). Nothing is marked rotated
	// unless its successor is committed in the same transaction. A lost
	// commit acknowledgement is resolved by the store: if the transaction
	// committed, the call succeeds.
	RotateRefreshToken(ctx context.Context, hash []byte, now time.Time, grace time.Duration, next NextRefreshFunc) (Rotation, error)

	// Access-token revocation by JWT ID (RFC 7009), kept until the token's expiry.
	RevokeAccessToken(ctx context.Context, jti string, expiresAt time.Time) error // idempotent
	// AccessTokenStatus reads, as one operation (one round trip on
	// PostgreSQL), whether jti is revoked at now and the token's grant
	// grantID, or, when grantID is "", whether client clientID exists. A
	// missing grant or client is Found false, never ErrNotFound: any error
	// is a failure to answer, which callers must not take for "inactive".
	AccessTokenStatus(ctx context.Context, jti, grantID, clientID string, now time.Time) (AccessTokenStatus, error)

	// UseClientAssertion is the single-use gate for client assertions, one
	// atomic insert-if-absent: it records a and returns nil when no live
	// record with the same ClientID and JTIHash exists at now, and returns
	// ErrAlreadyExists, writing nothing, when one does. However many callers
	// race with one assertion, exactly one gets nil. A record is live while
	// now < ExpiresAt; an expired one counts as absent and is replaced.
	UseClientAssertion(ctx context.Context, a ClientAssertion, now time.Time) error

	// Consents.
	GetConsent(ctx context.Context, userID, clientID string) (Consent, error)
	// AddConsent adds c's scopes and resources to what the user already
	// allowed the client (a union, in one atomic step, so two consents given
	// at once both count) and sets UpdatedAt. ErrNotFound (wrapped) when the
	// user or client does not exist.
	AddConsent(ctx context.Context, c Consent) error
	// DeleteConsent forgets what the user allowed the client (idempotent).
	DeleteConsent(ctx context.Context, userID, clientID string) error

	// Counters (rate limits shared by replicas).
	// HitCounter adds one to the counter key in one atomic step and returns
	// it: a counter that does not exist or expired at now restarts at one
	// with ExpiresAt now+window.
	HitCounter(ctx context.Context, key string, window time.Duration, now time.Time) (Counter, error)
	// UnhitCounter takes one back from the live counter key at now, never
	// below zero; nothing when there is none or it has expired. A limit
	// that must not be overrun by concurrent requests counts each one with
	// HitCounter before the work and takes back those that did not count
	// (a sign-in that succeeded): the check and the count are one step.
	UnhitCounter(ctx context.Context, key string, now time.Time) error
	// GetCounter returns the live counter key at now; ErrNotFound when there
	// is none or it has expired.
	GetCounter(ctx context.Context, key string, now time.Time) (Counter, error)
	// DeleteCounters removes every counter whose key starts with prefix and
	// returns how many it removed.
	DeleteCounters(ctx context.Context, prefix string) (int64, error)

	// Signing keys (access tokens and ID tokens, told apart by Purpose).
	// RotateSigningKey stores k and retires every other key of k's purpose
	// at k.Activation(), unless it is retired earlier already: the
	// previous key signs until k starts to. Keys of other purposes are
	// untouched. Rotations are serialised with each other and with
	// CreateFirstSigningKey.
	RotateSigningKey(ctx context.Context, k SigningKey) error
	// CreateFirstSigningKey stores k only when there is no key of k's
	// purpose at all, atomically, and returns ErrAlreadyExists otherwise:
	// replicas starting at once on an empty database (or signing their
	// first ID token of an algorithm at once) end with one key, not several.
	CreateFirstSigningKey(ctx context.Context, k SigningKey) error
	// ListSigningKeys returns every key of every purpose, newest first.
	ListSigningKeys(ctx context.Context) ([]SigningKey, error)
	// DeleteSigningKeysRetiredBefore removes keys (of any purpose) retired
	// before t.
	DeleteSigningKeysRetiredBefore(ctx context.Context, t time.Time) error
	// ResealSigningKey replaces key id's EncryptedPrivateKey with sealed if,
	// and only if, it is still old (compare-and-swap): `authz keys
	// reencrypt` re-seals under a new encryption key, and two runs at once,
	// or a rotation or the janitor meanwhile, must not lose a key or undo
	// another's change. Nothing else about the key changes. It reports
	// whether it replaced it: false (and no error) when the key is gone or
	// its ciphertext is no longer old.
	ResealSigningKey(ctx context.Context, id string, old, sealed []byte) (bool, error)

	// Sessions.
	CreateSession(ctx context.Context, s Session) error
	// GetSessionUser returns the session under hash together with its
	// user, read at once: sign-in state is read on every authorization
	// request, and one read (a join on PostgreSQL) is one round trip
	// instead of two (issue 13). ErrNotFound when there is no such session
	// or its user is gone; ErrExpired when the session has expired at now.
	GetSessionUser(ctx context.Context, hash []byte, now time.Time) (Session, User, error)
	DeleteSession(ctx context.Context, hash []byte) error // idempotent

	// Upstream identities and OpenID Connect keys (oidc.go).
	OIDCStore

	// Initial access tokens for the "token" registration policy.
	CreateInitialAccessToken(ctx context.Context, t InitialAccessToken) error
	GetInitialAccessToken(ctx context.Context, hash []byte, now time.Time) (InitialAccessToken, error) // ErrNotFound, ErrExpired

	// DeleteExpired removes what can no longer be used at now: expired codes,
	// sessions, initial access tokens, revoked-JWT entries, counters, used
	// client assertions, refresh tokens past their idle lifetime, grants past
	// their absolute lifetime (with their tokens), and grants never redeemed
	// whose code is gone. It returns how many records it removed.
	DeleteExpired(ctx context.Context, now time.Time) (int64, error)

	// The audit trail and the operator's gauges (audit.go).
	AuditLog

	// Close releases resources.
	Close()
}
