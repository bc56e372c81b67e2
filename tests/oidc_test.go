package tests

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/store"
)

// rp is a relying party built on coreos/go-oidc and x/oauth2, as Go web
// apps sign users in.
type rp struct {
	e        *env
	provider *oidc.Provider
	verifier *oidc.IDTokenVerifier
	cfg      oauth2.Config
	client   store.Client
	redirect string
}

func (e *env) relyingParty(t *testing.T, scopes ...string) *rp {
	t.Helper()
	c, secret := e.client(store.ClientMetadata{
		RedirectURIs:           []string{"https://rp.example.com/cb"},
		PostLogoutRedirectURIs: []string{"https://rp.example.com/bye"},
	})
	p, err := oidc.NewProvider(context.Background(), e.issuer)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	if len(scopes) == 0 {
		scopes = []string{oidc.ScopeOpenID, "profile", "email"}
	}
	return &rp{
		e: e, provider: p, client: c, redirect: "https://rp.example.com/cb",
		verifier: p.Verifier(&oidc.Config{ClientID: c.ID, Now: e.clock.Now}),
		cfg: oauth2.Config{ClientID: c.ID, ClientSecret: secret, RedirectURL: "https://rp.example.com/cb",
			Endpoint: p.Endpoint(), Scopes: scopes},
	}
}

// authURL is an authorization request with nonce and PKCE, plus extra.
func (r *rp) authURL(state, nonce, verifier string, extra ...oauth2.AuthCodeOption) string {
	opts := append([]oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce)}, extra...)
	return r.cfg.AuthCodeURL(state, opts...)
}

// signIn runs a whole sign-in and returns the token and its verified ID token.
func (r *rp) signIn(t *testing.T, b *browser, user, pw string, extra ...oauth2.AuthCodeOption) (*oauth2.Token, *oidc.IDToken) {
	t.Helper()
	verifier := oauth2.GenerateVerifier()
	u := b.authorize(r.authURL("st", "n-"+verifier[:10], verifier, extra...), user, pw)
	if u.Query().Get("error") != "" {
		t.Fatalf("authorization error: %s", u.Query().Get("error"))
	}
	tok, err := r.cfg.Exchange(context.Background(), u.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	idt := r.verify(t, tok)
	if idt.Nonce != "n-"+verifier[:10] {
		t.Fatalf("nonce = %q, want the one sent", idt.Nonce)
	}
	return tok, idt
}

func (r *rp) verify(t *testing.T, tok *oauth2.Token) *oidc.IDToken {
	t.Helper()
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		t.Fatal("no id_token in the token response")
	}
	idt, err := r.verifier.Verify(context.Background(), raw)
	if err != nil {
		t.Fatalf("ID token verification: %v", err)
	}
	if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
		t.Fatalf("at_hash: %v", err)
	}
	return idt
}

type idClaims struct {
	AuthTime int64  `json:"auth_time"`
	Azp      string `json:"azp"`
	Sid      string `json:"sid"`
}

func claimsOf(t *testing.T, idt *oidc.IDToken) idClaims {
	t.Helper()
	var c idClaims
	if err := idt.Claims(&c); err != nil {
		t.Fatal(err)
	}
	return c
}

func (e *env) profile(t *testing.T, username, name, email string, verified bool) {
	t.Helper()
	u, err := e.store.GetUserByUsername(context.Background(), username)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.SetUserProfile(context.Background(), u.ID, name, email, verified); err != nil {
		t.Fatal(err)
	}
}

