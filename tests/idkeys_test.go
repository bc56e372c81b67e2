package tests

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/store"
)

// jwksOf fetches the server's JWK Set over HTTP, as a relying party does.
func jwksOf(t *testing.T, e *env) jose.JSONWebKeySet {
	t.Helper()
	resp, err := http.Get(e.issuer + provider.PathJWKS)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET jwks: %d %v", resp.StatusCode, err)
	}
	return set
}

// verifiesAgainstJWKS: the signature of jws checks out with the key of its
// kid in the JWKS the server publishes now.
func verifiesAgainstJWKS(t *testing.T, e *env, jws string) bool {
	t.Helper()
	set := jwksOf(t, e)
	keys := set.Key(kidOf(t, jws))
	if len(keys) != 1 {
		return false
	}
	parsed, err := jose.ParseSignedCompact(jws, []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.EdDSA})
	if err != nil {
		t.Fatal(err)
	}
	_, err = parsed.Verify(keys[0])
	return err == nil
}

// TestIDTokenKeysRotate: `keys rotate` (provider.RotateSigningKeys, what
// the command runs) rotates the ID-token keys of every algorithm in use
// under the access-token keys' rules, over real HTTP: the new kid is in
// the JWKS before any ID token carries it; after the activation delay new
// ID tokens carry it and verify (go-oidc, from the JWKS); an ID token
// signed before still verifies until its lifetime has passed; then the old
// kid leaves the JWKS, the old ID token is no longer taken as an
// id_token_hint, and the janitor deletes the key a day later.
func TestIDTokenKeysRotate(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		ctx := context.Background()
		encKey := make([]byte, 32)
		const reload = 30 * time.Second
		e := start(t, open(t), func(o *provider.Options) {
			o.EncryptionKey = encKey
			o.KeyRefreshInterval = reload
		})
		ttl := e.srv.Options().AccessTokenTTL
		user, pw := e.user("ivy")
		r := e.relyingParty(t)
		b := e.browser()
		tok0, _ := r.signIn(t, b, user, pw)
		id0 := tok0.Extra("id_token").(string)
		kid0 := kidOf(t, id0)
		// An ES256 client too: every algorithm in use rotates.
		ces, secret := e.client(store.ClientMetadata{RedirectURIs: []string{r.redirect}, IDTokenSignedResponseAlg: "ES256"})
		res := &rp{e: e, provider: r.provider, client: ces, redirect: r.redirect,
			verifier: r.provider.Verifier(&oidc.Config{ClientID: ces.ID, Now: e.clock.Now, SupportedSigningAlgs: []string{"ES256"}}),
			cfg:      oauth2.Config{ClientID: ces.ID, ClientSecret: secret, RedirectURL: r.redirect, Endpoint: r.provider.Endpoint(), Scopes: []string{"openid"}}}
		tokES, _ := res.signIn(t, b, user, pw)
		kidES0 := kidOf(t, tokES.Extra("id_token").(string))

		refresh := func(tok *oauth2.Token) (*oauth2.Token, string) {
			t.Helper()
			tok.Expiry = time.Now().Add(-time.Hour) // make x/oauth2 refresh
			next, err := r.cfg.TokenSource(ctx, tok).Token()
			if err != nil {
				t.Fatalf("refresh: %v", err)
			}
			return next, next.Extra("id_token").(string)
		}

		rotatedAt := e.clock.Now()
		activation := rotatedAt.Add(provider.KeyActivationDelay(reload))
		keys, err := provider.RotateSigningKeys(ctx, e.store, encKey, "ES256", rotatedAt, activation, nil)
		if err != nil {
			t.Fatal(err)
		}
		var purposes []string
		for _, k := range keys {
			purposes = append(purposes, k.KeyPurpose())
		}
		if got := strings.Join(purposes, " "); got != "access_token id_token:RS256 id_token:ES256" {
			t.Fatalf("rotated purposes %q, want the access-token key and one ID-token key per algorithm in use", got)
		}
		kid1, kidES1 := keys[1].ID, keys[2].ID

		// After every server's reload, before the activation: both kids
		// published, ID tokens still signed with the old key.
		e.clock.Advance(reload + time.Second)
		tok, idt := refresh(tok0)
		if got := kidOf(t, idt); got != kid0 {
			t.Fatalf("an ID token signed before the new key's activation carries %s, want the old %s", got, kid0)
		}
		set := jwksOf(t, e)
		if len(set.Key(kid1)) != 1 || len(set.Key(kidES1)) != 1 || len(set.Key(kid0)) != 1 || len(set.Key(kidES0)) != 1 {
			t.Fatalf("JWKS before activation lacks a key: %v", set.Keys)
		}

		// From the activation on, new ID tokens carry the new kid and
		// verify against the JWKS (go-oidc fetches it for the unknown kid).
		e.clock.Advance(activation.Add(time.Second).Sub(e.clock.Now()))
		tok, idt = refresh(tok)
		if got := kidOf(t, idt); got != kid1 {
			t.Fatalf("an ID token after the activation carries %s, want the new %s", got, kid1)
		}
		r.verify(t, tok)
		if !verifiesAgainstJWKS(t, e, idt) {
			t.Fatal("the new ID token does not verify against the JWKS")
		}
		tokES, _ = res.signIn(t, b, user, pw)
		if got := kidOf(t, tokES.Extra("id_token").(string)); got != kidES1 {
			t.Fatalf("an ES256 ID token after the activation carries %s, want %s", got, kidES1)
		}

		// The old ID token verifies until its own lifetime has passed, with
		// a relying party that never saw the old key before.
		e.clock.Advance(rotatedAt.Add(ttl - time.Second).Sub(e.clock.Now()))
		fresh := r.provider.Verifier(&oidc.Config{ClientID: r.client.ID, Now: e.clock.Now})
		if _, err := fresh.Verify(ctx, id0); err != nil {
			t.Fatalf("the ID token signed before the rotation, within its lifetime: %v", err)
		}
		if !verifiesAgainstJWKS(t, e, id0) {
			t.Fatal("the old ID token's key left the JWKS within the token's lifetime")
		}

		// Once every ID token the old key signed has expired (it signed
		// until the activation), plus the clock-skew leeway and one reload,
		// the old kid is gone from the JWKS.
		e.clock.Advance(activation.Add(ttl + 5*time.Minute + reload + time.Second).Sub(e.clock.Now()))
		set = jwksOf(t, e)
		if len(set.Key(kid0)) != 0 || len(set.Key(kidES0)) != 0 {
			t.Fatalf("the retired ID-token keys %s, %s are still published: %v", kid0, kidES0, set.Keys)
		}
		if len(set.Key(kid1)) != 1 || len(set.Key(kidES1)) != 1 {
			t.Fatalf("the current ID-token keys are not published: %v", set.Keys)
		}
		if verifiesAgainstJWKS(t, e, id0) {
			t.Fatal("the old ID token still verifies against the JWKS")
		}
		// Nor is it taken as an id_token_hint any more.
		p := e.browser().do("GET", e.issuer+provider.PathEndSession+"?"+url.Values{"id_token_hint": {id0}}.Encode(), nil)
		if p.status != http.StatusBadRequest {
			t.Fatalf("end_session with an ID token whose key is gone: %d, want 400", p.status)
		}
		p = e.browser().do("GET", e.issuer+provider.PathEndSession+"?"+url.Values{"id_token_hint": {idt}}.Encode(), nil)
		if p.status == http.StatusBadRequest {
			t.Fatal("end_session refused an ID token signed by the current key")
		}

		// The janitor deletes the old keys a day after that, as it does
		// access-token keys.
		e.clock.Advance(24 * time.Hour)
		e.srv.RunJobs(ctx)
		stored, err := e.store.ListSigningKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range stored {
			if k.ID == kid0 || k.ID == kidES0 {
				t.Fatalf("the janitor kept the long-retired ID-token key %s", k.ID)
			}
		}
	})
}

