package tests

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/store"
)

// keyClient registers a private_key_jwt client (client_credentials) with an
// inline ES256 key and returns its id and a signer for its assertions.
func (e *env) keyClient(t *testing.T) (string, jose.Signer) {
	t.Helper()
	jwks, signer := clientKey(t)
	status, m := e.registerService(t, map[string]any{
		"client_name": "Signed", "token_endpoint_auth_method": "private_key_jwt", "jwks": json.RawMessage(jwks),
		"grant_types": []string{"client_credentials"}, "response_types": []string{}, "redirect_uris": []string{},
	})
	mustEqual(t, "register", status, 201)
	if _, has := m["client_secret"]; has {
		t.Fatal("a private_key_jwt client got a client_secret")
	}
	return m["client_id"].(string), signer
}

// clientKey is an ES256 key as a private_key_jwt client holds it: its
// public JWK Set (key id k1) and a signer for its assertions.
func clientKey(t testing.TB) (jwks []byte, signer jose.Signer) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ = json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	signer, err = jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: "k1"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return jwks, signer
}

// assertionJTI numbers the assertions assertionGrant signs: each is new.
var assertionJTI atomic.Int64

// assertionGrant is a client_credentials request authenticated by a fresh
// RFC 7523 assertion of client id, signed by signer, for this server's
// token endpoint. Safe from several goroutines (a failure is t.Error).
func (e *env) assertionGrant(t testing.TB, signer jose.Signer, id string) url.Values {
	a, err := jwt.Signed(signer).Claims(jwt.Claims{Issuer: id, Subject: id, Audience: jwt.Audience{e.issuer + provider.PathToken},
		ID: fmt.Sprint("jti-", assertionJTI.Add(1)), Expiry: jwt.NewNumericDate(e.clock.Now().Add(time.Minute))}).Serialize()
	if err != nil {
		t.Error(err)
	}
	return url.Values{"grant_type": {"client_credentials"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {a}}
}

// TestPrivateKeyJWT: a client registered with private_key_jwt authenticates
// with a signed assertion (RFC 7523 §2.2); each assertion works once.
func TestPrivateKeyJWT(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		id, signer := e.keyClient(t)
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

// keyServer publishes a client's JWK Set over TLS and counts fetches.
type keyServer struct {
	srv  *httptest.Server
	hits atomic.Int64
	mu   sync.Mutex
	set  []byte
}

func newKeyServer(t *testing.T) *keyServer {
	ks := &keyServer{}
	ks.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ks.hits.Add(1)
		ks.mu.Lock()
		defer ks.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(ks.set)
	}))
	t.Cleanup(ks.srv.Close)
	return ks
}

func (ks *keyServer) publish(key *ecdsa.PrivateKey, kid string) {
	set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: kid, Algorithm: "ES256", Use: "sig"}}})
	ks.mu.Lock()
	ks.set = set
	ks.mu.Unlock()
}

// TestPrivateKeyJWTWithJWKSURI: a client publishing its keys at jwks_uri
// authenticates with them; the set is cached, and a rotation at the client
// is picked up once the cache ages out.
func TestPrivateKeyJWTWithJWKSURI(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		ks := newKeyServer(t)
		// The test's key server is on loopback, which the default fetch
		// client refuses; trust it explicitly here.
		e := start(t, open(t), func(o *provider.Options) { o.HTTPClient = ks.srv.Client() })
		key1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		ks.publish(key1, "k1")
		status, m := e.registerService(t, map[string]any{
			"client_name": "Keyed", "token_endpoint_auth_method": "private_key_jwt", "jwks_uri": ks.srv.URL + "/jwks",
			"grant_types": []string{"client_credentials"},
		})
		mustEqual(t, "register", status, 201)
		id := m["client_id"].(string)
		call := func(key *ecdsa.PrivateKey, kid string) tokenResp {
			signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, nil)
			return e.postToken(e.assertionGrant(t, signer, id), "", "")
		}
		mustEqual(t, "first", call(key1, "k1").Status, 200)
		mustEqual(t, "second", call(key1, "k1").Status, 200)
		mustEqual(t, "fetches for two assertions", ks.hits.Load(), int64(1))

		key2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		ks.publish(key2, "k2")
		mustEqual(t, "new key before the cache ages out", call(key2, "k2").Error, "invalid_client")
		e.clock.Advance(5*time.Minute + time.Second)
		mustEqual(t, "new key after", call(key2, "k2").Status, 200)
		mustEqual(t, "old key after the rotation", call(key1, "k1").Error, "invalid_client")
	})
}

