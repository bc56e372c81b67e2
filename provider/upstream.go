package provider

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/gorilla/mux"
	"golang.org/x/oauth2"

	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/store"
	"github.com/authzd/authz/provider/tokens"
)

// Upstream provider types.
const (
	UpstreamOIDC   = "oidc"   // any OpenID Connect provider, by discovery
	UpstreamGitHub = "github" // GitHub's OAuth apps and its REST API
)

// Upstream configures sign-in through an identity provider people already
// have. Its zero values are the safe ones: a verified email is required,
// no domain or claim restriction is implied, no linking to local users.
type Upstream struct {
	// Name is the provider's identifier in URLs and in `authz user list`
	// (lower-case letters, digits, '-').
	Name string `json:"name" yaml:"name"`
	// DisplayName is shown on the button: "Continue with <DisplayName>".
	DisplayName string `json:"display_name" yaml:"display_name"`
	// Type is UpstreamOIDC or UpstreamGitHub.
	Type string `json:"type" yaml:"type"`
	// Issuer is the OpenID provider (type oidc); its discovery document
	// gives the endpoints.
	Issuer       string `json:"issuer" yaml:"issuer"`
	ClientID     string `json:"client_id" yaml:"client_id"`
	ClientSecret string `json:"-" yaml:"-"` // from the file's client_secret or client_secret_env
	// Scopes requested upstream. Default: openid email profile (oidc),
	// read:user user:email (github).
	Scopes []string `json:"scopes" yaml:"scopes"`
	// GitHub endpoints; default github.com and api.github.com (set them
	// for GitHub Enterprise Server).
	AuthURL  string `json:"auth_url" yaml:"auth_url"`
	TokenURL string `json:"token_url" yaml:"token_url"`
	APIURL   string `json:"api_url" yaml:"api_url"`

	// AllowedEmailDomains, when set, admits only people whose verified
	// email is at one of these domains.
	AllowedEmailDomains []string `json:"allowed_email_domains" yaml:"allowed_email_domains"`
	// AllowUnverifiedEmail admits people the provider does not vouch for
	// an email of. Off by default.
	AllowUnverifiedEmail bool `json:"allow_unverified_email" yaml:"allow_unverified_email"`
	// RequireClaim admits only people whose ID token or UserInfo claim
	// Claim equals Value or, for a list, contains it (e.g. groups).
	RequireClaim *ClaimMatch `json:"require_claim" yaml:"require_claim"`
	// LinkByVerifiedEmail lets a first sign-in attach to the existing user
	// whose verified email is the one the provider verified. Off by
	// default: a provider that lets people choose their address would
	// otherwise hand over accounts.
	LinkByVerifiedEmail bool `json:"link_by_verified_email" yaml:"link_by_verified_email"`
	// Copy lists what is copied to the user at each sign-in: "name",
	// "email". Nil copies both; an empty list copies nothing.
	Copy []string `json:"copy" yaml:"copy"`
}

// ClaimMatch is a required claim value.
type ClaimMatch struct {
	Claim string `json:"claim" yaml:"claim"`
	Value string `json:"value" yaml:"value"`
}

var upstreamName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

// CheckUpstreams validates the configuration so that a mistake fails at
// start, naming the provider and the field.
func CheckUpstreams(ups []Upstream) error {
	seen := map[string]bool{}
	for i, u := range ups {
		where := fmt.Sprintf("upstream provider %d (%q)", i+1, u.Name)
		switch {
		case !upstreamName.MatchString(u.Name):
			return fmt.Errorf("%s: name must be lower-case letters, digits and '-'", where)
		case seen[u.Name]:
			return fmt.Errorf("%s: name used twice", where)
		case u.Type != UpstreamOIDC && u.Type != UpstreamGitHub:
			return fmt.Errorf("%s: type must be %s or %s", where, UpstreamOIDC, UpstreamGitHub)
		case u.ClientID == "":
			return fmt.Errorf("%s: client_id is required", where)
		case u.ClientSecret == "":
			return fmt.Errorf("%s: client secret is empty (set client_secret_env to the name of an environment variable holding it)", where)
		case u.Type == UpstreamOIDC && u.Issuer == "":
			return fmt.Errorf("%s: issuer is required for type oidc", where)
		case u.RequireClaim != nil && u.RequireClaim.Claim == "":
			return fmt.Errorf("%s: require_claim needs a claim name", where)
		}
		for _, c := range u.Copy {
			if c != "name" && c != "email" {
				return fmt.Errorf("%s: copy may list name and email, not %q", where, c)
			}
		}
		seen[u.Name] = true
	}
	return nil
}

