package tests

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"html"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"

	"golang.org/x/oauth2"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/pkce"
	"github.com/authzd/authz/provider/store"
)

// resolve makes a Location or form action absolute against the page's URL.
func resolve(base, ref string) string {
	b, _ := url.Parse(base)
	r, _ := url.Parse(ref)
	return b.ResolveReference(r).String()
}

// journey is one browser going through authz and an upstream provider.
type journey struct {
	t   *testing.T
	b   *browser
	cur string
	p   page
	// creds for the upstream authz's login page.
	user, pw string
	// tamper may rewrite a URL before the browser follows it.
	tamper func(u string) string
}

func (j *journey) get(u string) {
	j.t.Helper()
	if j.tamper != nil {
		u = j.tamper(u)
	}
	j.cur, j.p = u, j.b.do("GET", u, nil)
}

// run follows redirects, signs in upstream, consents anywhere, and clicks
// "Continue with <label>" on the downstream login page. It stops at a
// redirect to the client (https://rp.example.com) or at a page it does not
// know.
func (j *journey) run(label string) {
	j.t.Helper()
	for i := 0; i < 20; i++ {
		switch {
		case j.p.status >= 300 && j.p.status < 400 && strings.HasPrefix(j.p.location, "https://rp.example.com"):
			return
		case j.p.status >= 300 && j.p.status < 400:
			j.get(resolve(j.cur, j.p.location))
		case j.p.status == 200 && strings.Contains(j.p.body, "Continue with "+label):
			m := upstreamLink.FindStringSubmatch(j.p.body)
			if m == nil {
				j.t.Fatalf("no upstream link in %s", j.p.body)
			}
			j.get(resolve(j.cur, htmlUnescape(m[1])))
		case j.p.status == 200 && strings.Contains(j.p.body, `name="password"`):
			f := formFields(j.p.body)
			f.Set("username", j.user)
			f.Set("password", j.pw)
			j.cur, j.p = resolve(j.cur, provider.PathLogin), j.b.do("POST", resolve(j.cur, provider.PathLogin), f)
		case j.p.status == 200 && strings.Contains(j.p.body, `name="decision"`):
			f := formFields(j.p.body)
			f.Set("decision", "allow")
			target := resolve(j.cur, provider.PathAuthorize)
			j.cur, j.p = target, j.b.do("POST", target, f)
		default:
			return
		}
	}
	j.t.Fatal("journey did not finish")
}

// rewriteQuery is a tamper that edits the query of URLs starting with prefix.
func rewriteQuery(prefix string, edit func(url.Values)) func(string) string {
	return func(u string) string {
		if !strings.HasPrefix(u, prefix) {
			return u
		}
		p, _ := url.Parse(u)
		q := p.Query()
		edit(q)
		p.RawQuery = q.Encode()
		return p.String()
	}
}

func htmlUnescape(s string) string { return html.UnescapeString(s) }

var upstreamLink = regexp.MustCompile(`<a class="button" href="([^"]+)">`)

// upstreamSetup is an upstream authz (a real OpenID provider, at
// "localhost" so its cookies are not the downstream's at 127.0.0.1) and a
// downstream authz signing users in through it.
type upstreamSetup struct {
	up, down *env
	rp       *rp
	// secret is the downstream's client secret at the upstream.
	secret string
}

func newUpstreamSetup(t *testing.T, open func(testing.TB) store.Store, mutate func(u *provider.Upstream), downOpts ...func(o *provider.Options)) *upstreamSetup {
	t.Helper()
	up := start(t, open(t), func(o *provider.Options) { o.Issuer = strings.Replace(o.Issuer, "127.0.0.1", "localhost", 1) })
	up.issuer = strings.Replace(up.issuer, "127.0.0.1", "localhost", 1)
	// Loopback redirect: any port matches (RFC 8252 §7.3), so it can be
	// registered before the downstream's port is known.
	c, secret := up.client(store.ClientMetadata{RedirectURIs: []string{"http://127.0.0.1/login/upstream/corp/callback"}})
	cfg := provider.Upstream{Name: "corp", DisplayName: "Corp SSO", Type: provider.UpstreamOIDC, Issuer: up.issuer, ClientID: c.ID, ClientSecret: secret}
	if mutate != nil {
		mutate(&cfg)
	}
	down := start(t, open(t), func(o *provider.Options) {
		o.Upstreams = []provider.Upstream{cfg}
		for _, f := range downOpts {
			f(o)
		}
	})
	return &upstreamSetup{up: up, down: down, rp: down.relyingParty(t), secret: secret}
}

