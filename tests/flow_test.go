package tests

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/store"
)

func decodeSegment(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

// loopbackClient registers a client with a loopback redirect.
func (e *env) loopbackClient(public bool) (store.Client, string, string) {
	redirect := "http://127.0.0.1/callback"
	m := store.ClientMetadata{RedirectURIs: []string{redirect}}
	if public {
		m.TokenEndpointAuthMethod = oauth.AuthNone
	}
	c, secret := e.client(m)
	return c, secret, fmt.Sprintf("http://127.0.0.1:%d/callback", freePort(e.t))
}

// firstTokens is the usual start of a refresh test: a new user signs in
// through the pages, authorizes a new confidential loopback client, and
// the code is exchanged (200 required). It returns the client, its secret,
// the redirect URI used and the token response.
func (e *env) firstTokens(t testing.TB, username, state string) (store.Client, string, string, tokenResp) {
	t.Helper()
	user, pw := e.user(username)
	c, secret, redirect := e.loopbackClient(false)
	code := e.codeFor(e.browser(), authRequest{clientID: c.ID, redirectURI: redirect, state: state, verifier: testVerifier}, user, pw)
	tr := e.postToken(exchangeForm(code, redirect, testVerifier, nil), c.ID, secret)
	mustEqual(t, "code exchange", tr.Status, 200)
	return c, secret, redirect, tr
}

// codeFor runs the browser part of the flow and returns the code.
func (e *env) codeFor(b *browser, req authRequest, username, password string) string {
	e.t.Helper()
	u := b.authorize(req.url(e.issuer), username, password)
	q := u.Query()
	if q.Get("error") != "" {
		e.t.Fatalf("authorization error: %s %s", q.Get("error"), q.Get("error_description"))
	}
	mustEqual(e.t, "state", q.Get("state"), req.state)
	mustEqual(e.t, "iss", q.Get("iss"), e.issuer)
	if q.Get("code") == "" {
		e.t.Fatalf("no code in %s", u)
	}
	return q.Get("code")
}

func exchangeForm(code, redirect, verifier string, extra url.Values) url.Values {
	f := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect}, "code_verifier": {verifier}}
	for k, v := range extra {
		f[k] = v
	}
	return f
}

// TestFlowWithOAuth2Library runs the whole flow for a confidential and a
// public client with golang.org/x/oauth2 as the client, as Go services do.
func TestFlowWithOAuth2Library(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		user, pw := e.user("alice")
		for _, public := range []bool{false, true} {
			t.Run(fmt.Sprintf("public=%v", public), func(t *testing.T) {
				c, secret, redirect := e.loopbackClient(public)
				cfg := oauth2.Config{
					ClientID: c.ID, ClientSecret: secret, RedirectURL: redirect, Scopes: []string{"read"},
					Endpoint: oauth2.Endpoint{AuthURL: e.issuer + provider.PathAuthorize, TokenURL: e.issuer + provider.PathToken, AuthStyle: oauth2.AuthStyleInHeader},
				}
				if public {
					cfg.Endpoint.AuthStyle = oauth2.AuthStyleInParams
				}
				verifier := oauth2.GenerateVerifier()
				authURL := cfg.AuthCodeURL("st-1", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", "https://mcp.example.com/mcp"))
				b := e.browser()
				u := b.authorize(authURL, user, pw)
				mustEqual(t, "state", u.Query().Get("state"), "st-1")
				mustEqual(t, "iss", u.Query().Get("iss"), e.issuer)
				tok, err := cfg.Exchange(context.Background(), u.Query().Get("code"), oauth2.VerifierOption(verifier))
				if err != nil {
					t.Fatalf("exchange: %v", err)
				}
				if tok.RefreshToken == "" || tok.AccessToken == "" || tok.TokenType != "Bearer" {
					t.Fatalf("token = %+v", tok)
				}
				cl := claims(t, tok.AccessToken)
				mustEqual(t, "iss", cl["iss"].(string), e.issuer)
				mustEqual(t, "client_id", cl["client_id"].(string), c.ID)
				mustEqual(t, "scope", cl["scope"].(string), "read")
				if !slices.Equal(audience(t, tok.AccessToken), []string{"https://mcp.example.com/mcp"}) {
					t.Fatalf("aud = %v", audience(t, tok.AccessToken))
				}
				for _, k := range []string{"sub", "jti", "iat", "exp"} {
					if cl[k] == nil {
						t.Fatalf("claim %s missing: %v", k, cl)
					}
				}
				// The library refreshes when the token is about to expire.
				tok.Expiry = time.Now().Add(-time.Minute)
				next, err := cfg.TokenSource(context.Background(), tok).Token()
				if err != nil {
					t.Fatalf("refresh: %v", err)
				}
				if next.RefreshToken == tok.RefreshToken || next.AccessToken == tok.AccessToken {
					t.Fatal("refresh did not rotate")
				}
			})
		}
	})
}

