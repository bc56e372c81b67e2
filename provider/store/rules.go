package store

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"time"
)

// The decisions below are written once and called by every implementation
// after it has locked what it reads (house rule 11): the memory store under
// its mutex, PostgreSQL with the grant's row lock held. A store supplies
// only locking and persistence; what the answer is lives here.

// LastUsedGranularity bounds how often a grant's LastUsedAt is written: a
// refresh moves it only when the stored value is at least this old, so a
// busy grant costs one write a minute, not one per refresh. LastUsedAt is
// shown to the user ("last used") and used by nothing that needs more.
const LastUsedGranularity = time.Minute

// TouchDue reports whether a grant last used at last should have its
// LastUsedAt moved to now.
func TouchDue(last, now time.Time) bool {
	return last.IsZero() || now.Sub(last) >= LastUsedGranularity
}

// Rotation outcomes that let the exchange go on.
type RotationOutcome int

const (
	// RotateWin: the token was never rotated; mark it rotated at now and
	// store its successor.
	RotateWin RotationOutcome = iota + 1
	// RotateWithinGrace: the token was rotated less than grace ago; answer
	// with the successor stored by the first rotation (one successor per
	// token), storing it only if it is missing.
	RotateWithinGrace
)

// DecideRotation is the rotation rule (RFC 6749 §6, RFC 9700 §4.14.2). old
// and g are nil when the store found no such token or grant. The order is
// the contract: unknown, then grant inactive, then idle expiry, then reuse.
// A reuse is decided before the caller's NextRefreshFunc runs, so a replay
// is reuse whatever else it asks for; on ErrRefreshReused the store revokes
// the grant at now and commits that.
//
// grace <= 0 means no grace window: any second presentation is reuse. The
// window is measured from the first rotation, which is never moved, so it
// cannot be stretched by presenting the token again and again.
func DecideRotation(old *RefreshToken, g *Grant, now time.Time, grace time.Duration) (RotationOutcome, error) {
	switch {
	case old == nil || g == nil:
		return 0, ErrNotFound
	case !g.Active(now):
		return 0, ErrGrantRevoked
	case !now.Before(old.ExpiresAt):
		return 0, ErrExpired
	case old.RotatedAt.IsZero():
		return RotateWin, nil
	case grace > 0 && now.Sub(old.RotatedAt) < grace:
		return RotateWithinGrace, nil
	default:
		return 0, ErrRefreshReused
	}
}

// CheckSuccessor checks what a NextRefreshFunc returned for old: a token
// of the same grant and client, linked to old.
func CheckSuccessor(old, succ RefreshToken) error {
	if succ.GrantID != old.GrantID || succ.ClientID != old.ClientID || succ.ParentID != old.ID {
		return fmt.Errorf("store: successor (grant %q, client %q, parent %q) does not follow token %q of grant %q",
			succ.GrantID, succ.ClientID, succ.ParentID, old.ID, old.GrantID)
	}
	if len(succ.Hash) == 0 || bytes.Equal(succ.Hash, old.Hash) {
		return errors.New("store: successor has no hash of its own")
	}
	return nil
}

// SameSuccessor checks that stored, the token found under the hash of the
// successor proposed inside the grace window, is the successor of old, so
// that a grace replay answers with it. Anything else is a hash collision or
// tokens derived under a different key: an error, never a silent fork.
func SameSuccessor(old, stored RefreshToken) error {
	if stored.GrantID != old.GrantID || stored.ParentID != old.ID {
		return fmt.Errorf("%w: the successor's hash names token %q of grant %q, not the successor of %q",
			ErrAlreadyExists, stored.ID, stored.GrantID, old.ID)
	}
	return nil
}

// CheckCodeGrant is the pairing rule of CreateAuthCode: a code and the
// grant it starts name each other and the same client and user.
func CheckCodeGrant(code AuthCode, g Grant) error {
	if code.GrantID != g.ID || !bytes.Equal(code.Hash, g.CodeHash) ||
		code.ClientID != g.ClientID || code.UserID != g.UserID {
		return errors.New("store: the authorization code and the grant do not belong together")
	}
	return nil
}

// Redemption outcomes of DecideRedemption.
type RedemptionOutcome int