// begin starts a downstream authorization in a fresh browser, signing in
// upstream as user.
func (s *upstreamSetup) begin(t *testing.T, user, pw string) *journey {
	j := &journey{t: t, b: s.down.browser(), user: user, pw: pw}
	j.get(s.rp.authURL("st", "n", testVerifier))
	return j
}

func (j *journey) hasSession(down *env) bool {
	u, _ := url.Parse(down.issuer)
	for _, c := range j.b.http.Jar.Cookies(u) {
		if c.Name == "authz_session" && c.Value != "" {
			return true
		}
	}
	return false
}

func countUsers(t *testing.T, e *env) []store.User {
	us, err := e.store.ListUsers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return us
}

// TestUpstreamOIDCSignIn: a second authz instance is the upstream OpenID
// provider. The first sign-in creates the user once, the second finds the
// same user; the ID token the downstream then issues names that user.
func TestUpstreamOIDCSignIn(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		s := newUpstreamSetup(t, open, func(u *provider.Upstream) { u.AllowedEmailDomains = []string{"example.com"} })
		user, pw := s.up.user("gina")
		s.up.profile(t, user, "Gina Upstream", "gina@example.com", true)
		upUser, _ := s.up.store.GetUserByUsername(context.Background(), user)

		var ids []string
		for round := 0; round < 2; round++ {
			j := s.begin(t, user, pw)
			j.run("Corp SSO")
			if j.p.status != http.StatusFound {
				t.Fatalf("round %d: stopped at %d %s %.300s", round, j.p.status, j.cur, j.p.body)
			}
			cb, _ := url.Parse(j.p.location)
			tok, err := s.rp.cfg.Exchange(context.Background(), cb.Query().Get("code"), oauth2.VerifierOption(testVerifier))
			if err != nil {
				t.Fatal(err)
			}
			idt := s.rp.verify(t, tok)
			ids = append(ids, idt.Subject)
		}
		if ids[0] != ids[1] {
			t.Fatalf("second sign-in is another user: %v", ids)
		}
		us := countUsers(t, s.down)
		if len(us) != 1 {
			t.Fatalf("downstream users = %+v, want exactly one", us)
		}
		u := us[0]
		if u.ID != ids[0] || u.Provider != "corp" || u.Username != "corp:"+upUser.ID || u.Email != "gina@example.com" || !u.EmailVerified || u.Name != "Gina Upstream" || u.PasswordHash != "" {
			t.Fatalf("downstream user = %+v", u)
		}
		// Deleting the user works like for anyone; the next sign-in starts over.
		if err := s.down.store.DeleteUser(context.Background(), u.ID); err != nil {
			t.Fatal(err)
		}
		j := s.begin(t, user, pw)
		j.run("Corp SSO")
		if us := countUsers(t, s.down); len(us) != 1 || us[0].ID == u.ID {
			t.Fatalf("after delete: %+v", us)
		}
	})
}