// upstream is a configured provider at run time.
type upstream struct {
	Upstream
	client *http.Client

	mu       sync.Mutex
	provider *oidc.Provider // discovered on first use, kept once it worked
}

func (s *Server) newUpstreams() ([]*upstream, error) {
	var out []*upstream
	for _, u := range s.opts.Upstreams {
		if u.DisplayName == "" {
			u.DisplayName = u.Name
		}
		if len(u.Scopes) == 0 {
			if u.Type == UpstreamGitHub {
				u.Scopes = []string{"read:user", "user:email"}
			} else {
				u.Scopes = []string{oidc.ScopeOpenID, "email", "profile"}
			}
		}
		if u.Type == UpstreamGitHub {
			u.AuthURL = cmpOr(u.AuthURL, "https://github.com/login/oauth/authorize")
			u.TokenURL = cmpOr(u.TokenURL, "https://github.com/login/oauth/access_token")
			u.APIURL = strings.TrimSuffix(cmpOr(u.APIURL, "https://api.github.com"), "/")
		}
		out = append(out, &upstream{Upstream: u, client: s.opts.UpstreamHTTPClient})
	}
	return out, nil
}

func cmpOr(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func (s *Server) upstreamByName(name string) *upstream {
	for _, u := range s.upstreams {
		if u.Name == name {
			return u
		}
	}
	return nil
}

// ctx carries the upstream HTTP client to go-oidc and x/oauth2.
func (u *upstream) ctx(ctx context.Context) context.Context {
	return oidc.ClientContext(ctx, u.client)
}

// discover returns the provider's OpenID configuration, fetched on first
// use (authz starts while an upstream is down) and kept once it worked.
func (u *upstream) discover(ctx context.Context) (*oidc.Provider, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.provider != nil {
		return u.provider, nil
	}
	// go-oidc keeps this context for fetching keys later: it must outlive
	// the request, so only the first fetch is bounded by the request's.
	p, err := oidc.NewProvider(oidc.ClientContext(context.WithoutCancel(ctx), u.client), u.Issuer)
	if err != nil {
		return nil, err
	}
	u.provider = p
	return p, nil
}

func (u *upstream) oauth2Config(ctx context.Context, redirect string) (*oauth2.Config, error) {
	cfg := &oauth2.Config{ClientID: u.ClientID, ClientSecret: u.ClientSecret, RedirectURL: redirect, Scopes: u.Scopes}
	if u.Type == UpstreamGitHub {
		cfg.Endpoint = oauth2.Endpoint{AuthURL: u.AuthURL, TokenURL: u.TokenURL, AuthStyle: oauth2.AuthStyleInParams}
		return cfg, nil
	}
	p, err := u.discover(ctx)
	if err != nil {
		return nil, err
	}
	cfg.Endpoint = p.Endpoint()
	return cfg, nil
}

// upstreamFlow is what the browser carries between the start of an
// upstream sign-in and its callback, sealed (AES-GCM) in a short-lived
// cookie so that any replica can finish what another started and nothing
// is stored for an abandoned attempt.
type upstreamFlow struct {
	Provider string `json:"p"`
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	ReturnTo string `json:"r"`
	Expires  int64  `json:"e"`
}

const (
	upstreamCookie = "authz_upstream"
	upstreamTTL    = 10 * time.Minute
)

// flowAEAD is the cookie's cipher under key, one of s.flowKeys.
func flowAEAD(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

func (s *Server) sealFlow(f upstreamFlow) (string, error) {
	aead, err := flowAEAD(s.flowKeys[0])
	if err != nil {
		return "", err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := io.ReadFull(s.opts.Rand, nonce); err != nil {
		return "", err
	}
	plain, err := json.Marshal(f)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(aead.Seal(nonce, nonce, plain, []byte(upstreamCookie))), nil
}

// openFlow opens a cookie sealed under the current encryption key or, for
// a sign-in started before the key changed, a previous one (AES-GCM
// authenticates: a wrong key fails to open, it never yields a flow).
func (s *Server) openFlow(v string) (upstreamFlow, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil {
		return upstreamFlow{}, false
	}
	var plain []byte
	for _, k := range s.flowKeys {
		aead, err := flowAEAD(k)
		if err != nil || len(raw) < aead.NonceSize() {
			return upstreamFlow{}, false
		}
		if plain, err = aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], []byte(upstreamCookie)); err == nil {
			break
		}
	}
	if plain == nil {
		return upstreamFlow{}, false
	}
	var f upstreamFlow
	if json.Unmarshal(plain, &f) != nil || !s.opts.Now().Before(time.Unix(f.Expires, 0)) {
		return upstreamFlow{}, false
	}
	return f, true
}

func (s *Server) upstreamCallbackURL(u *upstream) string {
	return s.url(PathUpstream + u.Name + "/callback")
}

// handleUpstreamStart sends the browser to the provider with state, nonce
// and a PKCE challenge, all fresh for this attempt.
func (s *Server) handleUpstreamStart(w http.ResponseWriter, r *http.Request) {
	u := s.upstreamByName(mux.Vars(r)["name"])
	if u == nil {
		s.renderError(w, http.StatusNotFound, "Unknown sign-in provider", "This server has no such sign-in provider.", oauth.CodeInvalidRequest)
		return
	}
	cfg, err := u.oauth2Config(r.Context(), s.upstreamCallbackURL(u))
	if err != nil {
		s.upstreamFailed(w, r, u, http.StatusBadGateway, "discovery failed", err)
		return
	}
	var secrets [3]string
	for i := range secrets {
		if secrets[i], err = tokens.NewSecret(s.opts.Rand, ""); err != nil {
			s.upstreamFailed(w, r, u, http.StatusInternalServerError, "randomness failed", err)
			return
		}
	}
	f := upstreamFlow{
		Provider: u.Name, State: secrets[0], Nonce: secrets[1], Verifier: secrets[2],
		ReturnTo: s.safeReturnTo(r.URL.Query().Get("return_to")), Expires: s.opts.Now().Add(upstreamTTL).Unix(),
	}
	sealed, err := s.sealFlow(f)
	if err != nil {
		s.upstreamFailed(w, r, u, http.StatusInternalServerError, "sealing the sign-in cookie failed", err)
		return
	}
	s.setCookie(w, upstreamCookie, sealed, int(upstreamTTL.Seconds()))
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(f.Verifier)}
	if u.Type == UpstreamOIDC {
		opts = append(opts, oidc.Nonce(f.Nonce))
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, cfg.AuthCodeURL(f.State, opts...), http.StatusFound)
}

