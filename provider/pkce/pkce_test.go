package pkce

import (
	"strings"
	"testing"
)

// RFC 7636 Appendix B: the verifier is the base64url of the 32 octets
// listed there.
const (
	rfcVerifier  = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
	rfcChallenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
)

func TestChallengeS256RFCVector(t *testing.T) {
	if got := ChallengeS256(rfcVerifier); got != rfcChallenge {
		t.Fatalf("ChallengeS256(%q) = %q, want %q", rfcVerifier, got, rfcChallenge)
	}
}

func TestVerifyS256(t *testing.T) {
	tests := []struct {
		name      string
		verifier  string
		challenge string
		want      bool
	}{
		{"rfc vector", rfcVerifier, rfcChallenge, true},
		{"wrong verifier", "dBjftJeZ4CVP-mB92K27uhbUJU22YnWRAnOXzqnFMrQ", rfcChallenge, false},
		{"wrong challenge", rfcVerifier, "F9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", false},
		{"empty challenge", rfcVerifier, "", false},
		{"verifier too short (42)", strings.Repeat("a", 42), ChallengeS256(strings.Repeat("a", 42)), false},
		{"verifier min length (43)", strings.Repeat("a", 43), ChallengeS256(strings.Repeat("a", 43)), true},
		{"verifier max length (128)", strings.Repeat("a", 128), ChallengeS256(strings.Repeat("a", 128)), true},
		{"verifier too long (129)", strings.Repeat("a", 129), ChallengeS256(strings.Repeat("a", 129)), false},
		{"verifier with unreserved . and ~", strings.Repeat("a.~", 15), ChallengeS256(strings.Repeat("a.~", 15)), true},
		{"verifier with invalid char +", strings.Repeat("a", 42) + "+", ChallengeS256(strings.Repeat("a", 42) + "+"), false},
		{"verifier with space", strings.Repeat("a", 42) + " ", ChallengeS256(strings.Repeat("a", 42) + " "), false},
		{"verifier with non-ASCII", strings.Repeat("a", 41) + "é", ChallengeS256(strings.Repeat("a", 41) + "é"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := VerifyS256(tt.verifier, tt.challenge); got != tt.want {
				t.Errorf("VerifyS256(%q, %q) = %v, want %v", tt.verifier, tt.challenge, got, tt.want)
			}
		})
	}
}

func TestValidChallenge(t *testing.T) {
	tests := []struct {
		name      string
		challenge string
		want      bool
	}{
		{"rfc vector", rfcChallenge, true},
		{"length 42", rfcChallenge[:42], false},
		{"length 44", rfcChallenge + "A", false},
		{"plus char", "+" + rfcChallenge[1:], false},
		{"slash char", "/" + rfcChallenge[1:], false},
		{"padding char", rfcChallenge[:42] + "=", false},
		{"dot char (unreserved but not base64url)", "." + rfcChallenge[1:], false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidChallenge(tt.challenge); got != tt.want {
				t.Errorf("ValidChallenge(%q) = %v, want %v", tt.challenge, got, tt.want)
			}
		})
	}
}

func TestValidVerifier(t *testing.T) {
	tests := []struct {
		name     string
		verifier string
		want     bool
	}{
		{"rfc vector", rfcVerifier, true},
		{"42 chars", strings.Repeat("x", 42), false},
		{"129 chars", strings.Repeat("x", 129), false},
		{"invalid char", rfcVerifier[:42] + "=", false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidVerifier(tt.verifier); got != tt.want {
				t.Errorf("ValidVerifier(%q) = %v, want %v", tt.verifier, got, tt.want)
			}
		})
	}
}