// registerJSON posts an RFC 7591 registration and returns the status and
// the decoded answer.
func registerJSON(t *testing.T, e *env, body string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(e.issuer+provider.PathRegister, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

// TestIDTokenAlgorithmsAreOneList: the algorithms discovery advertises
// (id_token_signing_alg_values_supported) are exactly those registration
// accepts (id_token_signed_response_alg) and those the server signs ID
// tokens with, each verifiable from the JWKS; one it does not advertise is
// refused at registration.
func TestIDTokenAlgorithmsAreOneList(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		user, pw := e.user("ada")
		b := e.browser()
		base := e.relyingParty(t)
		register := func(alg string) (int, map[string]any) {
			return registerJSON(t, e, `{"redirect_uris":["https://rp.example.com/cb"],"id_token_signed_response_alg":"`+alg+`"}`)
		}
		var advertised []string
		for _, a := range getJSON(t, e.issuer+"/.well-known/openid-configuration")["id_token_signing_alg_values_supported"].([]any) {
			advertised = append(advertised, a.(string))
		}
		if len(advertised) == 0 || advertised[0] != "RS256" {
			t.Fatalf("id_token_signing_alg_values_supported = %v, want RS256 first (OpenID Connect Discovery §3)", advertised)
		}
		for _, alg := range advertised {
			if st, m := register(alg); st != 201 || m["id_token_signed_response_alg"] != alg {
				t.Fatalf("registering for advertised %s: %d %v", alg, st, m)
			}
			c, secret := e.client(store.ClientMetadata{RedirectURIs: []string{base.redirect}, IDTokenSignedResponseAlg: alg})
			r := &rp{e: e, provider: base.provider, client: c, redirect: base.redirect,
				verifier: base.provider.Verifier(&oidc.Config{ClientID: c.ID, Now: e.clock.Now, SupportedSigningAlgs: []string{alg}}),
				cfg:      oauth2.Config{ClientID: c.ID, ClientSecret: secret, RedirectURL: base.redirect, Endpoint: base.provider.Endpoint(), Scopes: []string{"openid"}}}
			tok, _ := r.signIn(t, b, user, pw) // verified by go-oidc, for alg only
			if !verifiesAgainstJWKS(t, e, tok.Extra("id_token").(string)) {
				t.Fatalf("the %s ID token does not verify against the JWKS", alg)
			}
		}
		for _, alg := range []string{"PS256", "HS256", "none"} {
			if st, m := register(alg); st != 400 || m["error"] != "invalid_client_metadata" {
				t.Fatalf("registering for unadvertised %s: %d %v", alg, st, m)
			}
		}
	})
}