// TestOIDCRelyingParty: discovery, code + PKCE, ID token with nonce,
// at_hash, auth_time, sid, UserInfo, refresh with a new ID token (same sub
// and auth_time, no nonce), each through go-oidc.
func TestOIDCRelyingParty(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		user, pw := e.user("alice")
		e.profile(t, user, "Alice Liddell", "alice@example.com", true)
		r := e.relyingParty(t)
		b := e.browser()
		tok, idt := r.signIn(t, b, user, pw, oauth2.SetAuthURLParam("resource", e.issuer+"/api"))

		u, _ := e.store.GetUserByUsername(context.Background(), user)
		mustEqual(t, "sub", idt.Subject, u.ID)
		mustEqual(t, "aud", strings.Join(idt.Audience, " "), r.client.ID)
		c := claimsOf(t, idt)
		mustEqual(t, "azp", c.Azp, r.client.ID)
		if c.AuthTime == 0 || c.AuthTime > e.clock.Now().Unix() || c.Sid == "" {
			t.Fatalf("auth_time %d, sid %q", c.AuthTime, c.Sid)
		}
		// RS256 by default (OIDC Core §3.1.3.7), typ JWT.
		hdr := strings.Split(tok.Extra("id_token").(string), ".")[0]
		raw, _ := decodeSegment(hdr)
		if !strings.Contains(string(raw), `"alg":"RS256"`) || !strings.Contains(string(raw), `"typ":"JWT"`) {
			t.Fatalf("ID token header %s", raw)
		}
		// The access token names the API and UserInfo, nothing else.
		aud := audience(t, tok.AccessToken)
		if !slices.Equal(aud, []string{e.issuer + "/api", e.issuer + provider.PathUserInfo}) {
			t.Fatalf("access token aud = %v", aud)
		}

		info, err := r.provider.UserInfo(context.Background(), oauth2.StaticTokenSource(tok))
		if err != nil {
			t.Fatalf("UserInfo: %v", err)
		}
		var profile struct {
			Name              string `json:"name"`
			PreferredUsername string `json:"preferred_username"`
		}
		_ = info.Claims(&profile)
		if info.Subject != u.ID || info.Email != "alice@example.com" || !info.EmailVerified || profile.Name != "Alice Liddell" || profile.PreferredUsername != "alice" {
			t.Fatalf("UserInfo = %+v %+v", info, profile)
		}

		// Refresh later: a new ID token, same sub and auth_time, new iat, no nonce.
		e.clock.Advance(10 * time.Minute)
		tok.Expiry = time.Now().Add(-time.Hour)
		next, err := r.cfg.TokenSource(context.Background(), tok).Token()
		if err != nil {
			t.Fatalf("refresh: %v", err)
		}
		idt2 := r.verify(t, next)
		c2 := claimsOf(t, idt2)
		if idt2.Subject != idt.Subject || c2.AuthTime != c.AuthTime || idt2.Nonce != "" || !idt2.IssuedAt.After(idt.IssuedAt) || c2.Sid != c.Sid {
			t.Fatalf("refreshed ID token sub %s auth_time %d nonce %q iat %v sid %s; first sub %s auth_time %d iat %v sid %s",
				idt2.Subject, c2.AuthTime, idt2.Nonce, idt2.IssuedAt, c2.Sid, idt.Subject, c.AuthTime, idt.IssuedAt, c.Sid)
		}

		// A client registered for ES256 gets ES256 ID tokens, verifiable by
		// go-oidc from the same JWKS.
		ces, secret := e.client(store.ClientMetadata{RedirectURIs: []string{"https://rp.example.com/cb"}, IDTokenSignedResponseAlg: "ES256"})
		r2 := &rp{e: e, provider: r.provider, client: ces, redirect: r.redirect,
			verifier: r.provider.Verifier(&oidc.Config{ClientID: ces.ID, Now: e.clock.Now, SupportedSigningAlgs: []string{"ES256"}}),
			cfg:      oauth2.Config{ClientID: ces.ID, ClientSecret: secret, RedirectURL: r.redirect, Endpoint: r.provider.Endpoint(), Scopes: []string{"openid"}}}
		r2.signIn(t, b, user, pw)

		// Without openid: no ID token, no UserInfo audience.
		plain := e.relyingParty(t, "read")
		verifier := oauth2.GenerateVerifier()
		cb := b.authorize(plain.authURL("s2", "n2", verifier), user, pw)
		tok3, err := plain.cfg.Exchange(context.Background(), cb.Query().Get("code"), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		if tok3.Extra("id_token") != nil || slices.Contains(audience(t, tok3.AccessToken), e.issuer+provider.PathUserInfo) {
			t.Fatal("a token without openid got an ID token or the UserInfo audience")
		}
	})
}