// TestUpstreamAudited (issue 15 point 3): an upstream sign-in that works
// and one that is refused each become one audit event, login.succeeded and
// login.failed with the provider's name (and nothing secret, in the audit
// trail or the log), and move authz_upstream_logins_total by provider and
// outcome.
func TestUpstreamAudited(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		var logs lockedBuffer
		s := newUpstreamSetup(t, open, func(u *provider.Upstream) { u.AllowedEmailDomains = []string{"example.com"} }, func(o *provider.Options) {
			o.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		})
		// The upstream's code and state, as the browser brings them back.
		var callbackSecrets []string
		keepCallback := func(u string) string {
			if strings.HasPrefix(u, s.down.issuer+"/login/upstream/corp/callback") {
				p, _ := url.Parse(u)
				for _, k := range []string{"code", "state"} {
					if v := p.Query().Get(k); v != "" {
						callbackSecrets = append(callbackSecrets, v)
					}
				}
			}
			return u
		}
		admin := httptest.NewServer(s.down.srv.AdminHandler())
		t.Cleanup(admin.Close)

		gina, ginaPW := s.up.user("gina")
		s.up.profile(t, gina, "Gina", "gina@example.com", true)
		j := s.begin(t, gina, ginaPW)
		j.tamper = keepCallback
		j.run("Corp SSO")
		if j.p.status != http.StatusFound {
			t.Fatalf("sign-in: %d %.300s", j.p.status, j.p.body)
		}
		eve, evePW := s.up.user("eve")
		s.up.profile(t, eve, "Eve", "eve@evil.test", true)
		j = s.begin(t, eve, evePW)
		j.tamper = keepCallback
		j.run("Corp SSO")
		if j.p.status != http.StatusForbidden {
			t.Fatalf("disallowed domain: %d", j.p.status)
		}
		us := countUsers(t, s.down)
		if len(us) != 1 {
			t.Fatalf("downstream users: %+v", us)
		}

		evs, err := s.down.store.ListAuditEvents(context.Background(), store.AuditFilter{})
		if err != nil {
			t.Fatal(err)
		}
		var ok, failed []store.AuditEvent
		for _, e := range evs {
			switch e.Name {
			case provider.EventLoginSucceeded:
				ok = append(ok, e)
			case provider.EventLoginFailed:
				failed = append(failed, e)
			}
			raw, _ := json.Marshal(e)
			for _, secret := range []string{s.secret, ginaPW, evePW} {
				if strings.Contains(string(raw), secret) {
					t.Errorf("audit event %s carries a secret: %s", e.Name, raw)
				}
			}
		}
		if len(ok) != 1 || ok[0].Subject != us[0].ID || ok[0].Actor != provider.ActorUser || ok[0].Outcome != "ok" ||
			ok[0].Details["provider"] != "corp" || ok[0].Details["created"] != "true" || ok[0].ClientIP == "" {
			t.Errorf("login.succeeded events: %+v, want one for %s through corp", ok, us[0].ID)
		}
		if len(failed) != 1 || failed[0].Subject != "" || failed[0].Outcome != "failed" ||
			failed[0].Details["provider"] != "corp" || failed[0].Details["reason"] == "" {
			t.Errorf("login.failed events: %+v, want one through corp with a reason", failed)
		}

		if len(callbackSecrets) != 4 {
			t.Fatalf("saw %d code and state values come back from the upstream, want 4", len(callbackSecrets))
		}
		out := logs.String()
		if !strings.Contains(out, "upstream sign-in") {
			t.Fatal("the sign-ins were not logged: the check below would prove nothing")
		}
		for _, secret := range append([]string{s.secret, ginaPW, evePW}, callbackSecrets...) {
			if strings.Contains(out, secret) {
				t.Errorf("the log contains a secret (%.12s…)", secret)
			}
		}

		text := scrape(t, admin.URL)
		for _, tt := range []struct {
			labels []string
			want   float64
		}{
			{[]string{"provider", "corp", "outcome", "ok"}, 1},
			{[]string{"provider", "corp", "outcome", "failed"}, 1},
		} {
			if got, found := metric(text, "authz_upstream_logins_total", tt.labels...); !found || got != tt.want {
				t.Errorf("authz_upstream_logins_total%v = %v (found %v), want %v", tt.labels, got, found, tt.want)
			}
		}
		if got, _ := metric(text, "authz_audit_events_total", "event", provider.EventLoginFailed); got != 1 {
			t.Errorf("authz_audit_events_total{event=login.failed} = %v, want 1", got)
		}
	})
}

// signIn runs one downstream authorization through the upstream as user
// and returns the downstream ID token's subject.
func (s *upstreamSetup) signIn(t *testing.T, user, pw string) string {
	t.Helper()
	j := s.begin(t, user, pw)
	j.run("Corp SSO")
	if j.p.status != http.StatusFound {
		t.Fatalf("sign-in as %s stopped at %d %s %.300s", user, j.p.status, j.cur, j.p.body)
	}
	cb, _ := url.Parse(j.p.location)
	tok, err := s.rp.cfg.Exchange(context.Background(), cb.Query().Get("code"), oauth2.VerifierOption(testVerifier))
	if err != nil {
		t.Fatal(err)
	}
	return s.rp.verify(t, tok).Subject
}