// TestTokenResponseHeaders: every token response is JSON with
// Cache-Control: no-store (RFC 6749 §5.1, §5.2), successes of each grant
// and errors alike, and names its lifetime in expires_in, which
// golang.org/x/oauth2 needs to refresh before the token runs out.
func TestTokenResponseHeaders(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		c, secret, _, tr := e.firstTokens(t, "bob", "s")
		svc, svcSecret := e.client(store.ClientMetadata{GrantTypes: []string{oauth.GrantClientCredentials}, Scopes: []string{"read"}})
		ttl := int(provider.DefaultAccessTokenTTL / time.Second)
		check := func(what string, r tokenResp, status int) {
			t.Helper()
			mustEqual(t, what+": status", r.Status, status)
			mustEqual(t, what+": Cache-Control", r.Header.Get("Cache-Control"), "no-store")
			mustEqual(t, what+": Pragma", r.Header.Get("Pragma"), "no-cache")
			if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
				t.Fatalf("%s: content type %q", what, r.Header.Get("Content-Type"))
			}
			if status == 200 {
				mustEqual(t, what+": expires_in", r.ExpiresIn, ttl)
				mustEqual(t, what+": token_type", r.TokenType, "Bearer")
			}
		}
		check("code exchange", tr, 200)
		check("refresh", e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}}, c.ID, secret), 200)
		check("client_credentials", e.postToken(url.Values{"grant_type": {"client_credentials"}}, svc.ID, svcSecret), 200)
		// Errors too (RFC 6749 §5.2).
		bad := e.postToken(url.Values{"grant_type": {"password"}}, c.ID, secret)
		mustEqual(t, "error", bad.Error, "unsupported_grant_type")
		check("error", bad, 400)
		check("invalid_grant", e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"authz_rt_unknown"}}, c.ID, secret), 400)
		check("invalid_client", e.postToken(url.Values{"grant_type": {"client_credentials"}}, svc.ID, "authz_cs_wrong"), 401)
	})
}