// TestNoIDTokenKeyWithoutOpenID: a code exchange and a refresh of a grant
// without openid make no ID-token key (an RSA key is slow to make, and the
// exchange must not write anything before its code is spent).
func TestNoIDTokenKeyWithoutOpenID(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		user, pw := e.user("noid")
		c, secret, redirect := e.loopbackClient(false)
		code := e.codeFor(e.browser(), authRequest{clientID: c.ID, redirectURI: redirect, state: "s", scope: "read", verifier: testVerifier}, user, pw)
		tr := e.postToken(exchangeForm(code, redirect, testVerifier, nil), c.ID, secret)
		mustEqual(t, "code exchange", tr.Status, 200)
		r := e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}}, c.ID, secret)
		mustEqual(t, "refresh", r.Status, 200)
		keys, err := e.store.ListSigningKeys(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if k.KeyPurpose() != store.PurposeAccessToken {
				t.Fatalf("a flow without openid made the key %s for %s", k.ID, k.KeyPurpose())
			}
		}
	})
}

// TestReplicasIDTokenKeysAcrossRotation: replicas on one PostgreSQL. The
// first ID-token key one replica makes is in the others' JWKS a second
// later; after a rotation, a replica whose periodic reload has not come
// (the laggard) keeps signing ID tokens with the old key, which the other
// replicas still publish, while an up-to-date replica signs with the new.
func TestReplicasIDTokenKeysAcrossRotation(t *testing.T) {
	t.Parallel()
	r := newReplicaSet(t, nil)
	a, c := r.a, r.c // c reloads only every hour
	user, pw := a.user("rhea")
	client, secret, redirect := a.loopbackClient(false)
	idTokenFrom := func(e *env, b *browser, state string) string {
		t.Helper()
		// The replica's own listener; iss is the shared issuer.
		u := b.authorize(authRequest{clientID: client.ID, redirectURI: redirect, state: state, scope: "openid", verifier: testVerifier,
			extra: url.Values{"nonce": {"n-" + state}}}.url(e.issuer), user, pw)
		code := u.Query().Get("code")
		if code == "" {
			t.Fatalf("no code: %s", u)
		}
		tr := e.postToken(exchangeForm(code, redirect, testVerifier, nil), client.ID, secret)
		mustEqual(t, "code exchange at a replica", tr.Status, 200)
		if tr.IDToken == "" {
			t.Fatal("no ID token")
		}
		return tr.IDToken
	}
	ba, bc := a.browser(), c.browser()

	// The laggard makes the first RS256 key; a publishes it within a second.
	id0 := idTokenFrom(c, bc, "s0")
	kid0 := kidOf(t, id0)
	r.clk.Advance(2 * time.Second)
	if !verifiesAgainstJWKS(t, a, id0) {
		t.Fatal("the first ID-token key made on one replica is not in another's JWKS")
	}

	keys := func() []store.SigningKey {
		now := r.clk.Now()
		ks, err := provider.RotateSigningKeys(context.Background(), a.store, r.encKey, "ES256", now, now.Add(provider.KeyActivationDelay(replicaReload)), nil)
		if err != nil {
			t.Fatal(err)
		}
		return ks
	}()
	if len(keys) != 2 {
		t.Fatalf("rotation made %d keys, want the access-token key and the RS256 ID-token key", len(keys))
	}
	kid1 := keys[1].ID
	r.clk.Advance(provider.KeyActivationDelay(replicaReload) + time.Second)

	fromA := idTokenFrom(a, ba, "s1")
	if got := kidOf(t, fromA); got != kid1 {
		t.Fatalf("the up-to-date replica signs ID tokens with %s, want the new %s", got, kid1)
	}
	fromC := idTokenFrom(c, bc, "s2")
	if got := kidOf(t, fromC); got != kid0 {
		t.Fatalf("the laggard signs ID tokens with %s, want the old %s it still has", got, kid0)
	}
	if !verifiesAgainstJWKS(t, a, fromC) || !verifiesAgainstJWKS(t, a, fromA) {
		t.Fatal("an ID token of either replica does not verify against the up-to-date replica's JWKS")
	}
}
