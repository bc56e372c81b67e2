package tests

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/store"
)

// lockedBuffer collects the server's log lines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestSecretsNeverLogged runs flows that log (including failures, replays
// and reuse) with debug logging on, then looks for every secret in the log.
func TestSecretsNeverLogged(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		var logs lockedBuffer
		e := start(t, open(t), func(o *provider.Options) {
			o.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			o.RefreshGrace = 0
		})
		user, pw := e.user("quiet")
		c, secret, redirect := e.loopbackClient(false)
		var secrets []string
		keep := func(s ...string) {
			for _, v := range s {
				if v != "" {
					secrets = append(secrets, v)
				}
			}
		}
		keep(pw, secret)

		code := e.codeFor(e.browser(), authRequest{clientID: c.ID, redirectURI: redirect, state: "s", verifier: testVerifier}, user, pw)
		tr := e.postToken(exchangeForm(code, redirect, testVerifier, nil), c.ID, secret)
		mustEqual(t, "exchange", tr.Status, 200)
		keep(code, tr.AccessToken, tr.RefreshToken, testVerifier)
		mustEqual(t, "code replay", e.postToken(exchangeForm(code, redirect, testVerifier, nil), c.ID, secret).Error, "invalid_grant")

		code2 := e.codeFor(e.browser(), authRequest{clientID: c.ID, redirectURI: redirect, state: "s", verifier: testVerifier}, user, pw)
		tr2 := e.postToken(exchangeForm(code2, redirect, testVerifier, nil), c.ID, secret)
		keep(code2, tr2.AccessToken, tr2.RefreshToken)
		r := e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr2.RefreshToken}}, c.ID, secret)
		keep(r.AccessToken, r.RefreshToken)
		mustEqual(t, "refresh reuse", e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr2.RefreshToken}}, c.ID, secret).Error, "invalid_grant")

		mustEqual(t, "wrong secret", e.postToken(url.Values{"grant_type": {"client_credentials"}}, c.ID, "authz_cs_wrong-guess").Error, "invalid_client")
		e.browser().loginAttempt(user, "a-wrong-password-guess")
		keep("authz_cs_wrong-guess", "a-wrong-password-guess")

		status, reg := e.register(t, map[string]any{"redirect_uris": []string{"https://app.example.com/cb"}})
		mustEqual(t, "register", status, 201)
		keep(reg["client_secret"].(string), reg["registration_access_token"].(string))
		jsonCall(t, "GET", reg["registration_client_uri"].(string), "authz_reg_wrong-token", nil)
		keep("authz_reg_wrong-token")

		postForm(t, e.issuer+provider.PathRevoke, url.Values{"token": {tr.AccessToken}}, c.ID, secret)
		e.introspect(t, c.ID, secret, r.AccessToken)

		// The paths the flows above miss: the browser's session and CSRF
		// cookies, an RFC 7592 update carrying the client secret (and one
		// with the token it spent), a wrong initial access token, refresh
		// tokens at introspection and revocation, and bearer tokens at
		// UserInfo.
		b := e.browser()
		b.signIn(user, pw)
		u, _ := url.Parse(e.issuer)
		if len(b.http.Jar.Cookies(u)) == 0 {
			t.Fatal("no session cookie after sign-in")
		}
		for _, ck := range b.http.Jar.Cookies(u) {
			keep(ck.Value)
		}
		regID, regURI, regTok := reg["client_id"].(string), reg["registration_client_uri"].(string), reg["registration_access_token"].(string)
		upd := map[string]any{"client_id": regID, "client_secret": reg["client_secret"], "redirect_uris": []string{"https://app.example.com/cb"}}
		status, got, _ := jsonCall(t, "PUT", regURI, regTok, upd)
		mustEqual(t, "RFC 7592 update", status, 200)
		keep(got["registration_access_token"].(string))
		status, _, _ = jsonCall(t, "PUT", regURI, regTok, upd)
		mustEqual(t, "RFC 7592 update with the spent token", status, 401)
		upd["client_secret"] = "authz_cs_not-the-secret"
		status, _, _ = jsonCall(t, "PUT", regURI, got["registration_access_token"].(string), upd)
		mustEqual(t, "RFC 7592 update with a wrong secret", status, 400)
		keep("authz_cs_not-the-secret")
		status, _, _ = jsonCall(t, "POST", e.issuer+provider.PathRegister, "authz_iat_wrong-token", map[string]any{"redirect_uris": []string{"https://app.example.com/cb"}})
		mustEqual(t, "registration with a wrong initial access token", status, 201)
		keep("authz_iat_wrong-token")
		e.introspect(t, c.ID, secret, r.RefreshToken)
		postForm(t, e.issuer+provider.PathRevoke, url.Values{"token": {r.RefreshToken}}, c.ID, secret)
		for _, bearer := range []string{r.AccessToken, tr2.AccessToken + "x"} {
			req, _ := http.NewRequest("GET", e.issuer+provider.PathUserInfo, nil)
			req.Header.Set("Authorization", "Bearer "+bearer)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}

		out := logs.String()
		if out == "" {
			t.Fatal("nothing was logged: the test would prove nothing")
		}
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("the log contains a secret (%.12s…)", s)
			}
		}
	})
}