// TestResourceIndicators covers RFC 8707 at authorize, token and refresh.
func TestResourceIndicators(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		user, pw := e.user("carol")
		c, secret, redirect := e.loopbackClient(false)
		mcp, other, api := "https://mcp.example.com/mcp", "https://other.example.com", e.issuer+"/api"

		type step struct {
			tokenResources []string
			wantAud        []string
			wantErr        string
		}
		cases := []struct {
			name          string
			authResources []string
			step          step
		}{
			{"none anywhere: first configured resource", nil, step{nil, []string{api}, ""}},
			{"valid at authorize", []string{mcp}, step{nil, []string{mcp}, ""}},
			{"at authorize and the same at token", []string{mcp}, step{[]string{mcp}, []string{mcp}, ""}},
			{"only at token, not authorized", nil, step{[]string{mcp}, nil, "invalid_target"}},
			{"mismatch at token", []string{mcp}, step{[]string{other}, nil, "invalid_target"}},
			{"two then narrow to one", []string{mcp, other}, step{[]string{other}, []string{other}, ""}},
			{"two and both", []string{mcp, other}, step{nil, []string{mcp, other}, ""}},
			{"normalised case and default port", []string{"HTTPS://MCP.example.com:443/mcp"}, step{nil, []string{mcp}, ""}},
		}
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				state := fmt.Sprintf("s%d", i)
				code := e.codeFor(e.browser(), authRequest{clientID: c.ID, redirectURI: redirect, state: state, verifier: testVerifier, resources: tc.authResources}, user, pw)
				tr := e.postToken(exchangeForm(code, redirect, testVerifier, url.Values{"resource": tc.step.tokenResources}), c.ID, secret)
				if tc.step.wantErr != "" {
					mustEqual(t, "error", tr.Error, tc.step.wantErr)
					return
				}
				mustEqual(t, "status", tr.Status, 200)
				if got := audience(t, tr.AccessToken); !slices.Equal(got, tc.step.wantAud) {
					t.Fatalf("aud = %v, want %v", got, tc.step.wantAud)
				}
			})
		}

		t.Run("refresh with the same, a narrower, no, and a different resource", func(t *testing.T) {
			code := e.codeFor(e.browser(), authRequest{clientID: c.ID, redirectURI: redirect, state: "r", verifier: testVerifier, resources: []string{mcp, other}}, user, pw)
			tr := e.postToken(exchangeForm(code, redirect, testVerifier, nil), c.ID, secret)
			mustEqual(t, "status", tr.Status, 200)
			rt := tr.RefreshToken
			refresh := func(res []string) tokenResp {
				r := e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "resource": res}, c.ID, secret)
				if r.Status == 200 {
					rt = r.RefreshToken
				}
				return r
			}
			r := refresh([]string{mcp})
			mustEqual(t, "status", r.Status, 200)
			if got := audience(t, r.AccessToken); !slices.Equal(got, []string{mcp}) {
				t.Fatalf("narrowed aud = %v", got)
			}
			r = refresh(nil)
			if got := audience(t, r.AccessToken); !slices.Equal(got, []string{mcp, other}) {
				t.Fatalf("no resource at refresh: aud = %v, want the whole grant", got)
			}
			r = refresh([]string{api})
			mustEqual(t, "error", r.Error, "invalid_target")
			// A rejected refresh wrote nothing: the token still works.
			r = refresh([]string{other})
			mustEqual(t, "status", r.Status, 200)
		})

		t.Run("unknown resource at authorize is an invalid_target redirect", func(t *testing.T) {
			u := e.browser().authorize(authRequest{clientID: c.ID, redirectURI: redirect, state: "bad", verifier: testVerifier, resources: []string{"https://evil.example.com"}}.url(e.issuer), user, pw)
			mustEqual(t, "error", u.Query().Get("error"), "invalid_target")
			mustEqual(t, "state", u.Query().Get("state"), "bad")
			mustEqual(t, "iss", u.Query().Get("iss"), e.issuer)
		})
		t.Run("resource with a fragment", func(t *testing.T) {
			u := e.browser().authorize(authRequest{clientID: c.ID, redirectURI: redirect, state: "f", verifier: testVerifier, resources: []string{mcp + "#x"}}.url(e.issuer), user, pw)
			mustEqual(t, "error", u.Query().Get("error"), "invalid_target")
		})
	})
}