// upstreamIdentity is what a provider said about the person.
type upstreamIdentity struct {
	subject, email, name string
	emailVerified        bool
	claims               map[string]any
}

// errDenied is an admission rule saying no; its message is for the person.
type errDenied struct{ msg string }

func (e *errDenied) Error() string { return e.msg }

// handleUpstreamCallback finishes an upstream sign-in. Every failure is a
// page for the person and one log line for the operator; no failure
// creates a session.
func (s *Server) handleUpstreamCallback(w http.ResponseWriter, r *http.Request) {
	u := s.upstreamByName(mux.Vars(r)["name"])
	if u == nil {
		s.renderError(w, http.StatusNotFound, "Unknown sign-in provider", "This server has no such sign-in provider.", oauth.CodeInvalidRequest)
		return
	}
	sealed := s.cookie(r, upstreamCookie)
	// The attempt is single-use whatever happens next.
	s.setCookie(w, upstreamCookie, "", -1)
	if sealed == "" {
		s.upstreamFailed(w, r, u, http.StatusBadRequest, "no sign-in in progress (cookie missing)", nil)
		return
	}
	f, ok := s.openFlow(sealed)
	if !ok || f.Provider != u.Name {
		s.upstreamFailed(w, r, u, http.StatusBadRequest, "sign-in cookie invalid or expired", nil)
		return
	}
	q := r.URL.Query()
	if !hmac.Equal([]byte(q.Get("state")), []byte(f.State)) {
		s.upstreamFailed(w, r, u, http.StatusBadRequest, "state mismatch", nil)
		return
	}
	if e := q.Get("error"); e != "" {
		s.upstreamFailed(w, r, u, http.StatusForbidden, "the provider answered "+strconv.Quote(e), nil)
		return
	}
	if q.Get("code") == "" {
		s.upstreamFailed(w, r, u, http.StatusBadRequest, "no code in the callback", nil)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
	defer cancel()
	id, err := s.upstreamExchange(ctx, u, q.Get("code"), f)
	var denied *errDenied
	switch {
	case errors.As(err, &denied):
		s.upstreamFailed(w, r, u, http.StatusForbidden, denied.msg, nil)
		return
	case err != nil:
		s.upstreamFailed(w, r, u, http.StatusBadGateway, "the provider's answer could not be used", err)
		return
	}
	if err := u.admit(id); err != nil {
		s.upstreamFailed(w, r, u, http.StatusForbidden, err.Error(), nil)
		return
	}
	user, created, err := s.signInUpstream(r.Context(), u, id)
	if err != nil {
		s.upstreamFailed(w, r, u, http.StatusServiceUnavailable, "storing the user failed", err)
		return
	}
	if err := s.startSession(w, r, user.ID, s.opts.Now()); err != nil {
		s.upstreamFailed(w, r, u, http.StatusServiceUnavailable, "starting the session failed", err)
		return
	}
	s.upstreamSignedIn(r.Context(), u, user, created)
	http.Redirect(w, r, f.ReturnTo, http.StatusSeeOther)
}

// upstreamExchange redeems the code (with the PKCE verifier) and learns who
// signed in: for OpenID Connect from the ID token, verified by go-oidc
// (signature, iss, aud, exp) with the nonce of this attempt, then UserInfo
// for the claims the ID token leaves out; for GitHub from its API.
func (s *Server) upstreamExchange(ctx context.Context, u *upstream, code string, f upstreamFlow) (upstreamIdentity, error) {
	cfg, err := u.oauth2Config(ctx, s.upstreamCallbackURL(u))
	if err != nil {
		return upstreamIdentity{}, err
	}
	tok, err := cfg.Exchange(u.ctx(ctx), code, oauth2.VerifierOption(f.Verifier))
	if err != nil {
		return upstreamIdentity{}, fmt.Errorf("token exchange: %w", err)
	}
	if u.Type == UpstreamGitHub {
		return u.githubIdentity(ctx, tok)
	}
	p, err := u.discover(ctx)
	if err != nil {
		return upstreamIdentity{}, err
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return upstreamIdentity{}, errors.New("no id_token in the token response")
	}
	idt, err := p.Verifier(&oidc.Config{ClientID: u.ClientID, Now: s.opts.Now}).Verify(u.ctx(ctx), raw)
	if err != nil {
		return upstreamIdentity{}, fmt.Errorf("ID token: %w", err)
	}
	if !hmac.Equal([]byte(idt.Nonce), []byte(f.Nonce)) {
		return upstreamIdentity{}, errors.New("ID token nonce does not match this sign-in")
	}
	claims := map[string]any{}
	if err := idt.Claims(&claims); err != nil {
		return upstreamIdentity{}, err
	}
	if p.UserInfoEndpoint() != "" {
		ui, err := p.UserInfo(u.ctx(ctx), oauth2.StaticTokenSource(tok))
		if err != nil {
			return upstreamIdentity{}, fmt.Errorf("userinfo: %w", err)
		}
		// OIDC Core §5.3.4: UserInfo's sub must be the ID token's.
		if ui.Subject != idt.Subject {
			return upstreamIdentity{}, errors.New("userinfo names another subject than the ID token")
		}
		extra := map[string]any{}
		if err := ui.Claims(&extra); err != nil {
			return upstreamIdentity{}, err
		}
		for k, v := range extra {
			if _, ok := claims[k]; !ok {
				claims[k] = v
			}
		}
	}
	id := upstreamIdentity{subject: idt.Subject, claims: claims}
	id.email, _ = claims["email"].(string)
	id.emailVerified = claimTrue(claims["email_verified"])
	id.name, _ = claims["name"].(string)
	return id, nil
}

// claimTrue reads email_verified, which some providers send as a string.
func claimTrue(v any) bool {
	switch b := v.(type) {
	case bool:
		return b
	case string:
		return b == "true"
	}
	return false
}

// githubIdentity reads GET /user and GET /user/emails (GitHub REST API):
// the subject is the numeric user id (a login can be renamed), the email
// the primary verified one.
func (u *upstream) githubIdentity(ctx context.Context, tok *oauth2.Token) (upstreamIdentity, error) {
	get := func(path string, v any) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.APIURL+path, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Accept", "application/vnd.github+json")
		req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
		tok.SetAuthHeader(req)
		resp, err := u.client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GitHub %s answered %d", path, resp.StatusCode)
		}
		return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v)
	}
	var user struct {
		ID    int64  `json:"id"`
		Login string `json:"login"`
		Name  string `json:"name"`
	}
	if err := get("/user", &user); err != nil {
		return upstreamIdentity{}, err
	}
	if user.ID == 0 {
		return upstreamIdentity{}, errors.New("GitHub /user has no id")
	}
	var emails []struct {
		Email    string `json:"email"`
		Primary  bool   `json:"primary"`
		Verified bool   `json:"verified"`
	}
	if err := get("/user/emails", &emails); err != nil {
		return upstreamIdentity{}, err
	}
	id := upstreamIdentity{subject: strconv.FormatInt(user.ID, 10), name: user.Name,
		claims: map[string]any{"login": user.Login, "name": user.Name}}
	for _, e := range emails {
		if e.Primary {
			id.email, id.emailVerified = e.Email, e.Verified
		}
	}
	if id.name == "" {
		id.name = user.Login
	}
	id.claims["email"], id.claims["email_verified"] = id.email, id.emailVerified
	return id, nil
}