// TestOIDCDiscovery: both OpenID configuration locations for an issuer with
// a path, the same values as RFC 8414's document, and the OIDC fields.
func TestOIDCDiscovery(t *testing.T) {
	t.Parallel()
	e := start(t, storeKinds[0].open(t), func(o *provider.Options) { o.Issuer += "/tenant" })
	iss := e.issuer + "/tenant"
	get := func(u string) map[string]any {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d", u, resp.StatusCode)
		}
		var m map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	appended := get(iss + "/.well-known/openid-configuration")
	inserted := get(e.issuer + "/.well-known/openid-configuration/tenant")
	rfc8414 := get(e.issuer + "/.well-known/oauth-authorization-server/tenant")
	for k, v := range rfc8414 {
		if a, _ := json.Marshal(appended[k]); string(a) != string(must(json.Marshal(v))) {
			t.Errorf("%s differs from RFC 8414: %s vs %v", k, a, v)
		}
	}
	a1, _ := json.Marshal(appended)
	a2, _ := json.Marshal(inserted)
	mustEqual(t, "both locations", string(a1), string(a2))
	mustEqual(t, "issuer", appended["issuer"], any(iss))
	mustEqual(t, "userinfo_endpoint", appended["userinfo_endpoint"], any(iss+provider.PathUserInfo))
	mustEqual(t, "end_session_endpoint", appended["end_session_endpoint"], any(iss+provider.PathEndSession))
	for _, f := range []struct {
		field, want string
	}{{"id_token_signing_alg_values_supported", "RS256"}, {"subject_types_supported", "public"}, {"claims_supported", "email_verified"},
		{"code_challenge_methods_supported", "S256"}, {"scopes_supported", "openid"}, {"prompt_values_supported", "none"}} {
		list, _ := appended[f.field].([]any)
		if !slices.Contains(list, any(f.want)) {
			t.Errorf("%s = %v, want it to contain %s", f.field, list, f.want)
		}
	}
	if appended["request_uri_parameter_supported"] != false {
		t.Error("request_uri_parameter_supported must be said false (its default is true)")
	}
	// go-oidc accepts it for an issuer with a path.
	if _, err := oidc.NewProvider(context.Background(), iss); err != nil {
		t.Fatalf("go-oidc discovery: %v", err)
	}

	// OIDC off: no OpenID document, no UserInfo, and openid is dropped, not refused.
	off := start(t, storeKinds[0].open(t), func(o *provider.Options) { o.DisableOIDC = true })
	if resp, _ := http.Get(off.issuer + "/.well-known/openid-configuration"); resp.StatusCode != 404 {
		t.Fatalf("openid-configuration with OIDC off: %d", resp.StatusCode)
	}
	user, pw := off.user("bob")
	c, secret, redirect := off.loopbackClient(false)
	code := off.codeFor(off.browser(), authRequest{clientID: c.ID, redirectURI: redirect, state: "s", scope: "openid read", verifier: testVerifier}, user, pw)
	tr := off.postToken(exchangeForm(code, redirect, testVerifier, nil), c.ID, secret)
	if tr.Status != 200 || tr.Scope != "read" {
		t.Fatalf("OIDC off: %d %s scope %q", tr.Status, tr.Error, tr.Scope)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// authorizeOnce sends one authorization request in b's session and returns
// the answer without following it.
func (r *rp) authorizeOnce(b *browser, verifier string, params map[string]string) page {
	var opts []oauth2.AuthCodeOption
	for k, v := range params {
		opts = append(opts, oauth2.SetAuthURLParam(k, v))
	}
	return b.do("GET", r.authURL("st-p", "n-p", verifier, opts...), nil)
}

func callbackError(t *testing.T, issuer string, p page) string {
	t.Helper()
	if p.status != http.StatusFound {
		t.Fatalf("status %d (location %q), want a redirect to the client", p.status, p.location)
	}
	u, _ := url.Parse(p.location)
	mustEqual(t, "state", u.Query().Get("state"), "st-p")
	// RFC 9207: the server advertises the iss parameter, so strict clients
	// reject an error redirect without it (CLIENTS.md).
	mustEqual(t, "iss", u.Query().Get("iss"), issuer)
	return u.Query().Get("error")
}

// TestOIDCPromptAndMaxAge: each prompt value, max_age, id_token_hint,
// login_hint and the nonce rules, over HTTP on both stores.
func TestOIDCPromptAndMaxAge(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		user, pw := e.user("carol")
		other, otherPW := e.user("dave")
		r := e.relyingParty(t)
		v := oauth2.GenerateVerifier()

		// prompt=none without a session: login_required, no page.
		b := e.browser()
		mustEqual(t, "none, signed out", callbackError(t, e.issuer, r.authorizeOnce(b, v, map[string]string{"prompt": "none"})), "login_required")

		// Signed in but never consented: consent_required.
		b.authorize(e.relyingParty(t, "read").authURL("x", "y", v), user, pw) // signs b in through another client
		mustEqual(t, "none, no consent", callbackError(t, e.issuer, r.authorizeOnce(b, v, map[string]string{"prompt": "none"})), "consent_required")

		// After consent, prompt=none is silent and succeeds.
		_, first := r.signIn(t, b, user, pw)
		p := r.authorizeOnce(b, v, map[string]string{"prompt": "none"})
		if p.status != http.StatusFound || !strings.Contains(p.location, "code=") {
			t.Fatalf("prompt=none after consent: %d %s", p.status, p.location)
		}

		// prompt=consent shows the page although consent is remembered.
		p = r.authorizeOnce(b, v, map[string]string{"prompt": "consent"})
		if p.status != 200 || !strings.Contains(p.body, `name="decision"`) {
			t.Fatalf("prompt=consent: %d", p.status)
		}

		// prompt=login (and select_account) send a signed-in user to the
		// login page; signing in again gives a later auth_time.
		for _, pr := range []string{"login", "select_account"} {
			p = r.authorizeOnce(b, v, map[string]string{"prompt": pr})
			if p.status != http.StatusSeeOther || !strings.Contains(p.location, provider.PathLogin) {
				t.Fatalf("prompt=%s: %d %s", pr, p.status, p.location)
			}
		}
		e.clock.Advance(2 * time.Minute)
		_, again := r.signIn(t, b, user, pw, oauth2.SetAuthURLParam("prompt", "login"))
		if claimsOf(t, again).AuthTime != claimsOf(t, first).AuthTime+120 {
			t.Fatalf("auth_time after prompt=login = %d, first %d", claimsOf(t, again).AuthTime, claimsOf(t, first).AuthTime)
		}

		// max_age: an authentication 5 minutes old is too old for 60s, fine for 600s.
		e.clock.Advance(5 * time.Minute)
		p = r.authorizeOnce(b, v, map[string]string{"max_age": "60"})
		if p.status != http.StatusSeeOther || !strings.Contains(p.location, provider.PathLogin) {
			t.Fatalf("max_age=60: %d %s", p.status, p.location)
		}
		mustEqual(t, "none with max_age exceeded", callbackError(t, e.issuer, r.authorizeOnce(b, v, map[string]string{"max_age": "60", "prompt": "none"})), "login_required")
		p = r.authorizeOnce(b, v, map[string]string{"max_age": "600"})
		if p.status != http.StatusFound || !strings.Contains(p.location, "code=") {
			t.Fatalf("max_age=600: %d %s", p.status, p.location)
		}
		_, fresh := r.signIn(t, b, user, pw, oauth2.SetAuthURLParam("max_age", "60"))
		if e.clock.Now().Unix()-claimsOf(t, fresh).AuthTime > 60 {
			t.Fatal("max_age=60 sign-in returned an old auth_time")
		}

		// id_token_hint naming someone else: with prompt=none, login_required.
		b2 := e.browser()
		tokOther, _ := r.signIn(t, b2, other, otherPW)
		hint := tokOther.Extra("id_token").(string)
		mustEqual(t, "hint of another user", callbackError(t, e.issuer, r.authorizeOnce(b, v, map[string]string{"prompt": "none", "id_token_hint": hint})), "login_required")
		p = r.authorizeOnce(b2, v, map[string]string{"prompt": "none", "id_token_hint": hint})
		if p.status != http.StatusFound || !strings.Contains(p.location, "code=") {
			t.Fatalf("hint of the signed-in user: %d %s", p.status, p.location)
		}
		mustEqual(t, "forged hint", callbackError(t, e.issuer, r.authorizeOnce(b, v, map[string]string{"id_token_hint": "a.b.c"})), "invalid_request")

		// Bad prompt combinations and values, an over-long nonce, request objects.
		mustEqual(t, "none with login", callbackError(t, e.issuer, r.authorizeOnce(b, v, map[string]string{"prompt": "none login"})), "invalid_request")
		mustEqual(t, "unknown prompt", callbackError(t, e.issuer, r.authorizeOnce(b, v, map[string]string{"prompt": "bogus"})), "invalid_request")
		mustEqual(t, "bad max_age", callbackError(t, e.issuer, r.authorizeOnce(b, v, map[string]string{"max_age": "-1"})), "invalid_request")
		mustEqual(t, "long nonce", callbackError(t, e.issuer, r.authorizeOnce(b, v, map[string]string{"nonce": strings.Repeat("n", 513)})), "invalid_request")
		mustEqual(t, "request object", callbackError(t, e.issuer, r.authorizeOnce(b, v, map[string]string{"request": "eyJ.x.y"})), "request_not_supported")

		// login_hint pre-fills the login page.
		b3 := e.browser()
		p = b3.do("GET", r.authURL("s", "n", v, oauth2.SetAuthURLParam("login_hint", "carol")), nil)
		p = b3.do("GET", p.location, nil)
		if !strings.Contains(p.body, `name="username" value="carol"`) {
			t.Fatal("login_hint did not pre-fill the username")
		}

		// A nonce is echoed, and a code redeemed twice never yields a
		// second ID token carrying it (the replay revokes the grant).
		cb := b.authorize(r.authURL("s", "same-nonce", v), user, pw)
		code := cb.Query().Get("code")
		if _, err := r.cfg.Exchange(context.Background(), code, oauth2.VerifierOption(v)); err != nil {
			t.Fatal(err)
		}
		if _, err := r.cfg.Exchange(context.Background(), code, oauth2.VerifierOption(v)); err == nil {
			t.Fatal("a replayed code gave a second ID token")
		}
	})
}