// TestCodeRules: single use (replay revokes the grant), PKCE, redirect_uri
// and client binding at the token endpoint.
func TestCodeRules(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		user, pw := e.user("dave")
		a, aSecret, redirect := e.loopbackClient(false)
		bc, bSecret, _ := e.loopbackClient(false)
		newCode := func() string {
			return e.codeFor(e.browser(), authRequest{clientID: a.ID, redirectURI: redirect, state: "x", verifier: testVerifier}, user, pw)
		}

		t.Run("redirect_uri sent to authorize must be sent again", func(t *testing.T) {
			code := newCode()
			f := exchangeForm(code, redirect, testVerifier, nil)
			f.Del("redirect_uri")
			r := e.postToken(f, a.ID, aSecret)
			mustEqual(t, "without redirect_uri", r.Error, "invalid_grant")
		})
		t.Run("replay fails and revokes the grant of the first redemption", func(t *testing.T) {
			code := newCode()
			first := e.postToken(exchangeForm(code, redirect, testVerifier, nil), a.ID, aSecret)
			mustEqual(t, "first status", first.Status, 200)
			again := e.postToken(exchangeForm(code, redirect, testVerifier, nil), a.ID, aSecret)
			mustEqual(t, "replay error", again.Error, "invalid_grant")
			r := e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first.RefreshToken}}, a.ID, aSecret)
			mustEqual(t, "refresh after replay", r.Error, "invalid_grant")
		})
		// spent: whether the failed attempt used the code up. A request
		// that fails before the code is looked at (bad client credentials,
		// malformed request) must not let anyone burn someone else's code.
		cases := []struct {
			name    string
			form    func(code string) url.Values
			id, sec string
			want    string
			spent   bool
		}{
			{"wrong verifier", func(c string) url.Values {
				return exchangeForm(c, redirect, "wrong-verifier-wrong-verifier-wrong-verifier-0123", nil)
			}, a.ID, aSecret, "invalid_grant", true},
			{"missing verifier", func(c string) url.Values {
				f := exchangeForm(c, redirect, testVerifier, nil)
				f.Del("code_verifier")
				return f
			}, a.ID, aSecret, "invalid_request", false},
			{"redirect_uri differs", func(c string) url.Values {
				return exchangeForm(c, "http://127.0.0.1:1/other", testVerifier, nil)
			}, a.ID, aSecret, "invalid_grant", true},
			{"client B presents client A's code", func(c string) url.Values {
				return exchangeForm(c, redirect, testVerifier, nil)
			}, bc.ID, bSecret, "invalid_grant", true},
			{"wrong client secret", func(c string) url.Values {
				return exchangeForm(c, redirect, testVerifier, nil)
			}, a.ID, "authz_cs_wrong", "invalid_client", false},
			{"repeated parameter", func(c string) url.Values {
				f := exchangeForm(c, redirect, testVerifier, nil)
				f.Add("code", c)
				return f
			}, a.ID, aSecret, "invalid_request", false},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				code := newCode()
				tr := e.postToken(tc.form(code), tc.id, tc.sec)
				mustEqual(t, "error", tr.Error, tc.want)
				if tc.want == "invalid_client" {
					mustEqual(t, "status", tr.Status, 401)
					if tr.Header.Get("WWW-Authenticate") == "" {
						t.Fatal("401 without WWW-Authenticate")
					}
				}
				again := e.postToken(exchangeForm(code, redirect, testVerifier, nil), a.ID, aSecret)
				if tc.spent {
					// The code was looked at and is spent: the right client
					// cannot use it after, and its grant is revoked.
					mustEqual(t, "code after failed attempt", again.Error, "invalid_grant")
				} else {
					mustEqual(t, "code after rejected request", again.Status, 200)
				}
			})
		}
		t.Run("credentials in header and body", func(t *testing.T) {
			f := exchangeForm(newCode(), redirect, testVerifier, url.Values{"client_id": {a.ID}, "client_secret": {aSecret}})
			tr := e.postToken(f, a.ID, aSecret)
			mustEqual(t, "error", tr.Error, "invalid_request")
		})
		t.Run("expired code", func(t *testing.T) {
			code := newCode()
			e.clock.Advance(61 * time.Second)
			tr := e.postToken(exchangeForm(code, redirect, testVerifier, nil), a.ID, aSecret)
			mustEqual(t, "error", tr.Error, "invalid_grant")
		})
	})
}