// TestUpstreamLinkByVerifiedEmail: with link_by_verified_email a first
// upstream sign-in becomes the existing local user whose email is verified
// and equal to the one the provider verified, and stays that user; a local
// user whose email is not verified, or a provider without the setting,
// gets a new user instead (an unverified address proves nothing).
func TestUpstreamLinkByVerifiedEmail(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		local := func(e *env, name, email string, verified bool) store.User {
			t.Helper()
			u, err := provider.NewUser(name, "pw-"+name+"-correct-horse", provider.UserProfile{Name: name, Email: email, EmailVerified: verified}, e.clock.Now(), rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			if err := e.store.CreateUser(context.Background(), u); err != nil {
				t.Fatal(err)
			}
			return u
		}
		upstreamUser := func(s *upstreamSetup, name, email string) (string, string) {
			user, pw := s.up.user(name)
			s.up.profile(t, user, name, email, true)
			return user, pw
		}

		s := newUpstreamSetup(t, open, func(u *provider.Upstream) { u.LinkByVerifiedEmail = true })
		kate := local(s.down, "kate", "kate@example.com", true)
		lena := local(s.down, "lena", "lena@example.com", false)
		kUser, kPW := upstreamUser(s, "kate-up", "kate@example.com")
		for round := 0; round < 2; round++ {
			if sub := s.signIn(t, kUser, kPW); sub != kate.ID {
				t.Fatalf("round %d: verified email matched, signed in as %s, want the local user %s", round, sub, kate.ID)
			}
		}
		lUser, lPW := upstreamUser(s, "lena-up", "lena@example.com")
		if sub := s.signIn(t, lUser, lPW); sub == lena.ID {
			t.Fatal("linked to a local user whose email is not verified")
		}
		if us := countUsers(t, s.down); len(us) != 3 {
			t.Fatalf("downstream users = %d, want kate, lena and one new user", len(us))
		}

		off := newUpstreamSetup(t, open, nil)
		mona := local(off.down, "mona", "mona@example.com", true)
		mUser, mPW := upstreamUser(off, "mona-up", "mona@example.com")
		if sub := off.signIn(t, mUser, mPW); sub == mona.ID {
			t.Fatal("linked by email although the provider does not allow it")
		}
		if us := countUsers(t, off.down); len(us) != 2 {
			t.Fatalf("downstream users without linking = %d, want 2", len(us))
		}
	})
}

// TestUpstreamFailures: every way an upstream sign-in fails is a clear page
// (never a 500) and never a session.
func TestUpstreamFailures(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		s := newUpstreamSetup(t, open, func(u *provider.Upstream) { u.AllowedEmailDomains = []string{"example.com"} })
		fail := func(name string, j *journey, status int) {
			t.Helper()
			if j.p.status != status || !strings.Contains(j.p.body, "Sign-in failed") || !strings.Contains(j.p.body, "Corp SSO") {
				t.Fatalf("%s: %d %.400s, want %d and a sign-in failed page", name, j.p.status, j.p.body, status)
			}
			if j.hasSession(s.down) {
				t.Fatalf("%s: a session was created", name)
			}
		}
		eve, evePW := s.up.user("eve")
		s.up.profile(t, eve, "Eve", "eve@evil.test", true)
		j := s.begin(t, eve, evePW)
		j.run("Corp SSO")
		fail("disallowed domain", j, http.StatusForbidden)

		unv, unvPW := s.up.user("ursula")
		s.up.profile(t, unv, "U", "ursula@example.com", false)
		j = s.begin(t, unv, unvPW)
		j.run("Corp SSO")
		fail("unverified email", j, http.StatusForbidden)

		ok, okPW := s.up.user("olga")
		s.up.profile(t, ok, "Olga", "olga@example.com", true)

		callback := s.down.issuer + "/login/upstream/corp/callback"

		// Wrong nonce: the request to the upstream is rewritten, so its ID
		// token carries a nonce this sign-in did not make.
		j = s.begin(t, ok, okPW)
		j.tamper = rewriteQuery(s.up.issuer+provider.PathAuthorize, func(q url.Values) { q.Set("nonce", "attacker-nonce") })
		j.run("Corp SSO")
		fail("wrong nonce", j, http.StatusBadGateway)

		// state mismatch: the callback's state is not the one sent.
		j = s.begin(t, ok, okPW)
		j.tamper = rewriteQuery(callback, func(q url.Values) { q.Set("state", "forged") })
		j.run("Corp SSO")
		fail("state mismatch", j, http.StatusBadRequest)

		// A callback with no sign-in in progress (no cookie): refused.
		j = &journey{t: t, b: s.down.browser()}
		j.get(callback + "?code=x&state=y")
		fail("no cookie", j, http.StatusBadRequest)

		// The upstream says access_denied.
		j = s.begin(t, ok, okPW)
		j.tamper = rewriteQuery(callback, func(q url.Values) { q.Del("code"); q.Set("error", "access_denied") })
		j.run("Corp SSO")
		fail("access denied upstream", j, http.StatusForbidden)

		// Stopped upstream: it goes away between the user's approval and
		// the callback, so the code cannot be redeemed.
		j = s.begin(t, ok, okPW)
		j.tamper = func(u string) string {
			if strings.HasPrefix(u, callback) {
				s.up.http.CloseClientConnections()
				s.up.http.Close()
			}
			return u
		}
		j.run("Corp SSO")
		fail("stopped upstream", j, http.StatusBadGateway)
		if us := countUsers(t, s.down); len(us) != 0 {
			t.Fatalf("failed sign-ins created users: %+v", us)
		}
		// And with the upstream gone before discovery, the button is a page too.
		s2 := start(t, open(t), func(o *provider.Options) {
			o.Upstreams = []provider.Upstream{{Name: "corp", DisplayName: "Corp SSO", Type: provider.UpstreamOIDC, Issuer: s.up.issuer, ClientID: "x", ClientSecret: "y"}}
		})
		j = &journey{t: t, b: s2.browser()}
		j.get(s2.issuer + "/login/upstream/corp")
		if j.p.status != http.StatusBadGateway || !strings.Contains(j.p.body, "Sign-in failed") {
			t.Fatalf("upstream down at discovery: %d", j.p.status)
		}
	})
}

