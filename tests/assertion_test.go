package tests

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/url"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/store"
)

// TestPrivateKeyJWT: a client registered with private_key_jwt authenticates
// with a signed assertion (RFC 7523 §2.2); each assertion works once.
func TestPrivateKeyJWT(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
		status, m := e.register(t, map[string]any{
			"client_name": "Signed", "token_endpoint_auth_method": "private_key_jwt", "jwks": json.RawMessage(jwks),
			"grant_types": []string{"client_credentials"}, "response_types": []string{}, "redirect_uris": []string{},
		})
		mustEqual(t, "register", status, 201)
		if _, has := m["client_secret"]; has {
			t.Fatal("a private_key_jwt client got a client_secret")
		}
		id := m["client_id"].(string)
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: "k1"}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		assertion := func(jti, aud string, exp time.Time) string {
			s, err := jwt.Signed(signer).Claims(jwt.Claims{
				Issuer: id, Subject: id, Audience: jwt.Audience{aud}, ID: jti,
				Expiry: jwt.NewNumericDate(exp), IssuedAt: jwt.NewNumericDate(e.clock.Now()),
			}).Serialize()
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		call := func(a string) tokenResp {
			return e.postToken(url.Values{
				"grant_type": {"client_credentials"}, "client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
				"client_assertion": {a},
			}, "", "")
		}
		tokenURL := e.issuer + provider.PathToken
		good := assertion("jti-1", tokenURL, e.clock.Now().Add(time.Minute))
		mustEqual(t, "valid assertion", call(good).Status, 200)
		mustEqual(t, "replayed assertion", call(good).Error, "invalid_client")
		mustEqual(t, "issuer as audience", call(assertion("jti-2", e.issuer, e.clock.Now().Add(time.Minute))).Status, 200)
		mustEqual(t, "wrong audience", call(assertion("jti-3", "https://elsewhere.example.com/token", e.clock.Now().Add(time.Minute))).Error, "invalid_client")
		mustEqual(t, "expired", call(assertion("jti-4", tokenURL, e.clock.Now().Add(-time.Minute))).Error, "invalid_client")
		mustEqual(t, "lives too long", call(assertion("jti-5", tokenURL, e.clock.Now().Add(time.Hour))).Error, "invalid_client")

		other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		forger, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: other, KeyID: "k1"}}, nil)
		forged, _ := jwt.Signed(forger).Claims(jwt.Claims{Issuer: id, Subject: id, Audience: jwt.Audience{tokenURL}, ID: "jti-6", Expiry: jwt.NewNumericDate(e.clock.Now().Add(time.Minute))}).Serialize()
		mustEqual(t, "signed by another key", call(forged).Error, "invalid_client")
		// A secret-based method is not accepted for this client.
		mustEqual(t, "secret for a private_key_jwt client", e.postToken(url.Values{"grant_type": {"client_credentials"}}, id, "authz_cs_guess").Error, "invalid_client")
	})
}
