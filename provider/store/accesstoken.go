package store

import "time"

// AccessTokenStatus is what the store knows about a signed access token
// that its signature cannot tell, read in one operation by
// Store.AccessTokenStatus: introspection (RFC 7662) and UserInfo ask it
// for every token they are shown, so it is one round trip, not one per
// question.
type AccessTokenStatus struct {
	// Revoked: the token's jti was revoked (RFC 7009 §2.1) and its entry
	// is still kept at the instant asked about.
	Revoked bool
	// Found: the token's grant still exists, or, for a token without a
	// grant (client_credentials), its client does. Deleting a client
	// deletes its grants, so a grant found implies its client exists.
	Found bool
	// Grant is the token's grant when it has one and it was found; nil
	// for a token without a grant.
	Grant *Grant
}

// Live reports whether the token may still be used at now: not revoked,
// and its grant active (Grant.Active, the one grant-liveness rule) or,
// without a grant, its client still there.
func (st AccessTokenStatus) Live(now time.Time) bool {
	return !st.Revoked && st.Found && (st.Grant == nil || st.Grant.Active(now))
}