// TestUpstreamLocalLoginOff: with password sign-in off the login page has
// only the provider buttons and a password POST is refused.
func TestUpstreamLocalLoginOff(t *testing.T) {
	t.Parallel()
	e := start(t, storeKinds[0].open(t), func(o *provider.Options) {
		o.DisableLocalLogin = true
		o.Upstreams = []provider.Upstream{{Name: "gh", DisplayName: "GitHub", Type: provider.UpstreamGitHub, ClientID: "x", ClientSecret: "y"}}
	})
	user, pw := e.user("henry")
	b := e.browser()
	p := b.do("GET", provider.PathLogin, nil)
	if p.status != 200 || strings.Contains(p.body, `name="password"`) || !strings.Contains(p.body, "Continue with GitHub") {
		t.Fatalf("login page with local login off: %d %s", p.status, p.body)
	}
	p = b.do("POST", provider.PathLogin, url.Values{"csrf_token": {b.csrf()}, "username": {user}, "password": {pw}})
	if p.status != http.StatusForbidden || b.hasSessionCookie() {
		t.Fatalf("password POST with local login off: %d", p.status)
	}
	if _, err := provider.New(context.Background(), provider.Options{Issuer: "http://x", Store: storeKinds[0].open(t), DisableLocalLogin: true}); err == nil {
		t.Fatal("local login off without upstreams: want an error at start")
	}
}

func (b *browser) csrf() string {
	u, _ := url.Parse(b.e.issuer)
	for _, c := range b.http.Jar.Cookies(u) {
		if c.Name == "authz_csrf" {
			return c.Value
		}
	}
	return ""
}

func (b *browser) hasSessionCookie() bool {
	u, _ := url.Parse(b.e.issuer)
	for _, c := range b.http.Jar.Cookies(u) {
		if c.Name == "authz_session" && c.Value != "" {
			return true
		}
	}
	return false
}

// fakeGitHub speaks GitHub's documented OAuth web flow and REST shapes:
// GET /login/oauth/authorize, POST /login/oauth/access_token (JSON with
// Accept: application/json), GET /user and GET /user/emails.
type fakeGitHub struct {
	srv       *httptest.Server
	mu        sync.Mutex
	challenge string
	verified  bool
	tokens    int
}