// admit applies the provider's admission rules.
func (u *upstream) admit(id upstreamIdentity) error {
	if id.subject == "" {
		return &errDenied{"the provider did not identify the account"}
	}
	if !u.AllowUnverifiedEmail && (id.email == "" || !id.emailVerified) {
		return &errDenied{"the provider has no verified email address for this account"}
	}
	if len(u.AllowedEmailDomains) > 0 {
		// A domain rule counts only an address the provider verified.
		at := strings.LastIndex(id.email, "@")
		if at < 0 || !id.emailVerified || !slices.ContainsFunc(u.AllowedEmailDomains, func(d string) bool {
			return strings.EqualFold(strings.TrimPrefix(d, "@"), id.email[at+1:])
		}) {
			return &errDenied{"accounts of this email domain may not sign in here"}
		}
	}
	if m := u.RequireClaim; m != nil {
		ok := false
		switch v := id.claims[m.Claim].(type) {
		case string:
			ok = v == m.Value
		case []any:
			ok = slices.ContainsFunc(v, func(x any) bool { s, _ := x.(string); return s == m.Value })
		}
		if !ok {
			return &errDenied{"this account is not in the group allowed to sign in here"}
		}
	}
	return nil
}

// signInUpstream finds, links or creates the local user.
func (s *Server) signInUpstream(ctx context.Context, u *upstream, id upstreamIdentity) (store.User, bool, error) {
	newID, err := s.newID()
	if err != nil {
		return store.User{}, false, err
	}
	profile := store.User{ID: newID, Username: u.Name + ":" + id.subject, Provider: u.Name, CreatedAt: s.opts.Now()}
	if u.Copy == nil || slices.Contains(u.Copy, "name") {
		profile.Name = id.name
	}
	if u.Copy == nil || slices.Contains(u.Copy, "email") {
		profile.Email, profile.EmailVerified = id.email, id.emailVerified
	}
	return s.store.SignInUpstream(ctx, store.UpstreamSignIn{
		Provider: u.Name, Subject: id.subject, Profile: profile,
		LinkVerifiedEmail: u.LinkByVerifiedEmail && id.emailVerified && id.email != "",
	}, s.opts.Now())
}