// TestAuthorizeErrors: what is shown as a page and what is redirected.
func TestAuthorizeErrors(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		user, pw := e.user("erin")
		c, _, redirect := e.loopbackClient(true)
		b := e.browser()
		// Sign in once so every request below reaches the checks.
		e.codeFor(b, authRequest{clientID: c.ID, redirectURI: redirect, state: "login", verifier: testVerifier, scope: "read"}, user, pw)

		pageCases := []struct {
			name string
			q    url.Values
		}{
			{"unknown client", url.Values{"client_id": {"nope"}, "redirect_uri": {redirect}}},
			{"missing client", url.Values{"redirect_uri": {redirect}}},
			{"unregistered redirect", url.Values{"client_id": {c.ID}, "redirect_uri": {"https://evil.example.com/cb"}}},
			{"loopback with another path", url.Values{"client_id": {c.ID}, "redirect_uri": {"http://127.0.0.1:5000/other"}}},
			{"missing redirect with a loopback registration", url.Values{"client_id": {c.ID}}},
			{"javascript scheme", url.Values{"client_id": {c.ID}, "redirect_uri": {"javascript:alert(1)"}}},
			{"data scheme", url.Values{"client_id": {c.ID}, "redirect_uri": {"data:text/html,hi"}}},
			{"repeated redirect_uri", url.Values{"client_id": {c.ID}, "redirect_uri": {redirect, redirect}}},
			{"repeated client_id", url.Values{"client_id": {c.ID, c.ID}, "redirect_uri": {redirect}}},
		}
		for _, tc := range pageCases {
			t.Run("page/"+tc.name, func(t *testing.T) {
				tc.q.Set("response_type", "code")
				tc.q.Set("state", "st")
				p := b.do("GET", provider.PathAuthorize+"?"+tc.q.Encode(), nil)
				mustEqual(t, "status", p.status, 400)
				if p.location != "" {
					t.Fatalf("redirected to %q", p.location)
				}
				if !strings.Contains(p.header.Get("Content-Type"), "text/html") {
					t.Fatalf("content type %q", p.header.Get("Content-Type"))
				}
			})
		}

		ok := authRequest{clientID: c.ID, redirectURI: redirect, state: "a b&c=d", verifier: testVerifier}
		redirectCases := []struct {
			name  string
			q     func(url.Values)
			error string
		}{
			{"response_type token", func(q url.Values) { q.Set("response_type", "token") }, "unsupported_response_type"},
			{"response_type missing", func(q url.Values) { q.Del("response_type") }, "invalid_request"},
			{"no code_challenge", func(q url.Values) { q.Del("code_challenge") }, "invalid_request"},
			{"plain method", func(q url.Values) { q.Set("code_challenge_method", "plain") }, "invalid_request"},
			{"missing method", func(q url.Values) { q.Del("code_challenge_method") }, "invalid_request"},
			{"malformed challenge", func(q url.Values) { q.Set("code_challenge", "short") }, "invalid_request"},
			{"unknown scope", func(q url.Values) { q.Set("scope", "read nuclear") }, "invalid_scope"},
			{"repeated scope", func(q url.Values) { q["scope"] = []string{"read", "write"} }, "invalid_request"},
			{"relative resource", func(q url.Values) { q.Set("resource", "/api") }, "invalid_target"},
		}
		for _, tc := range redirectCases {
			t.Run("redirect/"+tc.name, func(t *testing.T) {
				u, _ := url.Parse(ok.url(e.issuer))
				q := u.Query()
				tc.q(q)
				p := b.do("GET", provider.PathAuthorize+"?"+q.Encode(), nil)
				mustEqual(t, "status", p.status, http.StatusFound)
				loc, err := url.Parse(p.location)
				if err != nil {
					t.Fatal(err)
				}
				if !strings.HasPrefix(p.location, redirect+"?") {
					t.Fatalf("redirected to %q", p.location)
				}
				mustEqual(t, "error", loc.Query().Get("error"), tc.error)
				if loc.Query().Get("error_description") == "" {
					t.Fatal("error redirect without error_description")
				}
				mustEqual(t, "state", loc.Query().Get("state"), "a b&c=d")
				mustEqual(t, "iss", loc.Query().Get("iss"), e.issuer)
				if loc.Query().Get("code") != "" {
					t.Fatal("error redirect carries a code")
				}
			})
		}

		t.Run("deny redirects access_denied with state and iss", func(t *testing.T) {
			b2 := e.browser()
			p := b2.consentPage(authRequest{clientID: c.ID, redirectURI: redirect, state: "deny-me", verifier: testVerifier, scope: "write"}.url(e.issuer), user, pw)
			if !strings.Contains(p.body, `value="deny"`) {
				t.Fatalf("no consent page: %.300s", p.body)
			}
			f := formFields(p.body)
			f.Set("decision", "deny")
			p = b2.do("POST", provider.PathAuthorize, f)
			mustEqual(t, "status", p.status, http.StatusFound)
			loc, _ := url.Parse(p.location)
			mustEqual(t, "error", loc.Query().Get("error"), "access_denied")
			mustEqual(t, "state", loc.Query().Get("state"), "deny-me")
			mustEqual(t, "iss", loc.Query().Get("iss"), e.issuer)
		})
		t.Run("consent POST without CSRF token is refused", func(t *testing.T) {
			f := url.Values{}
			u, _ := url.Parse(ok.url(e.issuer))
			for k, v := range u.Query() {
				f[k] = v
			}
			f.Set("decision", "allow")
			p := b.do("POST", provider.PathAuthorize, f)
			mustEqual(t, "status", p.status, 400)
			if p.location != "" {
				t.Fatalf("redirected: %q", p.location)
			}
		})
	})
}

