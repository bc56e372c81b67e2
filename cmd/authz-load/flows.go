package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authzd/authz/provider/pkce"
)

// Paths of the server under test (provider.Path*; repeated here as the
// protocol a client sees, so the load program imports no server code).
const (
	pathAuthorize  = "/oauth2/authorize"
	pathToken      = "/oauth2/token"
	pathRevoke     = "/oauth2/revoke"
	pathIntrospect = "/oauth2/introspect"
	pathLogin      = "/login"
)

// loader is everything the flows share: configuration, one HTTP client
// and one signed-in browser.
type loader struct {
	cfg      *config
	client   *http.Client
	browser  *http.Client // cookies, no redirects followed
	verifier string       // PKCE (RFC 7636), S256 only
	next     atomic.Uint64
	loginMu  sync.Mutex
	loggedIn bool
	pool     *pgxpool.Pool // -database-url, for the bound modes and the soak's checks
}

func newLoader(cfg *config, conns int) *loader {
	tr := &http.Transport{MaxIdleConns: conns * 4, MaxIdleConnsPerHost: conns * 2, IdleConnTimeout: time.Minute}
	jar, _ := cookiejar.New(nil)
	var b [32]byte
	_, _ = rand.Read(b[:])
	return &loader{
		cfg:    cfg,
		client: &http.Client{Timeout: 30 * time.Second, Transport: tr},
		browser: &http.Client{Timeout: 30 * time.Second, Transport: tr, Jar: jar,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		verifier: fmt.Sprintf("%x", b),
	}
}

// base picks the replica for a request: successive requests rotate over
// -replicas, so a token minted on one replica is used on the next.
func (l *loader) base() string {
	r := l.cfg.replicas
	return r[int(l.next.Add(1)%uint64(len(r)))]
}

func (l *loader) do(req *http.Request, c *http.Client) (result, http.Header) {
	resp, err := c.Do(req)
	if err != nil {
		// No answer (a replica down): pause, so the failure is counted
		// without the workers spinning on refused connections.
		time.Sleep(10 * time.Millisecond)
		return result{err: err}, nil
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return result{status: resp.StatusCode, body: body, err: err}, resp.Header
}

// post sends a form with client_secret_basic (RFC 6749 §2.3.1) when id is
// confidential, else with client_id in the body.
func (l *loader) post(path string, form url.Values, id, secret string) result {
	if secret == "" && id != "" {
		form = cloneWith(form, "client_id", id)
	}
	req, _ := http.NewRequest("POST", l.base()+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if secret != "" {
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	}
	r, _ := l.do(req, l.client)
	return r
}

func cloneWith(form url.Values, k, v string) url.Values {
	out := make(url.Values, len(form)+1)
	for key, vals := range form {
		out[key] = vals
	}
	out.Set(k, v)
	return out
}

// tokenAnswer is the part of a token endpoint answer the load program
// reads. Decoding into it, once per answer, keeps the load program's own
// CPU per request low: it shares the machine with the server it measures.
type tokenAnswer struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
}

// tokens decodes a token endpoint answer (zero values when it is not one).
func tokens(body []byte) tokenAnswer {
	var t tokenAnswer
	_ = json.Unmarshal(body, &t)
	return t
}

// ---- client_credentials, introspection, revocation, resource ----

func (l *loader) ccForm() url.Values {
	f := url.Values{"grant_type": {"client_credentials"}, "scope": {l.cfg.scope}}
	if l.cfg.resource != "" {
		f.Set("resource", l.cfg.resource)
	}
	return f
}

func (l *loader) ccToken() result {
	r := l.post(pathToken, l.ccForm(), l.cfg.ccID, l.cfg.ccSecret)
	if r.tok = tokens(r.body); r.outcome() == "" && r.tok.AccessToken == "" {
		r.err = errors.New("no access_token")
	}
	return r
}

// introspect answers ok only for "active": true (RFC 7662 §2.2).
func (l *loader) introspect(token string, wantActive bool) result {
	r := l.post(pathIntrospect, url.Values{"token": {token}}, l.cfg.ccID, l.cfg.ccSecret)
	if r.outcome() == "" {
		var a struct {
			Active bool `json:"active"`
		}
		_ = json.Unmarshal(r.body, &a)
		if a.Active != wantActive {
			r.err = fmt.Errorf("active=%v", a.Active)
		}
	}
	return r
}

func (l *loader) revoke(token, id, secret string) result {
	return l.post(pathRevoke, url.Values{"token": {token}}, id, secret)
}

func (l *loader) getResource(token string) result {
	req, _ := http.NewRequest("GET", l.cfg.target, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	r, h := l.do(req, l.client)
	if r.status != 200 && h != nil && len(r.body) == 0 {
		r.body = []byte(`{"error":"` + challengeError(h.Get("WWW-Authenticate")) + `"}`)
	}
	return r
}

// challengeError extracts error="…" from an RFC 6750 §3 challenge.
func challengeError(h string) string {
	if m := regexp.MustCompile(`error="([^"]*)"`).FindStringSubmatch(h); m != nil {
		return m[1]
	}
	return ""
}

// ---- authorization code through the real pages ----

var hiddenRe = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

func hiddenFields(body []byte) url.Values {
	v := url.Values{}
	for _, m := range hiddenRe.FindAllSubmatch(body, -1) {
		v.Add(html.UnescapeString(string(m[1])), html.UnescapeString(string(m[2])))
	}
	return v
}

func (l *loader) authorizeURL(base string) string {
	q := url.Values{
		"response_type": {"code"}, "client_id": {l.cfg.codeID}, "redirect_uri": {l.cfg.redirect},
		"scope": {l.cfg.scope}, "state": {"load"},
		"code_challenge": {pkce.ChallengeS256(l.verifier)}, "code_challenge_method": {"S256"},
	}
	if l.cfg.resource != "" {
		q.Set("resource", l.cfg.resource)
	}
	return base + pathAuthorize + "?" + q.Encode()
}

func (l *loader) browse(method, target string, form url.Values) (result, string) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, target, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	r, h := l.do(req, l.browser)
	loc := ""
	if h != nil {
		loc = h.Get("Location")
	}
	return r, loc
}

// mintCode returns an authorization code from GET /authorize. The first
// call (and any after the session is lost) signs in on the login page and
// allows on the consent page, as a person would; later calls reuse the
// session cookie and the remembered consent, so each is one request.
func (l *loader) mintCode() (string, result) {
	base := l.base()
	target := l.authorizeURL(base)
	var method string = "GET"
	var form url.Values
	for range 8 {
		r, loc := l.browse(method, target, form)
		method, form = "GET", nil
		switch {
		case r.err != nil:
			return "", r
		case r.status == http.StatusFound:
			u, err := url.Parse(loc)
			if err != nil || u.Query().Get("code") == "" {
				r.err = fmt.Errorf("redirect without a code: %s", u.Query().Get("error"))
				r.body = []byte(`{"error":"` + u.Query().Get("error") + `"}`)
				return "", r
			}
			return u.Query().Get("code"), result{status: 200}
		case r.status == http.StatusSeeOther:
			target = resolve(base, loc)
		case r.status == http.StatusOK && bytes.Contains(r.body, []byte(`name="password"`)):
			f := hiddenFields(r.body)
			f.Set("username", l.cfg.username)
			f.Set("password", l.cfg.password)
			method, form, target = "POST", f, base+pathLogin
		case r.status == http.StatusOK && bytes.Contains(r.body, []byte(`name="decision"`)):
			f := hiddenFields(r.body)
			f.Set("decision", "allow")
			method, form, target = "POST", f, base+pathAuthorize
		default:
			if r.status == 200 {
				r.status = 599 // a page we cannot drive
			}
			r.body = []byte(`{"error":"authorize_page"}`)
			return "", r
		}
	}
	return "", result{status: 599, body: []byte(`{"error":"authorize_loop"}`)}
}

func resolve(base, loc string) string {
	b, err := url.Parse(base)
	if err != nil {
		return loc
	}
	u, err := b.Parse(loc)
	if err != nil {
		return loc
	}
	// Stay on the replica we asked: a relative Location is resolved
	// against it, an absolute one (the issuer) is pointed back at it.
	u.Scheme, u.Host = b.Scheme, b.Host
	return u.String()
}

func (l *loader) exchange(code string) result {
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {l.cfg.redirect}, "code_verifier": {l.verifier}}
	return l.tokenPair(l.post(pathToken, form, l.cfg.codeID, l.cfg.codeSecret))
}

func (l *loader) refresh(rt string) result {
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
	return l.tokenPair(l.post(pathToken, form, l.cfg.codeID, l.cfg.codeSecret))
}

// tokenPair checks that a 200 carries both tokens.
func (l *loader) tokenPair(r result) result {
	if r.tok = tokens(r.body); r.outcome() == "" && (r.tok.AccessToken == "" || r.tok.RefreshToken == "") {
		r.err = errors.New("missing token")
	}
	return r
}

// newChain mints a code and exchanges it: a fresh grant and its first
// refresh token.
func (l *loader) newChain(rec *recorder) (string, bool) {
	code, r := l.mintCode()
	if !rec.untimed(r) {
		return "", false
	}
	r = l.exchange(code)
	if !rec.untimed(r) {
		return "", false
	}
	return r.tok.RefreshToken, true
}

// ---- flows ----

// A flow prepares one worker (untimed: signing in, a first grant) and
// returns its loop, which runs timed requests until ctx ends. A nil loop is
// a worker whose partner drives it (refresh_shared).
type flow func(l *loader, id, conc int) (func(ctx context.Context, rec *recorder), error)

var flows = map[string]flow{
	"client_credentials": func(l *loader, _, _ int) (func(context.Context, *recorder), error) {
		return func(ctx context.Context, rec *recorder) {
			for ctx.Err() == nil {
				rec.timed(l.ccToken)
			}
		}, nil
	},
	"introspect": func(l *loader, _, _ int) (func(context.Context, *recorder), error) {
		r := l.ccToken()
		if r.outcome() != "" {
			return nil, fmt.Errorf("getting a token to introspect: %s", r.outcome())
		}
		tok := r.tok.AccessToken
		return func(ctx context.Context, rec *recorder) {
			for ctx.Err() == nil {
				rec.timed(func() result { return l.introspect(tok, true) })
			}
		}, nil
	},
	// revoke: each request revokes a fresh access token (RFC 7009), minted
	// untimed just before, so every revocation records a new jti.
	"revoke": func(l *loader, _, _ int) (func(context.Context, *recorder), error) {
		return func(ctx context.Context, rec *recorder) {
			for ctx.Err() == nil {
				r := l.ccToken()
				if !rec.untimed(r) {
					continue
				}
				tok := r.tok.AccessToken
				rec.timed(func() result { return l.revoke(tok, l.cfg.ccID, l.cfg.ccSecret) })
			}
		}, nil
	},
	"resource": func(l *loader, _, _ int) (func(context.Context, *recorder), error) {
		if l.cfg.target == "" {
			return nil, errors.New("resource mode needs -target")
		}
		r := l.ccToken()
		if r.outcome() != "" {
			return nil, fmt.Errorf("getting a token for the resource: %s", r.outcome())
		}
		tok := r.tok.AccessToken
		return func(ctx context.Context, rec *recorder) {
			for ctx.Err() == nil {
				rec.timed(func() result { return l.getResource(tok) })
			}
		}, nil
	},
	// authorization_code: the timed request is the exchange; the code it
	// redeems comes from GET /authorize just before (untimed).
	"authorization_code": func(l *loader, _, _ int) (func(context.Context, *recorder), error) {
		if err := l.needCodeClient(); err != nil {
			return nil, err
		}
		return func(ctx context.Context, rec *recorder) {
			for ctx.Err() == nil {
				code, r := l.mintCode()
				if !rec.untimed(r) {
					continue
				}
				rec.timed(func() result { return l.exchange(code) })
			}
		}, nil
	},
	// refresh: each worker rotates its own grant's chain, as separate
	// devices would.
	"refresh": func(l *loader, _, _ int) (func(context.Context, *recorder), error) {
		if err := l.needCodeClient(); err != nil {
			return nil, err
		}
		rec0 := newRecorder()
		rt, ok := l.newChain(rec0)
		if !ok {
			return nil, fmt.Errorf("starting a refresh chain: %s", kv(rec0.errors))
		}
		return func(ctx context.Context, rec *recorder) {
			for ctx.Err() == nil {
				r, ok := rec.timed(func() result { return l.refresh(rt) })
				if ok {
					rt = r.tok.RefreshToken
					continue
				}
				if r.status == 400 {
					// The grant is gone (it should not be): count it and
					// carry on with a new one.
					rec.notes["chains lost"]++
					if next, ok := l.newChain(rec); ok {
						rt = next
					}
				}
			}
		}, nil
	},
	// refresh_shared: workers 2i and 2i+1 hold one token and present it at
	// the same moment, every round, as two processes of one host would:
	// the second is inside the grace window. The pair then continues with
	// the first answer's successor.
	"refresh_shared": func(l *loader, id, conc int) (func(context.Context, *recorder), error) {
		if id%2 == 1 {
			return nil, nil // driven by worker id-1
		}
		if err := l.needCodeClient(); err != nil {
			return nil, err
		}
		rec0 := newRecorder()
		rt, ok := l.newChain(rec0)
		if !ok {
			return nil, fmt.Errorf("starting a refresh chain: %s", kv(rec0.errors))
		}
		pair := id+1 < conc
		return func(ctx context.Context, rec *recorder) {
			partner := newRecorder()
			defer rec.merge(partner)
			if pair {
				rec.notes["pair rounds with one successor"] += 0 // reported even when none
			}
			for ctx.Err() == nil {
				if !pair {
					if r, ok := rec.timed(func() result { return l.refresh(rt) }); ok {
						rt = r.tok.RefreshToken
					}
					continue
				}
				var ra, rb result
				var oka, okb bool
				var wg sync.WaitGroup
				wg.Add(1)
				go func() { defer wg.Done(); rb, okb = partner.timed(func() result { return l.refresh(rt) }) }()
				ra, oka = rec.timed(func() result { return l.refresh(rt) })
				wg.Wait()
				rec.notes["pair rounds"]++
				sa, sb := ra.tok.RefreshToken, rb.tok.RefreshToken
				switch {
				case oka && okb:
					if sa == sb {
						rec.notes["pair rounds with one successor"]++
					}
					rt = sa
				case oka:
					rt = sa
				case okb:
					rt = sb
				default:
					rec.notes["chains lost"]++
					if next, ok := l.newChain(rec); ok {
						rt = next
					}
				}
			}
		}, nil
	},
}

func (l *loader) needCodeClient() error {
	if l.cfg.codeID == "" || l.cfg.username == "" || l.cfg.password == "" {
		return errors.New("this mode needs -code-client-id, -username and -password (AUTHZ_LOAD_PASSWORD)")
	}
	// Sign in once, through the login and consent pages, before the clock
	// starts: workers then share the session.
	l.loginMu.Lock()
	defer l.loginMu.Unlock()
	if !l.loggedIn {
		if _, r := l.mintCode(); r.outcome() != "" {
			return fmt.Errorf("signing in through the login and consent pages: %s", r.outcome())
		}
		l.loggedIn = true
	}
	return nil
}