// TestJWKSURIRefusesPrivateAddresses: with the default fetch client, a
// jwks_uri on a loopback address is never fetched (SSRF), and the client
// cannot authenticate: invalid_client, the address being the client's
// fault, not a host that is down. The server's issuer is public (on a
// loopback issuer, loopback is allowed for local development) and the key
// server's certificate is trusted, so only the address policy refuses.
func TestJWKSURIRefusesPrivateAddresses(t *testing.T) {
	t.Parallel()
	ks := newKeyServer(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ks.publish(key, "k1")
	const issuer = "https://auth.example.com"
	e := start(t, storeKinds[0].open(t), func(o *provider.Options) {
		o.Issuer = issuer
		o.FetchRootCAs = x509.NewCertPool()
		o.FetchRootCAs.AddCert(ks.srv.Certificate())
	})
	status, m := e.registerService(t, map[string]any{
		"token_endpoint_auth_method": "private_key_jwt", "jwks_uri": ks.srv.URL + "/jwks", "grant_types": []string{"client_credentials"},
	})
	mustEqual(t, "register", status, 201)
	id := m["client_id"].(string)
	signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: "k1"}}, nil)
	a, _ := jwt.Signed(signer).Claims(jwt.Claims{Issuer: id, Subject: id, Audience: jwt.Audience{issuer + provider.PathToken},
		ID: "j1", Expiry: jwt.NewNumericDate(e.clock.Now().Add(time.Minute))}).Serialize()
	r := e.postToken(url.Values{"grant_type": {"client_credentials"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {a}}, "", "")
	mustEqual(t, "status", r.Status, 401)
	mustEqual(t, "error", r.Error, "invalid_client")
	mustEqual(t, "requests that reached the loopback key server", ks.hits.Load(), int64(0))
}

// TestConcurrentAssertionReplay: 30 requests racing with one client
// assertion get exactly one token (RFC 7523 §3 item 7: a jti is accepted
// once). The check and the record are one store operation, so no two
// requests can both see the jti unused.
func TestConcurrentAssertionReplay(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		id, signer := e.keyClient(t)
		assertion, err := jwt.Signed(signer).Claims(jwt.Claims{
			Issuer: id, Subject: id, Audience: jwt.Audience{e.issuer + provider.PathToken}, ID: "one-jti",
			Expiry: jwt.NewNumericDate(e.clock.Now().Add(time.Minute)), IssuedAt: jwt.NewNumericDate(e.clock.Now()),
		}).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		body := url.Values{
			"grant_type": {"client_credentials"}, "client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
			"client_assertion": {assertion},
		}.Encode()

		const n = 30
		statuses := make([]int, n)
		errs := make([]error, n)
		client := &http.Client{Timeout: time.Minute}
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				resp, err := client.Post(e.issuer+provider.PathToken, "application/x-www-form-urlencoded", strings.NewReader(body))
				if err != nil {
					errs[i] = err
					return
				}
				resp.Body.Close()
				statuses[i] = resp.StatusCode
			})
		}
		close(start)
		wg.Wait()
		count := map[int]int{}
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("request %d: %v", i, errs[i])
			}
			count[statuses[i]]++
		}
		if count[http.StatusOK] != 1 || count[http.StatusUnauthorized] != n-1 {
			t.Fatalf("statuses %v, want exactly one 200 and %d × 401 invalid_client", count, n-1)
		}
	})
}