// TestRedirectURIKinds: private-use schemes through consent Allow and Deny,
// loopback on any port, and the consent page remembering decisions.
func TestRedirectURIKinds(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		user, pw := e.user("frank")
		jb := "jetbrains://gateway/com.jetbrains.toolbox/oauth/callback"
		c, _ := e.client(store.ClientMetadata{RedirectURIs: []string{jb, "vscode://authz.ext/cb", "com.example.app:/oauth2redirect"}, TokenEndpointAuthMethod: oauth.AuthNone, ApplicationType: "native"})
		for _, redirect := range []string{jb, "vscode://authz.ext/cb", "com.example.app:/oauth2redirect"} {
			t.Run(redirect, func(t *testing.T) {
				b := e.browser()
				u := b.authorize(authRequest{clientID: c.ID, redirectURI: redirect, state: "jb", verifier: testVerifier, scope: "read"}.url(e.issuer), user, pw)
				if !strings.HasPrefix(u.String(), redirect+"?") {
					t.Fatalf("callback mangled: %q", u.String())
				}
				code := u.Query().Get("code")
				tr := e.postToken(exchangeForm(code, redirect, testVerifier, url.Values{"client_id": {c.ID}}), "", "")
				mustEqual(t, "status", tr.Status, 200)
			})
		}
		t.Run("deny to a private-use scheme", func(t *testing.T) {
			b := e.browser()
			p := b.consentPage(authRequest{clientID: c.ID, redirectURI: jb, state: "d", verifier: testVerifier, scope: "write"}.url(e.issuer), user, pw)
			if strings.Contains(p.body, "ZgotmplZ") {
				t.Fatal("template escaping mangled the consent page")
			}
			f := formFields(p.body)
			mustEqual(t, "hidden redirect_uri", f.Get("redirect_uri"), jb)
			f.Set("decision", "deny")
			p = b.do("POST", provider.PathAuthorize, f)
			if !strings.HasPrefix(p.location, jb+"?") {
				t.Fatalf("deny went to %q", p.location)
			}
		})
		for _, host := range []string{"[::1]", "localhost"} {
			t.Run(host+" loopback on any port", func(t *testing.T) {
				lc, _ := e.client(store.ClientMetadata{RedirectURIs: []string{"http://" + host + "/callback"}, TokenEndpointAuthMethod: oauth.AuthNone})
				redirect := "http://" + host + ":" + strconv.Itoa(freePort(t)) + "/callback"
				u := e.browser().authorize(authRequest{clientID: lc.ID, redirectURI: redirect, state: "lo", verifier: testVerifier, scope: "read"}.url(e.issuer), user, pw)
				if !strings.HasPrefix(u.String(), redirect+"?code=") {
					t.Fatalf("redirected to %q", u)
				}
				tr := e.postToken(exchangeForm(u.Query().Get("code"), redirect, testVerifier, url.Values{"client_id": {lc.ID}}), "", "")
				mustEqual(t, "exchange", tr.Status, 200)
			})
		}
		t.Run("loopback on another port, and consent remembered", func(t *testing.T) {
			// Confidential: its consent may be remembered (RFC 8252 §8.6; a
			// public loopback client is asked every time, abuse_test.go).
			lc, _, _ := e.loopbackClient(false)
			b := e.browser()
			for i, port := range []int{freePort(t), freePort(t)} {
				redirect := fmt.Sprintf("http://127.0.0.1:%d/callback", port)
				u := b.authorize(authRequest{clientID: lc.ID, redirectURI: redirect, state: "p", verifier: testVerifier, scope: "read"}.url(e.issuer), user, pw)
				if !strings.HasPrefix(u.String(), redirect+"?code=") {
					t.Fatalf("callback %q", u)
				}
				if i == 1 {
					// The second authorization skipped the consent page: the
					// first redirect from /authorize already carried the code.
					p := b.do("GET", authRequest{clientID: lc.ID, redirectURI: redirect, state: "p", verifier: testVerifier, scope: "read"}.url(e.issuer), nil)
					mustEqual(t, "remembered consent status", p.status, http.StatusFound)
				}
			}
		})
	})
}

