package middleware

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// testIssuer is a small authorization server for the middleware's unit
// tests: RFC 8414 metadata, a JWKS, an introspection endpoint, and a
// signer. The end-to-end tests in tests/ use the real authz server.
type testIssuer struct {
	t   testing.TB
	srv *httptest.Server
	url string

	mu      sync.Mutex
	keys    []*ecdsa.PrivateKey
	kids    []string
	active  map[string]map[string]any // introspection answers by token
	jwksErr bool                      // answer the JWKS with 500
	intErr  bool                      // answer introspection with 500
	// withdrawn keys are no longer published (an emergency revocation).
	withdrawn map[string]bool

	jwksHits  atomic.Int64
	introHits atomic.Int64
	metaHits  atomic.Int64
}

func newTestIssuer(t testing.TB, path string) *testIssuer {
	ti := &testIssuer{t: t, active: map[string]map[string]any{}}
	mux := http.NewServeMux()
	ti.srv = httptest.NewServer(mux)
	t.Cleanup(ti.srv.Close)
	ti.url = ti.srv.URL + path
	meta := func(w http.ResponseWriter, r *http.Request) {
		ti.metaHits.Add(1)
		writeJSON(w, map[string]any{
			"issuer": ti.url, "jwks_uri": ti.srv.URL + "/jwks", "introspection_endpoint": ti.srv.URL + "/introspect",
		})
	}
	if path == "" {
		mux.HandleFunc("/.well-known/oauth-authorization-server", meta)
	} else {
		mux.HandleFunc("/.well-known/oauth-authorization-server"+path, meta)
	}
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		ti.jwksHits.Add(1)
		ti.mu.Lock()
		defer ti.mu.Unlock()
		if ti.jwksErr {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		var set jose.JSONWebKeySet
		for i, k := range ti.keys {
			if ti.withdrawn[ti.kids[i]] {
				continue
			}
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: &k.PublicKey, KeyID: ti.kids[i], Algorithm: "ES256", Use: "sig"})
		}
		writeJSON(w, set)
	})
	mux.HandleFunc("/introspect", func(w http.ResponseWriter, r *http.Request) {
		ti.introHits.Add(1)
		id, secret, ok := r.BasicAuth()
		if !ok || id != "rs" || secret != "rs-secret" {
			http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
			return
		}
		ti.mu.Lock()
		defer ti.mu.Unlock()
		if ti.intErr {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		ans, ok := ti.active[r.PostFormValue("token")]
		if !ok {
			ans = map[string]any{"active": false}
		}
		writeJSON(w, ans)
	})
	ti.rotate()
	return ti
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// rotate adds a new current key; older ones stay published.
func (ti *testIssuer) rotate() string {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		ti.t.Fatal(err)
	}
	ti.mu.Lock()
	defer ti.mu.Unlock()
	ti.keys = append(ti.keys, k)
	kid := "k" + string(rune('0'+len(ti.kids)))
	ti.kids = append(ti.kids, kid)
	return kid
}

// withdraw stops publishing the key kid, as an issuer does with a
// compromised key before the tokens it signed have expired.
func (ti *testIssuer) withdraw(kid string) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	if ti.withdrawn == nil {
		ti.withdrawn = map[string]bool{}
	}
	ti.withdrawn[kid] = true
}

func (ti *testIssuer) setJWKSDown(down bool) {
	ti.mu.Lock()
	ti.jwksErr = down
	ti.mu.Unlock()
}

func (ti *testIssuer) setIntrospectionDown(down bool) {
	ti.mu.Lock()
	ti.intErr = down
	ti.mu.Unlock()
}

func (ti *testIssuer) setActive(token string, answer map[string]any) {
	ti.mu.Lock()
	ti.active[token] = answer
	ti.mu.Unlock()
}

// claims are the default claims of a valid token for resource.
func (ti *testIssuer) claims(resource string, now time.Time) map[string]any {
	return map[string]any{
		"iss": ti.url, "sub": "user-1", "aud": []string{resource}, "client_id": "app",
		"scope": "read write", "jti": "jti-1", "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(),
	}
}

// sign makes a JWT with the current key; hdr overrides header fields
// (typ, kid).
func (ti *testIssuer) sign(claims map[string]any, hdr map[string]string) string {
	ti.mu.Lock()
	key, kid := ti.keys[len(ti.keys)-1], ti.kids[len(ti.kids)-1]
	ti.mu.Unlock()
	typ := "at+jwt"
	if v, ok := hdr["typ"]; ok {
		typ = v
	}
	if v, ok := hdr["kid"]; ok {
		kid = v
	}
	opts := (&jose.SignerOptions{}).WithHeader(jose.HeaderKey("kid"), kid)
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, opts)
	if err != nil {
		ti.t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := s.Sign(payload)
	if err != nil {
		ti.t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		ti.t.Fatal(err)
	}
	return out
}

// publicJWK returns the bytes an attacker would use as an HMAC
// secret in an algorithm-confusion attack: the published JWK.
func (ti *testIssuer) publicJWK() []byte {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	b, _ := json.Marshal(jose.JSONWebKey{Key: &ti.keys[len(ti.keys)-1].PublicKey, KeyID: ti.kids[len(ti.kids)-1]})
	return b
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