func newFakeGitHub(t *testing.T, clientID, secret string) *fakeGitHub {
	g := &fakeGitHub{verified: true}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login/oauth/authorize", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("client_id") != clientID || q.Get("code_challenge_method") != "S256" {
			http.Error(w, "bad request", 400)
			return
		}
		g.mu.Lock()
		g.challenge = q.Get("code_challenge")
		g.mu.Unlock()
		// The user approves at once.
		http.Redirect(w, r, q.Get("redirect_uri")+"?"+url.Values{"code": {"gh-code"}, "state": {q.Get("state")}}.Encode(), http.StatusFound)
	})
	mux.HandleFunc("POST /login/oauth/access_token", func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		g.mu.Lock()
		ch := g.challenge
		g.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if r.PostForm.Get("client_id") != clientID || r.PostForm.Get("client_secret") != secret || r.PostForm.Get("code") != "gh-code" ||
			pkce.ChallengeS256(r.PostForm.Get("code_verifier")) != ch {
			// GitHub answers errors with 200 and an error field.
			_, _ = w.Write([]byte(`{"error":"bad_verification_code","error_description":"The code passed is incorrect or expired."}`))
			return
		}
		g.mu.Lock()
		g.tokens++
		g.mu.Unlock()
		_, _ = w.Write([]byte(`{"access_token":"gho_16C7e42F292c6912E7710c838347Ae178B4a","token_type":"bearer","scope":"read:user,user:email"}`))
	})
	auth := func(w http.ResponseWriter, r *http.Request) bool {
		if r.Header.Get("Authorization") != "Bearer gho_16C7e42F292c6912E7710c838347Ae178B4a" {
			w.WriteHeader(401)
			_, _ = w.Write([]byte(`{"message":"Requires authentication"}`))
			return false
		}
		return true
	}
	mux.HandleFunc("GET /user", func(w http.ResponseWriter, r *http.Request) {
		if auth(w, r) {
			_, _ = w.Write([]byte(`{"login":"octocat","id":583231,"node_id":"MDQ6VXNlcjE=","name":"The Octocat","email":null,"type":"User"}`))
		}
	})
	mux.HandleFunc("GET /user/emails", func(w http.ResponseWriter, r *http.Request) {
		if auth(w, r) {
			g.mu.Lock()
			v := g.verified
			g.mu.Unlock()
			_ = json.NewEncoder(w).Encode([]map[string]any{
				{"email": "octo@users.noreply.github.com", "verified": true, "primary": false, "visibility": nil},
				{"email": "octocat@github.com", "verified": v, "primary": true, "visibility": "public"},
			})
		}
	})
	g.srv = httptest.NewServer(mux)
	t.Cleanup(g.srv.Close)
	return g
}

// TestUpstreamGitHub: sign-in through GitHub's OAuth and user/email APIs.
func TestUpstreamGitHub(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		gh := newFakeGitHub(t, "Iv1.gh-client", "gh-secret")
		e := start(t, open(t), func(o *provider.Options) {
			o.Upstreams = []provider.Upstream{{Name: "github", DisplayName: "GitHub", Type: provider.UpstreamGitHub, ClientID: "Iv1.gh-client", ClientSecret: "gh-secret",
				AuthURL: gh.srv.URL + "/login/oauth/authorize", TokenURL: gh.srv.URL + "/login/oauth/access_token", APIURL: gh.srv.URL}}
		})
		r := e.relyingParty(t)
		for round := 0; round < 2; round++ {
			j := &journey{t: t, b: e.browser()}
			j.get(r.authURL("st", "n", testVerifier))
			j.run("GitHub")
			if j.p.status != http.StatusFound || !strings.HasPrefix(j.p.location, "https://rp.example.com/cb") {
				t.Fatalf("round %d stopped at %d %s %.300s", round, j.p.status, j.cur, j.p.body)
			}
		}
		us := countUsers(t, e)
		if len(us) != 1 || us[0].Username != "github:583231" || us[0].Provider != "github" || us[0].Email != "octocat@github.com" || !us[0].EmailVerified || us[0].Name != "The Octocat" {
			t.Fatalf("users = %+v", us)
		}
		// require_claim: only the named account may enter.
		picky := start(t, open(t), func(o *provider.Options) {
			o.Upstreams = []provider.Upstream{{Name: "github", DisplayName: "GitHub", Type: provider.UpstreamGitHub, ClientID: "Iv1.gh-client", ClientSecret: "gh-secret",
				AuthURL: gh.srv.URL + "/login/oauth/authorize", TokenURL: gh.srv.URL + "/login/oauth/access_token", APIURL: gh.srv.URL,
				RequireClaim: &provider.ClaimMatch{Claim: "login", Value: "hubot"}}}
		})
		j := &journey{t: t, b: picky.browser()}
		j.get(picky.relyingParty(t).authURL("st", "n", testVerifier))
		j.run("GitHub")
		if j.p.status != http.StatusForbidden || j.b.hasSessionCookie() || len(countUsers(t, picky)) != 0 {
			t.Fatalf("require_claim not met: %d", j.p.status)
		}

		// A primary address GitHub has not verified is refused.
		gh.mu.Lock()
		gh.verified = false
		gh.mu.Unlock()
		j = &journey{t: t, b: e.browser()}
		j.get(r.authURL("st", "n", testVerifier))
		j.run("GitHub")
		if j.p.status != http.StatusForbidden || j.b.hasSessionCookie() {
			t.Fatalf("unverified GitHub email: %d", j.p.status)
		}
	})
}