// upstreamSignedIn and upstreamFailed are the one place each outcome of an
// upstream sign-in is reported: a log line for the operator, the audit
// trail (login.succeeded / login.failed with the provider's name) and the
// authz_upstream_logins_total counter. Nothing secret is recorded: no code,
// state, nonce, token or upstream error body, only our own reason.
func (s *Server) upstreamSignedIn(ctx context.Context, u *upstream, user store.User, created bool) {
	s.log.InfoContext(ctx, "upstream sign-in", "provider", u.Name, "user_id", user.ID, "created", created)
	s.metrics.upstreamLogins.WithLabelValues(u.Name, "ok").Inc()
	s.audit(ctx, store.AuditEvent{Name: EventLoginSucceeded, Actor: ActorUser, Subject: user.ID, Outcome: "ok",
		Details: map[string]string{"provider": u.Name, "username": user.Username, "created": strconv.FormatBool(created)}})
}

func (s *Server) upstreamFailed(w http.ResponseWriter, r *http.Request, u *upstream, status int, reason string, cause error) {
	attrs := []any{"provider", u.Name, "reason", reason}
	if cause != nil {
		attrs = append(attrs, "cause", cause.Error())
	}
	s.log.WarnContext(r.Context(), "upstream sign-in failed", attrs...)
	s.metrics.upstreamLogins.WithLabelValues(u.Name, "failed").Inc()
	s.audit(r.Context(), store.AuditEvent{Name: EventLoginFailed, Actor: ActorUser, Outcome: "failed",
		Details: map[string]string{"provider": u.Name, "reason": reason}})
	msg := "Signing in through " + u.DisplayName + " did not work. "
	switch status {
	case http.StatusForbidden:
		msg += "The account was not allowed to sign in here: " + reason + "."
	case http.StatusBadGateway, http.StatusServiceUnavailable:
		msg += "The service could not be reached or gave an answer that could not be used. Please try again shortly."
		w.Header().Set("Retry-After", retryAfterSeconds)
	default:
		msg += "The sign-in attempt expired or did not match. Please start again."
	}
	s.renderError(w, status, "Sign-in failed", msg, "")
}

// upstreamButtons are the login page's "Continue with" links.
type upstreamButton struct{ Label, URL string }

func (s *Server) upstreamButtons(returnTo string) []upstreamButton {
	var out []upstreamButton
	for _, u := range s.upstreams {
		out = append(out, upstreamButton{
			Label: "Continue with " + u.DisplayName,
			URL:   s.issuerPath + PathUpstream + u.Name + "?" + url.Values{"return_to": {returnTo}}.Encode(),
		})
	}
	return out
}
