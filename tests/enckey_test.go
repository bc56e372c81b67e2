package tests

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/store"
)

// TestEncryptionKeyChange: a server whose encryption key is B, with A (the
// key it replaced) as a previous key, picks up where servers on A left
// off on the same store: it signs with the signing key sealed under A, it
// accepts a sign-in form whose CSRF token a server on A issued, and it
// answers a grace replay whose first rotation happened under A with that
// same successor. Without A as a previous key it refuses to start, as
// before.
func TestEncryptionKeyChange(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		st := open(t)
		keyA, keyB := randomKey(t), randomKey(t)
		a := start(t, st, func(o *provider.Options) { o.EncryptionKey = keyA })

		// Under A: tokens, a first rotation, and a sign-in form left open.
		c, secret, _, first := a.firstTokens(t, "alice", "s1")
		rotated := a.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first.RefreshToken}}, c.ID, secret)
		mustEqual(t, "first rotation under A", rotated.Status, 200)
		kidA := tokenKid(t, first.AccessToken)
		user, pw := a.user("bob")
		br := a.browser()
		p := br.do("GET", authRequest{clientID: c.ID, redirectURI: "http://127.0.0.1/callback", state: "s2", verifier: testVerifier}.url(a.issuer), nil)
		p = br.do("GET", p.location, nil)
		form := formFields(p.body)
		if form.Get("csrf_token") == "" {
			t.Fatalf("no sign-in form from A: %d %.300s", p.status, p.body)
		}
		a.http.Close()

		// B alone cannot open the signing key: refused as before.
		if _, err := provider.New(context.Background(), provider.Options{Issuer: a.issuer, Store: st, EncryptionKey: keyB}); !errors.Is(err, provider.ErrWrongEncryptionKey) {
			t.Fatalf("starting with only B: %v, want ErrWrongEncryptionKey", err)
		}

		logs := &syncBuffer{}
		b := start(t, st, func(o *provider.Options) {
			o.Now = a.clock.Now // still inside the grace window
			o.EncryptionKey, o.PreviousEncryptionKeys = keyB, [][]byte{keyA}
			o.Logger = slog.New(slog.NewTextHandler(logs, nil))
		})
		b.clock = a.clock
		if l := logs.String(); !strings.Contains(l, "level=WARN") || !strings.Contains(l, "keys=1") || !strings.Contains(l, "authz keys reencrypt") {
			t.Fatalf("start-up log does not warn of the key sealed under A:\n%s", l)
		}

		// The grace replay of the first refresh token gets A's successor,
		// with an access token signed by the key sealed under A.
		replay := b.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first.RefreshToken}}, c.ID, secret)
		mustEqual(t, "grace replay under B", replay.Status, 200)
		mustEqual(t, "successor of the grace replay", replay.RefreshToken, rotated.RefreshToken)
		mustEqual(t, "kid of B's access token", tokenKid(t, replay.AccessToken), kidA)
		// And the successor itself goes on working.
		next := b.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {replay.RefreshToken}}, c.ID, secret)
		mustEqual(t, "refreshing A's successor under B", next.Status, 200)

		// The sign-in form A served, posted to B.
		br.e = b
		bad := url.Values{}
		for k, v := range form {
			bad[k] = v
		}
		bad.Set("username", user)
		bad.Set("password", pw)
		bad.Set("csrf_token", "x"+form.Get("csrf_token"))
		if p := br.do("POST", provider.PathLogin, bad); p.status != http.StatusBadRequest {
			t.Fatalf("a forged CSRF token: %d, want 400", p.status)
		}
		form.Set("username", user)
		form.Set("password", pw)
		p = br.do("POST", provider.PathLogin, form)
		if p.status != http.StatusSeeOther || !strings.Contains(p.location, provider.PathAuthorize) {
			t.Fatalf("sign-in form from A posted to B: %d %q %.300s", p.status, p.location, p.body)
		}
	})
}

func randomKey(t testing.TB) []byte {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// tokenKid is the kid in a JWT's header.
func tokenKid(t testing.TB, jwt string) string {
	t.Helper()
	h, err := base64.RawURLEncoding.DecodeString(strings.Split(jwt, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(h, &v); err != nil || v.Kid == "" {
		t.Fatalf("JWT header %s: %v", h, err)
	}
	return v.Kid
}