// TestConcurrentRefresh is the bug class that hurt Coder's clients: many
// windows refreshing one token at once must all win, and none may wipe
// another's token. They all get the one successor of the token (issue 10:
// one successor per refresh token), so they share one chain.
func TestConcurrentRefresh(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		c, secret, _, first := e.firstTokens(t, "gina", "c")

		const n = 20
		results := make([]tokenResp, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i] = e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first.RefreshToken}}, c.ID, secret)
			}()
		}
		wg.Wait()
		access := map[string]bool{}
		for i, r := range results {
			if r.Status != 200 {
				t.Fatalf("refresh %d: %d %s %s", i, r.Status, r.Error, r.ErrorDescription)
			}
			if r.RefreshToken != results[0].RefreshToken {
				t.Fatalf("refresh %d got another successor: the chain forked", i)
			}
			access[r.AccessToken] = true
		}
		if len(access) != n {
			t.Fatalf("%d distinct access tokens for %d refreshes, want a fresh one each", len(access), n)
		}
		// The one successor works, for every holder within its window.
		succ := results[0].RefreshToken
		next := e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {succ}}, c.ID, secret)
		mustEqual(t, "the successor", next.Status, 200)

		// After the grace window, presenting the original again is reuse:
		// the whole grant is revoked (RFC 9700 §4.14.2).
		e.clock.Advance(31 * time.Second)
		replay := e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first.RefreshToken}}, c.ID, secret)
		mustEqual(t, "replay after grace", replay.Error, "invalid_grant")
		for name, tok := range map[string]string{"successor": succ, "its successor": next.RefreshToken} {
			after := e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok}}, c.ID, secret)
			if after.Error != "invalid_grant" {
				t.Fatalf("the %s of the revoked grant still works (%d)", name, after.Status)
			}
		}
	})
}

// TestGraceReplayReturnsTheSameSuccessor (issue 10 point 4): a refresh
// token presented again inside the grace window yields the same successor
// refresh token with a fresh access token, not a second chain; the window
// runs from the first rotation; once it is over, a holder of the old chain
// that presents its token again is detected as reuse and the grant dies,
// taking the other holder's chain with it.
func TestGraceReplayReturnsTheSameSuccessor(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		c, secret, _, tr := e.firstTokens(t, "gaby", "g")
		refresh := func(tok string) tokenResp {
			return e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok}}, c.ID, secret)
		}

		a := refresh(tr.RefreshToken) // holder A, first rotation
		mustEqual(t, "first refresh", a.Status, 200)
		e.clock.Advance(20 * time.Second)
		b := refresh(tr.RefreshToken) // holder B, inside the window
		mustEqual(t, "replay inside the window", b.Status, 200)
		if b.RefreshToken != a.RefreshToken {
			t.Fatal("a replay inside the grace window got a second successor: two independent chains")
		}
		if b.AccessToken == a.AccessToken {
			t.Error("the replay got the same access token, want a fresh one")
		}
		// The window is measured from the first rotation, not the last
		// presentation: 20 s + 10 s is past the 30 s window.
		e.clock.Advance(10 * time.Second)
		late := refresh(tr.RefreshToken)
		mustEqual(t, "replay after the window", late.Error, "invalid_grant")
		if r := refresh(a.RefreshToken); r.Error != "invalid_grant" {
			t.Fatalf("the shared successor after reuse: %d %s, want invalid_grant", r.Status, r.Error)
		}
	})
}

