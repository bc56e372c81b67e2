package store

import (
	"context"
	"time"
)

// Identity links an account at an upstream identity provider to a local
// user: the pair (Provider, Subject) is unique and never reassigned.
type Identity struct {
	Provider  string
	Subject   string
	UserID    string
	CreatedAt time.Time
}

// UpstreamSignIn is a person an upstream provider has authenticated, as the
// provider layer decided to present them (after its admission rules).
type UpstreamSignIn struct {
	Provider string
	Subject  string
	// Profile carries what is copied from the provider: Name and Email are
	// written to the user on every sign-in when not empty; for a new user
	// it is the whole record (ID, Username, CreatedAt included).
	Profile User
	// LinkVerifiedEmail allows a first sign-in to attach to the one
	// existing user whose email equals Profile.Email and is itself
	// verified. The caller sets it only when the provider asserted
	// email_verified and the operator allowed linking.
	LinkVerifiedEmail bool
}

// OIDCStore is the part of Store the OpenID Connect layer uses.
type OIDCStore interface {
	// SignInUpstream finds the user of (Provider, Subject), or links the
	// identity to the one user with the same verified email (when
	// LinkVerifiedEmail), or creates Profile as a new user with the
	// identity: one atomic operation, so two first sign-ins of the same
	// person at once make one user. created reports a new user.
	SignInUpstream(ctx context.Context, in UpstreamSignIn, now time.Time) (u User, created bool, err error)
	// ListIdentities returns a user's upstream identities, by provider.
	ListIdentities(ctx context.Context, userID string) ([]Identity, error)
	// SetUserProfile replaces a user's Name, Email and EmailVerified.
	SetUserProfile(ctx context.Context, id, name, email string, emailVerified bool) error
}
