package tokens

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// TestSignerMatchesGoJose pins Signer's hand-written JWS to what go-jose's
// signer wrote before it: the same protected header and payload bytes, a
// signature go-jose verifies, and for EdDSA (deterministic, RFC 8032) the
// very same token.
func TestSignerMatchesGoJose(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	for _, alg := range []string{"ES256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			k := mustKey(t, alg)
			s, err := NewSigner(k)
			if err != nil {
				t.Fatal(err)
			}
			c := validClaims(now)
			c.Audience = append(c.Audience, "https://mcp.example.com/mcp")
			got, err := s.Sign(c)
			if err != nil {
				t.Fatal(err)
			}
			payload, err := json.Marshal(wireClaims{
				Iss: c.Issuer, Sub: c.Subject, Aud: c.Audience, ClientID: c.ClientID, Scope: c.Scope, Jti: c.ID, Sid: c.GrantID,
				Iat: c.IssuedAt.Unix(), Nbf: c.NotBefore.Unix(), Exp: c.ExpiresAt.Unix(),
			})
			if err != nil {
				t.Fatal(err)
			}
			want := rawSign(t, k, AccessTokenType, payload)
			g, w := strings.Split(got, "."), strings.Split(want, ".")
			if len(g) != 3 || g[0] != w[0] || g[1] != w[1] {
				t.Fatalf("token\n got %s\nwant %s (header and payload must be equal)", got, want)
			}
			if alg == "EdDSA" && got != want {
				t.Errorf("EdDSA token\n got %s\nwant %s", got, want)
			}
			jws, err := jose.ParseSignedCompact(got, allowedAlgs)
			if err != nil {
				t.Fatal(err)
			}
			out, err := jws.Verify(k.Private.Public())
			if err != nil {
				t.Fatalf("go-jose does not verify the token: %v", err)
			}
			if string(out) != string(payload) {
				t.Errorf("verified payload %s, want %s", out, payload)
			}
		})
	}
}

func TestNewSignerRejectsWrongKey(t *testing.T) {
	t.Parallel()
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for name, k := range map[string]Key{
		"ES256 label on an Ed25519 key": {ID: "k", Algorithm: "ES256", Private: mustKey(t, "EdDSA").Private},
		"EdDSA label on a P-256 key":    {ID: "k", Algorithm: "EdDSA", Private: mustKey(t, "ES256").Private},
		"P-384 key":                     {ID: "k", Algorithm: "ES256", Private: p384},
	} {
		if _, err := NewSigner(k); err == nil {
			t.Errorf("%s: NewSigner succeeded, want an error", name)
		}
	}
}

// TestAppendClaimsMatchesEncodingJSON: the hand-written claims encoding is
// encoding/json's output for every input, escaping included.
func TestAppendClaimsMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	// One special character per string, so each escape is checked alone.
	tricky := []string{"", "plain", `quote "`, `back\slash`, "<script", "a > b", "this & that", "tab\t", "nl\n", "nul\x00", "us\x1f",
		"ünïcödé", "✓ 日本", "line\u2028sep", "para\u2029sep", "invalid \xff utf-8", "del\x7f", "emoji 😀", "/slash/", "https://host/mcp?x=1"}
	cases := []AccessTokenClaims{validClaims(now), {}, {Audience: []string{}}, {IssuedAt: time.Unix(-5, 0), ExpiresAt: time.Unix(1<<40, 0)}}
	for _, s := range tricky {
		cases = append(cases, AccessTokenClaims{Issuer: s, Subject: s, Audience: []string{s, "a", s}, ClientID: s, Scope: s, ID: s, GrantID: s,
			IssuedAt: now, NotBefore: now.Add(-time.Second), ExpiresAt: now.Add(time.Hour)})
	}
	for _, c := range cases {
		want, err := json.Marshal(wireClaims{
			Iss: c.Issuer, Sub: c.Subject, Aud: c.Audience, ClientID: c.ClientID, Scope: c.Scope, Jti: c.ID, Sid: c.GrantID,
			Iat: c.IssuedAt.Unix(), Nbf: c.NotBefore.Unix(), Exp: c.ExpiresAt.Unix(),
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := appendClaims(nil, c); string(got) != string(want) {
			t.Errorf("appendClaims\n got %s\nwant %s", got, want)
		}
	}
}
