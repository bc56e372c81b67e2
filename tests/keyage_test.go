package tests

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/store"
)

// TestSigningKeyAgeCoversIDTokenKeys: authz_signing_key_age_seconds used
// to report only the access-token key, so an operator alerting on key age
// never learnt that the ID-token key had not been rotated. It now has one
// series per purpose, each its own key's age, read over the admin
// listener's /metrics; `keys rotate` resets both.
func TestSigningKeyAgeCoversIDTokenKeys(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		encKey := make([]byte, 32)
		const reload = 30 * time.Second
		e := start(t, open(t), func(o *provider.Options) {
			o.EncryptionKey = encKey
			o.KeyRefreshInterval = reload
		})
		admin := httptest.NewServer(e.srv.AdminHandler())
		t.Cleanup(admin.Close)
		age := func(purpose string) (float64, bool) {
			return metric(scrape(t, admin.URL), "authz_signing_key_age_seconds", "purpose", purpose)
		}
		idPurpose := store.IDTokenPurpose("RS256") // OIDC Core §3.1.3.7's default
		if _, found := age(idPurpose); found {
			t.Fatalf("a %s series before any ID token was signed", idPurpose)
		}

		// The access-token key is made at start; the ID-token key by the
		// first ID token, two hours later.
		e.clock.Advance(2 * time.Hour)
		user, pw := e.user("key-age")
		c, secret, redirect := e.loopbackClient(false)
		code := e.codeFor(e.browser(), authRequest{clientID: c.ID, redirectURI: redirect, state: "s", scope: "openid read", verifier: testVerifier}, user, pw)
		tr := e.postToken(exchangeForm(code, redirect, testVerifier, nil), c.ID, secret)
		if tr.Status != 200 || tr.IDToken == "" {
			t.Fatalf("exchange: %d %s, id_token %q", tr.Status, tr.Error, tr.IDToken)
		}
		e.clock.Advance(time.Hour)
		for _, tt := range []struct {
			purpose  string
			min, max float64
		}{
			{store.PurposeAccessToken, 3 * 3600, 3*3600 + 60},
			{idPurpose, 3600, 3600 + 60},
		} {
			if got, found := age(tt.purpose); !found || got < tt.min || got > tt.max {
				t.Errorf("authz_signing_key_age_seconds{purpose=%q} = %v (found %v), want %v..%v", tt.purpose, got, found, tt.min, tt.max)
			}
		}

		// A rotation: once the new keys sign, both series start again.
		now := e.clock.Now()
		act := now.Add(provider.KeyActivationDelay(reload))
		if _, err := provider.RotateSigningKeys(context.Background(), e.store, encKey, provider.DefaultSigningAlgorithm, now, act, nil); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(act.Sub(now) + time.Minute)
		jwksOf(t, e) // a request that reads the keys reloads them once they are older than reload
		for _, purpose := range []string{store.PurposeAccessToken, idPurpose} {
			if got, found := age(purpose); !found || got < 60 || got > 60+5 {
				t.Errorf("authz_signing_key_age_seconds{purpose=%q} after the rotation = %v (found %v), want the new key's (60 s)", purpose, got, found)
			}
		}
	})
}