// TestOIDCLogout: RP-initiated logout with a registered and an
// unregistered post_logout_redirect_uri, and without id_token_hint.
func TestOIDCLogout(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		user, pw := e.user("erin")
		r := e.relyingParty(t)
		v := oauth2.GenerateVerifier()
		signedIn := func(b *browser) bool {
			return callbackError0(r.authorizeOnce(b, v, map[string]string{"prompt": "none"})) != "login_required"
		}
		b := e.browser()
		tok, _ := r.signIn(t, b, user, pw)
		hint := tok.Extra("id_token").(string)
		end := e.issuer + provider.PathEndSession

		// Unregistered target: refused with a page, nobody signed out.
		p := b.do("GET", end+"?"+url.Values{"id_token_hint": {hint}, "post_logout_redirect_uri": {"https://evil.example/x"}, "state": {"s1"}}.Encode(), nil)
		if p.status != http.StatusBadRequest || p.location != "" || !signedIn(b) {
			t.Fatalf("unregistered post_logout_redirect_uri: %d %q signed in %v", p.status, p.location, signedIn(b))
		}
		// A target registered by another client is unregistered for this one.
		// Registered target with the user's ID token: signed out at once, back with state.
		p = b.do("GET", end+"?"+url.Values{"id_token_hint": {hint}, "post_logout_redirect_uri": {"https://rp.example.com/bye"}, "state": {"s2"}}.Encode(), nil)
		if p.status != http.StatusFound || p.location != "https://rp.example.com/bye?state=s2" {
			t.Fatalf("registered post_logout_redirect_uri: %d %q", p.status, p.location)
		}
		if signedIn(b) {
			t.Fatal("still signed in after logout")
		}
		// The grant's refresh token is untouched: logout ends the session.
		// Without a hint, the user confirms first.
		r.signIn(t, b, user, pw)
		p = b.do("GET", end+"?"+url.Values{"client_id": {r.client.ID}, "post_logout_redirect_uri": {"https://rp.example.com/bye"}}.Encode(), nil)
		if p.status != 200 || !strings.Contains(p.body, `value="logout"`) || !signedIn(b) {
			t.Fatalf("logout without hint: %d, signed in %v", p.status, signedIn(b))
		}
		f := formFields(p.body)
		f.Set("decision", "logout")
		p = b.do("POST", end, f)
		if p.status != http.StatusFound || p.location != "https://rp.example.com/bye" || signedIn(b) {
			t.Fatalf("confirmed logout: %d %q", p.status, p.location)
		}
		// A forged POST without the CSRF token only shows the page again.
		r.signIn(t, b, user, pw)
		p = b.do("POST", end, url.Values{"decision": {"logout"}})
		if p.status != 200 || !signedIn(b) {
			t.Fatalf("forged logout POST: %d signed in %v", p.status, signedIn(b))
		}
		// A repeated parameter is refused, nobody signed out.
		p = b.do("GET", end+"?"+url.Values{"id_token_hint": {hint}, "post_logout_redirect_uri": {"https://rp.example.com/bye", "https://rp.example.com/bye"}}.Encode(), nil)
		if p.status != http.StatusBadRequest || p.location != "" || !strings.Contains(p.body, "post_logout_redirect_uri") || !signedIn(b) {
			t.Fatalf("repeated post_logout_redirect_uri: %d %q signed in %v", p.status, p.location, signedIn(b))
		}
	})
}