const (
	// RedeemOK: the code is good; delete it, run the caller's RedeemFunc
	// and mark the grant used.
	RedeemOK RedemptionOutcome = iota + 1
	// RedeemReplay: the code is gone but its grant remembers it, and the
	// grant has live tokens; revoke the grant (RFC 6749 §4.1.2) and commit
	// that. Error ErrCodeReused.
	RedeemReplay
	// RedeemSpent: the code is gone and its grant has no live token
	// (already revoked, past its lifetime, or never redeemed); there is
	// nothing to revoke, so nothing is written. Error ErrCodeSpent.
	RedeemSpent
	// RedeemRefuse: the code exists but is expired or its grant inactive;
	// delete it (it can never be used) and commit that. The error says why.
	RedeemRefuse
)

// ReplayedCode is what ConsumeAuthCode returns with ErrCodeReused or
// ErrCodeSpent: the code is gone, so it carries what its grant g remembers
// of it (hash, grant, client, user, scopes, resources), enough to record
// which grant the replay revoked or found already dead.
func ReplayedCode(g Grant) AuthCode {
	return AuthCode{Hash: slices.Clone(g.CodeHash), GrantID: g.ID, ClientID: g.ClientID, UserID: g.UserID,
		Scopes: slices.Clone(g.Scopes), Resources: slices.Clone(g.Resources)}
}

// DecideRedemption is the single-use rule of ConsumeAuthCode. code is the
// stored code under the presented hash and g the grant whose CodeHash is
// that hash (nil when absent), both read under lock.
func DecideRedemption(code *AuthCode, g *Grant, now time.Time) (RedemptionOutcome, error) {
	switch {
	case code == nil && g == nil:
		return 0, ErrNotFound
	case code == nil && !g.LastUsedAt.IsZero() && g.Active(now):
		// Tokens were issued from the code and may still be in use: a
		// replay means the code leaked, so they all go.
		return RedeemReplay, ErrCodeReused
	case code == nil:
		// A redemption that failed its checks revoked the grant before
		// any token existed (the code is spent all the same, RFC 6749
		// §4.1.2), or the grant is dead for another reason. Revoking again would change
		// nothing, and saying "revoked" would be untrue.
		return RedeemSpent, ErrCodeSpent
	case !now.Before(code.ExpiresAt):
		return RedeemRefuse, ErrExpired
	case g == nil || CheckCodeGrant(*code, *g) != nil || !g.Active(now):
		return RedeemRefuse, ErrGrantRevoked
	default:
		return RedeemOK, nil
	}
}

// SweptTrusts are the trust levels whose clients DeleteStaleClients may
// remove: those anyone on the internet can create, by RFC 7591 registration
// or by publishing a client ID metadata document at a new URL. Both are
// rate-limited per client IP, not bounded, so abandoned ones must go. A
// metadata-document client loses nothing by it: its next request fetches
// the document again and makes a new row. An administrator's client is
// never swept.
var SweptTrusts = []string{TrustRegistered, TrustMetadataDocument}

// ClientStale is the staleness rule of DeleteStaleClients: c's trust is
// one of SweptTrusts, it has no live grant (liveGrant false: none neither
// revoked nor past its lifetime at now), and it either never completed an
// authorization (zero UsedAt) and was created at or before now-unusedTTL,
// or was last used at or before now-idleTTL. The memory store calls it;
// the PostgreSQL store's one DELETE states the same conditions over the
// same SweptTrusts.
func ClientStale(c Client, liveGrant bool, now time.Time, unusedTTL, idleTTL time.Duration) bool {
	if liveGrant || !slices.Contains(SweptTrusts, c.Trust) {
		return false
	}
	if c.UsedAt.IsZero() {
		return !c.CreatedAt.After(now.Add(-unusedTTL))
	}
	return !c.UsedAt.After(now.Add(-idleTTL))
}

// RegistrationTokenIs is the check of UpdateRegisteredClient (and the
// memory store's DeleteRegisteredClient): presented, a registration
// access token's hash, is c's, compared in constant time; an empty one
// never is.
func RegistrationTokenIs(c Client, presented []byte) bool {
	return len(presented) > 0 && subtle.ConstantTimeCompare(c.RegistrationTokenHash, presented) == 1
}