// TestRefreshRules: client binding, scope narrowing, grace disabled.
func TestRefreshRules(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), func(o *provider.Options) { o.RefreshGrace = 0 })
		user, pw := e.user("hank")
		a, aSecret, redirect := e.loopbackClient(false)
		bc, bSecret, _ := e.loopbackClient(false)
		newRT := func() string {
			code := e.codeFor(e.browser(), authRequest{clientID: a.ID, redirectURI: redirect, state: "r", verifier: testVerifier, scope: "read write"}, user, pw)
			tr := e.postToken(exchangeForm(code, redirect, testVerifier, nil), a.ID, aSecret)
			mustEqual(t, "status", tr.Status, 200)
			return tr.RefreshToken
		}
		refresh := func(rt, id, sec string, extra url.Values) tokenResp {
			f := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
			for k, v := range extra {
				f[k] = v
			}
			return e.postToken(f, id, sec)
		}
		t.Run("client B presents A's refresh token: rejected, and A's token is untouched", func(t *testing.T) {
			rt := newRT()
			mustEqual(t, "B", refresh(rt, bc.ID, bSecret, nil).Error, "invalid_grant")
			mustEqual(t, "A after B", refresh(rt, a.ID, aSecret, nil).Status, 200)
		})
		t.Run("scope narrows, never widens", func(t *testing.T) {
			rt := newRT()
			r := refresh(rt, a.ID, aSecret, url.Values{"scope": {"read admin"}})
			mustEqual(t, "widen", r.Error, "invalid_scope")
			r = refresh(rt, a.ID, aSecret, url.Values{"scope": {"read"}})
			mustEqual(t, "narrow", r.Status, 200)
			mustEqual(t, "scope", claims(t, r.AccessToken)["scope"].(string), "read")
			r = refresh(r.RefreshToken, a.ID, aSecret, nil)
			mustEqual(t, "back to the grant's scope", r.Scope, "read write")
		})
		t.Run("grace disabled: a second presentation is reuse", func(t *testing.T) {
			rt := newRT()
			r1 := refresh(rt, a.ID, aSecret, nil)
			mustEqual(t, "first", r1.Status, 200)
			mustEqual(t, "second", refresh(rt, a.ID, aSecret, nil).Error, "invalid_grant")
			mustEqual(t, "successor after reuse", refresh(r1.RefreshToken, a.ID, aSecret, nil).Error, "invalid_grant")
		})
		t.Run("a replay asking for a wider scope or another resource is still reuse", func(t *testing.T) {
			for _, extra := range []url.Values{{"scope": {"read admin"}}, {"resource": {"https://nope.example.com"}}} {
				rt := newRT()
				r1 := refresh(rt, a.ID, aSecret, nil)
				mustEqual(t, "first", r1.Status, 200)
				mustEqual(t, "replay with "+extra.Encode(), refresh(rt, a.ID, aSecret, extra).Error, "invalid_grant")
				mustEqual(t, "successor after the replay", refresh(r1.RefreshToken, a.ID, aSecret, nil).Error, "invalid_grant")
			}
		})
		t.Run("idle lifetime", func(t *testing.T) {
			rt := newRT()
			e.clock.Advance(31 * 24 * time.Hour)
			mustEqual(t, "expired", refresh(rt, a.ID, aSecret, nil).Error, "invalid_grant")
		})
	})
}

// TestSecondDeviceSurvives: one grant per authorization; revoking one
// device's grant leaves the other's working.
func TestSecondDeviceSurvives(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		user, pw := e.user("ivy")
		c, secret, redirect := e.loopbackClient(false)
		var rts []string
		for _, dev := range []string{"laptop", "desktop"} {
			code := e.codeFor(e.browser(), authRequest{clientID: c.ID, redirectURI: redirect, state: dev, verifier: testVerifier}, user, pw)
			tr := e.postToken(exchangeForm(code, redirect, testVerifier, nil), c.ID, secret)
			mustEqual(t, "status", tr.Status, 200)
			rts = append(rts, tr.RefreshToken)
		}
		// The first device logs out by revoking its refresh token (RFC 7009).
		r := postForm(t, e.issuer+provider.PathRevoke, url.Values{"token": {rts[0]}}, c.ID, secret)
		mustEqual(t, "revoke", r.Status, 200)
		mustEqual(t, "first device", e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rts[0]}}, c.ID, secret).Error, "invalid_grant")
		mustEqual(t, "second device", e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rts[1]}}, c.ID, secret).Status, 200)
	})
}