func callbackError0(p page) string {
	u, err := url.Parse(p.location)
	if err != nil {
		return ""
	}
	return u.Query().Get("error")
}

// TestUserInfoAcceptsOnlyUserInfoTokens pins which access tokens UserInfo
// takes: ours, with openid (hence its audience), live; and that the
// UserInfo audience does not make a token valid at another resource.
func TestUserInfoAcceptsOnlyUserInfoTokens(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		user, pw := e.user("frank")
		r := e.relyingParty(t)
		b := e.browser()
		tok, _ := r.signIn(t, b, user, pw, oauth2.SetAuthURLParam("resource", "https://mcp.example.com/mcp"))
		call := func(method, auth, query string) (int, string) {
			req, _ := http.NewRequest(method, e.issuer+provider.PathUserInfo+query, nil)
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, resp.Header.Get("WWW-Authenticate") + " " + string(body)
		}
		if st, body := call("GET", "Bearer "+tok.AccessToken, ""); st != 200 || !strings.Contains(body, `"sub"`) {
			t.Fatalf("GET with an openid token: %d %s", st, body)
		}
		if st, _ := call("POST", "Bearer "+tok.AccessToken, ""); st != 200 {
			t.Fatalf("POST with an openid token: %d", st)
		}
		// Identity claims only, and only under their scopes.
		r2 := e.relyingParty(t, "openid")
		tok2, _ := r2.signIn(t, b, user, pw)
		if _, body := call("GET", "Bearer "+tok2.AccessToken, ""); strings.Contains(body, "preferred_username") || strings.Contains(body, "email") {
			t.Fatalf("claims without profile/email scopes: %s", body)
		}
		aud := audience(t, tok.AccessToken)
		if slices.Contains(aud, e.issuer+"/api") || slices.Contains(aud, "https://other.example.com") {
			t.Fatalf("the UserInfo audience widened the token: %v", aud)
		}

		// A token without openid (an API token) is not a UserInfo token.
		c, secret, redirect := e.loopbackClient(false)
		code := e.codeFor(b, authRequest{clientID: c.ID, redirectURI: redirect, state: "s", scope: "read", verifier: testVerifier}, user, pw)
		api := e.postToken(exchangeForm(code, redirect, testVerifier, nil), c.ID, secret)
		cc := e.postToken(url.Values{"grant_type": {"client_credentials"}}, c.ID, secret)
		idToken := tok.Extra("id_token").(string)
		for name, auth := range map[string]string{
			"no token": "", "API token": "Bearer " + api.AccessToken, "ID token": "Bearer " + idToken,
			"garbage": "Bearer xyz", "basic": "Basic Zm9vOmJhcg==", "client_credentials": "Bearer " + cc.AccessToken,
		} {
			if st, h := call("GET", auth, ""); st != 401 || !strings.Contains(h, "invalid_token") {
				t.Errorf("%s: %d %s, want 401 invalid_token", name, st, h)
			}
		}
		// Never from the query string.
		if st, _ := call("GET", "", "?access_token="+url.QueryEscape(tok.AccessToken)); st != 400 {
			t.Errorf("token in the query: %d, want 400", st)
		}
		// Revoking the token or the grant ends it at UserInfo.
		rv := postForm(t, e.issuer+provider.PathRevoke, url.Values{"token": {tok.AccessToken}}, r.client.ID, r.cfg.ClientSecret)
		if rv.Status != 200 {
			t.Fatalf("revoke: %d", rv.Status)
		}
		if st, _ := call("GET", "Bearer "+tok.AccessToken, ""); st != 401 {
			t.Fatalf("revoked token at UserInfo: %d", st)
		}
		postForm(t, e.issuer+provider.PathRevoke, url.Values{"token": {tok2.RefreshToken}}, r2.client.ID, r2.cfg.ClientSecret)
		if st, _ := call("GET", "Bearer "+tok2.AccessToken, ""); st != 401 {
			t.Fatalf("token of a revoked grant at UserInfo: %d", st)
		}
		// The published key set holds the ID-token key beside the access-token key.
		resp, _ := http.Get(e.issuer + provider.PathJWKS)
		var set struct {
			Keys []struct {
				Alg string `json:"alg"`
			} `json:"keys"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&set)
		resp.Body.Close()
		var algs []string
		for _, k := range set.Keys {
			algs = append(algs, k.Alg)
		}
		if !slices.Contains(algs, "RS256") || !slices.Contains(algs, "ES256") {
			t.Fatalf("JWKS algorithms %v", algs)
		}
	})
}

// TestOIDCRegistration: dynamic registration takes the OpenID Connect
// fields and checks them; a self-registered client gets no silent
// login_required redirect before sign-in (RFC 9700 §4.11.2), a page instead.
func TestOIDCRegistration(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		register := func(body string) (int, map[string]any) { return registerJSON(t, e, body) }
		st, m := register(`{"redirect_uris":["https://rp.example.com/cb"],"post_logout_redirect_uris":["https://rp.example.com/bye"],"id_token_signed_response_alg":"EdDSA","client_name":"RP"}`)
		if st != 201 || m["id_token_signed_response_alg"] != "EdDSA" {
			t.Fatalf("registration: %d %v", st, m)
		}
		for _, bad := range []string{
			`{"redirect_uris":["https://rp.example.com/cb"],"id_token_signed_response_alg":"none"}`,
			`{"redirect_uris":["https://rp.example.com/cb"],"id_token_signed_response_alg":"HS256"}`,
			`{"redirect_uris":["https://rp.example.com/cb"],"post_logout_redirect_uris":["javascript:alert(1)"]}`,
		} {
			if st, m := register(bad); st != 400 || m["error"] != "invalid_client_metadata" {
				t.Errorf("%s: %d %v", bad, st, m)
			}
		}
		q := url.Values{"response_type": {"code"}, "client_id": {m["client_id"].(string)}, "redirect_uri": {"https://rp.example.com/cb"},
			"scope": {"openid"}, "state": {"s"}, "prompt": {"none"}, "code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"}}
		p := e.browser().do("GET", provider.PathAuthorize+"?"+q.Encode(), nil)
		if p.status != http.StatusBadRequest || p.location != "" || !strings.Contains(p.body, "login_required") {
			t.Fatalf("prompt=none for a self-registered client before sign-in: %d %q", p.status, p.location)
		}
	})
}

// TestUserInfoInsufficientScope: a token whose audience names UserInfo but
// whose scope lacks openid reaches UserInfo's scope check when an operator
// lists the UserInfo URL among the protected resources (a resource is
// requested by URL, RFC 8707). It is answered 403 with RFC 6750 §3.1's
// challenge naming the scope needed, never 200 and never invalid_token.
func TestUserInfoInsufficientScope(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), func(o *provider.Options) {
			o.Resources = append(o.Resources, o.Issuer+provider.PathUserInfo)
		})
		userInfo := e.issuer + provider.PathUserInfo
		user, pw := e.user("scant")
		b := e.browser()
		c, secret, redirect := e.loopbackClient(false)
		code := e.codeFor(b, authRequest{clientID: c.ID, redirectURI: redirect, state: "s", scope: "read", verifier: testVerifier, resources: []string{userInfo}}, user, pw)
		tr := e.postToken(exchangeForm(code, redirect, testVerifier, nil), c.ID, secret)
		mustEqual(t, "exchange", tr.Status, 200)
		svc, svcSecret := e.client(store.ClientMetadata{GrantTypes: []string{oauth.GrantClientCredentials}, Scopes: []string{"read"}})
		cc := e.postToken(url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}, "resource": {userInfo}}, svc.ID, svcSecret)
		mustEqual(t, "client_credentials", cc.Status, 200)
		for name, tok := range map[string]string{"user token without openid": tr.AccessToken, "client_credentials token": cc.AccessToken} {
			if !slices.Contains(audience(t, tok), userInfo) {
				t.Fatalf("%s: audience %v lacks UserInfo", name, audience(t, tok))
			}
			req, _ := http.NewRequest("GET", userInfo, nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			wa := resp.Header.Get("WWW-Authenticate")
			if resp.StatusCode != http.StatusForbidden || !strings.HasPrefix(wa, "Bearer ") ||
				!strings.Contains(wa, `error="insufficient_scope"`) || !strings.Contains(wa, `scope="openid"`) ||
				!strings.Contains(string(body), `"insufficient_scope"`) {
				t.Errorf("%s: %d WWW-Authenticate %q body %s, want 403 insufficient_scope naming openid", name, resp.StatusCode, wa, body)
			}
		}
	})
}
