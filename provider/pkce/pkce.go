package pkce

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
)

// challengeLen is the length of BASE64URL(SHA256(verifier)) without padding.
const challengeLen = 43

func isBase64URL(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

func isUnreserved(c byte) bool { return isBase64URL(c) || c == '.' || c == '~' }

// ValidChallenge reports whether c is a well-formed S256 challenge (RFC 7636 §4.2).
func ValidChallenge(c string) bool {
	if len(c) != challengeLen {
		return false
	}
	for i := 0; i < len(c); i++ {
		if !isBase64URL(c[i]) {
			return false
		}
	}
	return true
}

// ValidVerifier reports whether v is 43–128 unreserved characters (RFC 7636 §4.1).
func ValidVerifier(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		if !isUnreserved(v[i]) {
			return false
		}
	}
	return true
}

// ChallengeS256 returns BASE64URL(SHA256(ASCII(verifier))).
func ChallengeS256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// VerifyS256 reports whether verifier matches challenge, in constant time.
func VerifyS256(verifier, challenge string) bool {
	if !ValidVerifier(verifier) {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(ChallengeS256(verifier)), []byte(challenge)) == 1
}
