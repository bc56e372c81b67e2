package tests

import (
	"bytes"
	"log/slog"
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
