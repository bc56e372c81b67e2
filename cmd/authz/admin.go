package main

import (
	"bufio"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/store"
	"github.com/authzd/authz/provider/tokens"
)

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// adminStore opens the configured store for an administrative command. The
// memory store lives only inside a running server, so changing it from
// another process would silently do nothing: refuse instead.
func (e env) adminStore(cfg *config) (store.Store, error) {
	if cfg.DatabaseURL == "" {
		return nil, errors.New("this command changes the database, but none is configured: set AUTHZ_DATABASE_URL (the in-memory store lives only inside a running server)")
	}
	// Administrative commands never change the schema: against an older
	// one they say "run authz migrate" (migrations.Check).
	st, _, err := e.openStore(cfg, false)
	return st, err
}

// adminCommand parses flags (with the shared configuration) and opens the store.
func (e env) adminCommand(name string, args []string, extra func(fs *flag.FlagSet)) (store.Store, []string, *config, error) {
	cfg := &config{}
	fs, err := e.flags(name, cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	if extra != nil {
		extra(fs)
	}
	pos, err := parse(fs, cfg, args)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := noArguments(name, pos); err != nil {
		return nil, nil, nil, err
	}
	st, err := e.adminStore(cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	return st, pos, cfg, nil
}

// clientView is how the CLI shows a client (never its secret hash).
type clientView struct {
	ClientID     string               `json:"client_id"`
	ClientSecret string               `json:"client_secret,omitempty"`
	Trust        string               `json:"trust"`
	CreatedAt    time.Time            `json:"created_at"`
	UsedAt       *time.Time           `json:"used_at,omitempty"`
	Metadata     store.ClientMetadata `json:"metadata"`
}

func viewOf(c store.Client, secret string) clientView {
	v := clientView{ClientID: c.ID, ClientSecret: secret, Trust: c.Trust, CreatedAt: c.CreatedAt, Metadata: c.Metadata}
	if !c.UsedAt.IsZero() {
		v.UsedAt = &c.UsedAt
	}
	return v
}

// clientFlags are the client metadata flags of `client create` and
// `client update`: everything RFC 7591 registration accepts, plus the
// administrator's allowances (scopes and resources).
type clientFlags struct {
	name, appType, authMethod, clientURI, logoURI, tosURI, policyURI string
	softwareID, softwareVersion, jwksURI, jwks, idTokenAlg           string
	public, introspect                                               bool
	redirects, scopes, resources, grants, contacts, postLogout       listFlag
}

func (f *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.name, "name", "", "client name shown on the consent page")
	fs.Var(&f.redirects, "redirect-uri", "redirect URI (repeatable)")
	fs.BoolVar(&f.public, "public", false, "public client (no secret; PKCE protects it)")
	fs.Var(&f.scopes, "scope", "scope the client may request (repeatable)")
	fs.Var(&f.resources, "resource", "resource the client may request tokens for (repeatable; none: every configured resource)")
	fs.Var(&f.grants, "grant-type", "grant type: authorization_code, refresh_token, client_credentials (repeatable; default the first two)")
	fs.StringVar(&f.appType, "application-type", "", "web or native (default: native for loopback and private-use scheme redirects)")
	fs.StringVar(&f.authMethod, "auth-method", "", "token endpoint auth method: client_secret_basic (default), client_secret_post, private_key_jwt, none")
	fs.StringVar(&f.clientURI, "client-uri", "", "the client's home page")
	fs.StringVar(&f.logoURI, "logo-uri", "", "logo shown on the consent page")
	fs.StringVar(&f.tosURI, "tos-uri", "", "terms of service")
	fs.StringVar(&f.policyURI, "policy-uri", "", "privacy policy")
	fs.Var(&f.contacts, "contact", "contact address (repeatable)")
	fs.StringVar(&f.softwareID, "software-id", "", "RFC 7591 software_id")
	fs.StringVar(&f.softwareVersion, "software-version", "", "RFC 7591 software_version")
	fs.StringVar(&f.jwksURI, "jwks-uri", "", "URL of the client's JWK Set (private_key_jwt)")
	fs.StringVar(&f.jwks, "jwks", "", "the client's JWK Set as JSON, or @file (private_key_jwt)")
	fs.BoolVar(&f.introspect, "introspect", false, "resource server: may introspect access tokens whose audience includes one of its --resource (RFC 7662); --introspect=false removes it")
	fs.Var(&f.postLogout, "post-logout-redirect-uri", "where OpenID Connect logout may return (repeatable)")
	fs.StringVar(&f.idTokenAlg, "id-token-alg", "", "ID-token signature: RS256 (default), ES256 or EdDSA")
}

// apply copies the flags that were given onto m.
// offered refuses --scope and --resource values the server does not offer
// (AUTHZ_SCOPES, AUTHZ_RESOURCES): no request could ever obtain them.
func (f *clientFlags) offered(cfg *config) error {
	which, v, ok := provider.CheckOffered(store.ClientMetadata{Scopes: f.scopes, Resources: f.resources},
		cfg.Issuer, cfg.scopeNames(), splitList(cfg.Resources))
	switch {
	case ok:
		return nil
	case which == "scope":
		return fmt.Errorf("--scope %q: the server does not offer it (%s)", v, cfg.valued("scopes", cfg.Scopes))
	case cfg.Resources == "":
		return fmt.Errorf("--resource %q: the server does not offer it (%s is empty: the only resource is the issuer %s)", v, cfg.where("resources"), cfg.Issuer)
	}
	return fmt.Errorf("--resource %q: the server does not offer it (%s)", v, cfg.valued("resources", cfg.Resources))
}

// metadataFlags maps the RFC 7591 field a metadata error names to the
// flag that sets it.
var metadataFlags = map[string]string{
	"client_name": "--name", "redirect_uris": "--redirect-uri", "token_endpoint_auth_method": "--auth-method",
	"grant_types": "--grant-type", "scope": "--scope", "resources": "--resource", "application_type": "--application-type",
	"client_uri": "--client-uri", "logo_uri": "--logo-uri", "tos_uri": "--tos-uri", "policy_uri": "--policy-uri",
	"contacts": "--contact", "software_id": "--software-id", "software_version": "--software-version",
	"jwks": "--jwks", "jwks_uri": "--jwks-uri", "id_token_signed_response_alg": "--id-token-alg",
	"post_logout_redirect_uris": "--post-logout-redirect-uri",
}

// flagError words a refused client's metadata error for the operator: by
// the flag given ("--redirect-uri: …"), not as the OAuth error a
// registration would answer ("invalid_redirect_uri: redirect_uris: …").
func flagError(err error) error {
	var oe *oauth.Error
	if !errors.As(err, &oe) || (oe.Code != oauth.CodeInvalidClientMetadata && oe.Code != oauth.CodeInvalidRedirectURI) {
		return err
	}
	msg := oe.Description
	if field, rest, ok := strings.Cut(msg, ": "); ok && metadataFlags[field] != "" {
		msg = metadataFlags[field] + ": " + rest
	}
	if oe.Cause != nil {
		msg += ": " + oe.Cause.Error()
	}
	return errors.New(msg)
}

func (f *clientFlags) apply(fs *flag.FlagSet, m *store.ClientMetadata) error {
	var err error
	fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case "name":
			m.Name = f.name
		case "redirect-uri":
			m.RedirectURIs = f.redirects
		case "public":
			if f.public {
				m.TokenEndpointAuthMethod = oauth.AuthNone
			}
		case "scope":
			m.Scopes = f.scopes
		case "resource":
			m.Resources = f.resources
		case "introspect":
			m.Introspect = f.introspect
		case "grant-type":
			m.GrantTypes = f.grants
		case "application-type":
			m.ApplicationType = f.appType
		case "auth-method":
			m.TokenEndpointAuthMethod = f.authMethod
		case "client-uri":
			m.ClientURI = f.clientURI
		case "logo-uri":
			m.LogoURI = f.logoURI
		case "tos-uri":
			m.TOSURI = f.tosURI
		case "policy-uri":
			m.PolicyURI = f.policyURI
		case "contact":
			m.Contacts = f.contacts
		case "software-id":
			m.SoftwareID = f.softwareID
		case "software-version":
			m.SoftwareVersion = f.softwareVersion
		case "jwks-uri":
			m.JWKSURI = f.jwksURI
		case "post-logout-redirect-uri":
			m.PostLogoutRedirectURIs = f.postLogout
		case "id-token-alg":
			m.IDTokenSignedResponseAlg = f.idTokenAlg
		case "jwks":
			raw := []byte(f.jwks)
			if strings.HasPrefix(f.jwks, "@") {
				raw, err = os.ReadFile(f.jwks[1:])
			}
			if err == nil && !json.Valid(raw) {
				err = errors.New("--jwks is not JSON")
			}
			m.JWKS = raw
		}
	})
	if f.public && f.authMethod != "" && f.authMethod != oauth.AuthNone {
		return usageError{msg: "--public and --auth-method " + f.authMethod + " contradict each other"}
	}
	return err
}

func (e env) clientCreate(args []string) error {
	var f clientFlags
	var asJSON bool
	var fs *flag.FlagSet
	st, _, cfg, err := e.adminCommand("client create", args, func(set *flag.FlagSet) {
		fs = set
		f.register(fs)
		fs.BoolVar(&asJSON, "json", false, "print one JSON object")
	})
	if err != nil {
		return err
	}
	defer st.Close()
	if f.name == "" {
		return usageError{msg: "client create needs --name"}
	}
	if err := f.offered(cfg); err != nil {
		return err
	}
	m := store.ClientMetadata{
		GrantTypes:      []string{oauth.GrantAuthorizationCode, oauth.GrantRefreshToken},
		ApplicationType: provider.ApplicationTypeFor(f.redirects),
	}
	if err := f.apply(fs, &m); err != nil {
		return err
	}
	if m.Introspect && len(m.Resources) == 0 {
		return usageError{msg: "--introspect needs --resource: the resources whose tokens the client may introspect"}
	}
	c, secret, err := provider.NewClient(m, time.Now(), rand.Reader)
	if err != nil {
		return flagError(err)
	}
	c.Trust = store.TrustAdmin
	if err := st.CreateClient(e.ctx, c); err != nil {
		return err
	}
	e.auditAdmin(st, provider.ClientEvent(provider.EventClientRegistered, provider.ActorAdmin, c))
	return e.printClient(c, secret, asJSON)
}

func (e env) printClient(c store.Client, secret string, asJSON bool) error {
	v := viewOf(c, secret)
	if asJSON {
		return json.NewEncoder(e.stdout).Encode(v)
	}
	fmt.Fprintf(e.stdout, "client_id:     %s\n", c.ID)
	if secret != "" {
		fmt.Fprintf(e.stdout, "client_secret: %s\n(shown once: only its hash is stored)\n", secret)
	}
	return nil
}

// clientUpdate changes the metadata given by flags and keeps the rest. A
// client stays public or confidential (delete and re-create to change
// that); moving to a secret method, or --rotate-secret, issues a new
// secret, shown once; moving to private_key_jwt drops the secret.
func (e env) clientUpdate(args []string) error {
	var f clientFlags
	var asJSON, rotate bool
	var fs *flag.FlagSet
	st, pos, cfg, err := e.adminCommand("client update", args, func(set *flag.FlagSet) {
		fs = set
		f.register(fs)
		fs.BoolVar(&rotate, "rotate-secret", false, "issue a new client secret (the old one stops working)")
		fs.BoolVar(&asJSON, "json", false, "print one JSON object")
	})
	if err != nil {
		return err
	}
	defer st.Close()
	if len(pos) != 1 {
		return usageError{msg: "client update needs one client ID"}
	}
	if err := f.offered(cfg); err != nil {
		return err
	}
	// The change is decided on the client as the store holds it, inside
	// the store's one operation: a client's own RFC 7592 update racing this
	// one is neither undone nor has its spent registration token revived.
	var secret string
	c, err := st.UpdateClient(e.ctx, pos[0], func(c *store.Client) error {
		m := c.Metadata
		if err := f.apply(fs, &m); err != nil {
			return err
		}
		if m.Introspect && len(m.Resources) == 0 {
			return usageError{msg: "--introspect needs --resource: the resources whose tokens the client may introspect"}
		}
		if rotate && c.Metadata.TokenEndpointAuthMethod == oauth.AuthNone && m.TokenEndpointAuthMethod == oauth.AuthNone {
			return errors.New("--rotate-secret: the client is public (token_endpoint_auth_method none): it has no secret")
		}
		var err error
		secret, err = provider.UpdateClient(c, m, rotate, time.Now(), rand.Reader)
		return flagError(err)
	})
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("client %s: %w", pos[0], err)
	}
	if err != nil {
		return err
	}
	e.auditAdmin(st, provider.ClientEvent(provider.EventClientUpdated, provider.ActorAdmin, c))
	return e.printClient(c, secret, asJSON)
}

func (e env) clientList(args []string) error {
	var asJSON, selfRegistered bool
	st, _, _, err := e.adminCommand("client list", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&asJSON, "json", false, "print JSON")
		fs.BoolVar(&selfRegistered, "self-registered", false, "only clients created through dynamic registration (RFC 7591)")
	})
	if err != nil {
		return err
	}
	defer st.Close()
	all, err := st.ListClients(e.ctx)
	if err != nil {
		return err
	}
	var cs []store.Client
	for _, c := range all {
		if !selfRegistered || c.Trust == store.TrustRegistered {
			cs = append(cs, c)
		}
	}
	if asJSON {
		out := make([]clientView, 0, len(cs))
		for _, c := range cs {
			out = append(out, viewOf(c, ""))
		}
		return json.NewEncoder(e.stdout).Encode(out)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLIENT ID\tNAME\tAUTH\tTRUST\tCREATED\tLAST USED\tREDIRECT URIS")
	for _, c := range cs {
		used := "never"
		if !c.UsedAt.IsZero() {
			used = c.UsedAt.Format(time.DateOnly)
		}
		// Names come from anyone who could register: %q keeps a hostile
		// one from rewriting the terminal.
		fmt.Fprintf(tw, "%s\t%q\t%s\t%s\t%s\t%s\t%s\n", c.ID, c.Metadata.Name, c.Metadata.TokenEndpointAuthMethod, c.Trust,
			c.CreatedAt.Format(time.DateOnly), used, strings.Join(c.Metadata.RedirectURIs, " "))
	}
	return tw.Flush()
}

func (e env) clientShow(args []string) error {
	st, pos, _, err := e.adminCommand("client show", args, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	if len(pos) != 1 {
		return usageError{msg: "client show needs one client ID"}
	}
	c, err := st.GetClient(e.ctx, pos[0])
	if err != nil {
		return fmt.Errorf("client %s: %w", pos[0], err)
	}
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(viewOf(c, ""))
}

func (e env) clientDelete(args []string) error {
	st, pos, _, err := e.adminCommand("client delete", args, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	if len(pos) != 1 {
		return usageError{msg: "client delete needs one client ID"}
	}
	c, err := st.GetClient(e.ctx, pos[0])
	if err != nil {
		return fmt.Errorf("client %s: %w", pos[0], err)
	}
	if err := st.DeleteClient(e.ctx, pos[0]); err != nil {
		return fmt.Errorf("client %s: %w", pos[0], err)
	}
	e.auditAdmin(st, provider.ClientEvent(provider.EventClientDeleted, provider.ActorAdmin, c))
	fmt.Fprintf(e.stdout, "deleted client %s and revoked its grants\n", pos[0])
	return nil
}

// readPassword reads a password from the first line of r.
const minPasswordLength = 8

func readPassword(r io.Reader) (string, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	p := strings.TrimRight(line, "\r\n")
	if p == "" {
		return "", errors.New("no password on standard input")
	}
	// NIST SP 800-63B §5.1.1.2: at least 8 characters, no other rule.
	if utf8.RuneCountInString(p) < minPasswordLength {
		return "", fmt.Errorf("the password must be at least %d characters long (NIST SP 800-63B)", minPasswordLength)
	}
	return p, nil
}

func (e env) userCreate(args []string) error {
	var fromStdin, verified bool
	var name, email string
	st, pos, _, err := e.adminCommand("user create", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&fromStdin, "password-stdin", false, "read the password from standard input")
		fs.StringVar(&name, "name", "", "full name (OpenID Connect name claim)")
		fs.StringVar(&email, "email", "", "email address (OpenID Connect email claim)")
		fs.BoolVar(&verified, "email-verified", false, "the address is known to be the user's (email_verified; needed for linking upstream sign-ins by email)")
	})
	if err != nil {
		return err
	}
	defer st.Close()
	if len(pos) != 1 || !fromStdin {
		return usageError{msg: "usage: authz user create NAME --password-stdin"}
	}
	pw, err := readPassword(e.stdin)
	if err != nil {
		return err
	}
	u, err := provider.NewUser(pos[0], pw, provider.UserProfile{Name: name, Email: email, EmailVerified: verified}, time.Now(), rand.Reader)
	if err != nil {
		return err
	}
	if err := st.CreateUser(e.ctx, u); err != nil {
		if errors.Is(err, store.ErrAlreadyExists) {
			return fmt.Errorf("user %q already exists", pos[0])
		}
		return err
	}
	fmt.Fprintf(e.stdout, "created user %s (%s)\n", pos[0], u.ID)
	return nil
}

func (e env) userSetPassword(args []string) error {
	var fromStdin bool
	st, pos, _, err := e.adminCommand("user set-password", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&fromStdin, "password-stdin", false, "read the password from standard input")
	})
	if err != nil {
		return err
	}
	defer st.Close()
	if len(pos) != 1 || !fromStdin {
		return usageError{msg: "usage: authz user set-password NAME --password-stdin"}
	}
	u, err := st.GetUserByUsername(e.ctx, pos[0])
	if err != nil {
		return fmt.Errorf("user %q: %w", pos[0], err)
	}
	pw, err := readPassword(e.stdin)
	if err != nil {
		return err
	}
	hash, err := provider.HashPassword(pw, rand.Reader)
	if err != nil {
		return err
	}
	if err := st.SetUserPassword(e.ctx, u.ID, hash); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "password of %s changed\n", pos[0])
	return nil
}

func (e env) userDelete(args []string) error {
	st, pos, _, err := e.adminCommand("user delete", args, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	if len(pos) != 1 {
		return usageError{msg: "usage: authz user delete NAME"}
	}
	u, err := st.GetUserByUsername(e.ctx, pos[0])
	if err != nil {
		return fmt.Errorf("user %q: %w", pos[0], err)
	}
	if err := st.DeleteUser(e.ctx, u.ID); err != nil {
		return err
	}
	e.auditAdmin(st, store.AuditEvent{Name: provider.EventUserDeleted, Subject: u.ID,
		Details: map[string]string{"username": u.Username, "grants": "revoked"}})
	fmt.Fprintf(e.stdout, "deleted user %s and revoked their grants\n", pos[0])
	return nil
}

// userUnlock clears a user's failed-login counts from every address, so a
// locked-out user can sign in at once (the counts live in the store, so
// every replica sees the unlock).
func (e env) userUnlock(args []string) error {
	st, pos, _, err := e.adminCommand("user unlock", args, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	if len(pos) != 1 {
		return usageError{msg: "usage: authz user unlock NAME"}
	}
	u, err := st.GetUserByUsername(e.ctx, pos[0])
	if err != nil {
		return fmt.Errorf("user %q: %w", pos[0], err)
	}
	n, err := provider.UnlockUser(e.ctx, st, u.Username)
	if err != nil {
		return err
	}
	e.auditAdmin(st, store.AuditEvent{Name: provider.EventLockoutCleared, Subject: u.ID,
		Details: map[string]string{"username": u.Username, "counters": fmt.Sprint(n)}})
	fmt.Fprintf(e.stdout, "unlocked user %s (%d failed-sign-in counter(s) cleared)\n", u.Username, n)
	return nil
}

func (e env) userList(args []string) error {
	st, _, _, err := e.adminCommand("user list", args, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	us, err := st.ListUsers(e.ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USERNAME\tID\tPROVIDER\tEMAIL\tCREATED")
	for _, u := range us {
		prov, email := u.Provider, u.Email
		if prov == "" {
			prov = "local"
		}
		if email == "" {
			email = "-"
		} else if u.EmailVerified {
			email += " (verified)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", u.Username, u.ID, prov, email, u.CreatedAt.Format(time.RFC3339))
	}
	return tw.Flush()
}

// keysCommand opens the store for a signing-key command and reads the
// current and previous encryption keys. The caller closes the store.
func (e env) keysCommand(name string, args []string) (store.Store, *config, []byte, [][]byte, error) {
	st, _, cfg, err := e.adminCommand(name, args, nil)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	key, err := cfg.encryptionKey()
	if err == nil {
		var prev [][]byte
		if prev, err = cfg.previousKeys(); err == nil {
			return st, cfg, key, prev, nil
		}
	}
	st.Close()
	return nil, nil, nil, nil, err
}

// keysRotate adds an access-token key and an ID-token key for every
// algorithm that has one: every server publishes them at its next reload
// and signs with them only after twice the reload interval, so no replica
// meets a token whose key it has not loaded.
func (e env) keysRotate(args []string) error {
	st, cfg, key, prev, err := e.keysCommand("keys rotate", args)
	if err != nil {
		return err
	}
	defer st.Close()
	now := time.Now()
	keys, err := provider.RotateSigningKeys(e.ctx, st, key, cfg.SigningAlg, now, now.Add(provider.KeyActivationDelay(cfg.KeyReloadInterval)), rand.Reader, prev...)
	for _, k := range keys {
		e.auditAdmin(st, store.AuditEvent{Name: provider.EventKeyRotated,
			Details: map[string]string{"kid": k.ID, "purpose": k.KeyPurpose(), "algorithm": k.Algorithm, "activates_at": k.ActivatesAt.UTC().Format(time.RFC3339)}})
		fmt.Fprintf(e.stdout, "%s: new key %s (%s) is published now and signs from %s\n", keyPurposeText(k), k.ID, k.Algorithm, k.ActivatesAt.UTC().Format(time.RFC3339))
	}
	if err != nil {
		if len(keys) > 0 {
			fmt.Fprintln(e.stdout, "the keys above were rotated; running keys rotate again rotates every key afresh")
		}
		return cfg.keyError(err)
	}
	if len(keys) == 1 {
		fmt.Fprintln(e.stdout, "ID tokens: no ID-token key yet (none has been issued); the first is made when an ID token needs it")
	}
	fmt.Fprintln(e.stdout, "the new keys sign once every server has reloaded its keys; the keys they replace stay published until the tokens they signed expire")
	return nil
}

// keysReencrypt re-seals under AUTHZ_ENCRYPTION_KEY every signing key a
// previous key (AUTHZ_PREVIOUS_ENCRYPTION_KEYS) sealed, the step of an
// encryption-key rotation after which the previous key can be dropped
// (README "Rotating the encryption key"). It refuses before changing
// anything if some key opens under none of them.
func (e env) keysReencrypt(args []string) error {
	st, cfg, key, prev, err := e.keysCommand("keys reencrypt", args)
	if err != nil {
		return err
	}
	defer st.Close()
	n, err := provider.ReencryptSigningKeys(e.ctx, st, key, prev, rand.Reader)
	if err != nil {
		if n > 0 {
			fmt.Fprintf(e.stdout, "re-sealed %d signing keys before the error; running keys reencrypt again is safe\n", n)
		}
		if errors.Is(err, provider.ErrWrongEncryptionKey) {
			return fmt.Errorf("%s and %s: %w", cfg.where("encryption-key"), cfg.where("previous-encryption-keys"), err)
		}
		return err
	}
	fmt.Fprintf(e.stdout, "re-sealed %d signing keys under the current encryption key\n", n)
	return nil
}

// keyPurposeText says in words what a key signs.
func keyPurposeText(k store.SigningKey) string {
	if alg, ok := store.IDTokenAlgorithm(k.KeyPurpose()); ok {
		return "ID tokens (" + alg + ")"
	}
	return "access tokens"
}

// keysList shows every stored signing key, access-token keys first, then
// ID-token keys by algorithm, each newest first, with its state and dates.
func (e env) keysList(args []string) error {
	st, _, cfg, err := e.adminCommand("keys list", args, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	keys, err := st.ListSigningKeys(e.ctx)
	if err != nil {
		return err
	}
	// Stable: within a purpose, the store's newest-first order stays.
	slices.SortStableFunc(keys, func(a, b store.SigningKey) int {
		_, aID := store.IDTokenAlgorithm(a.KeyPurpose())
		_, bID := store.IDTokenAlgorithm(b.KeyPurpose())
		if aID != bID {
			if aID {
				return 1
			}
			return -1
		}
		return strings.Compare(a.KeyPurpose(), b.KeyPurpose())
	})
	now := time.Now()
	date := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format(time.RFC3339)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSIGNS\tALGORITHM\tSTATE\tCREATED\tSIGNS FROM\tRETIRED")
	for _, k := range keys {
		signs := "access tokens"
		if _, ok := store.IDTokenAlgorithm(k.KeyPurpose()); ok {
			signs = "ID tokens"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, signs, k.Algorithm, provider.KeyState(k, now, cfg.AccessTokenTTL),
			date(k.CreatedAt), date(k.Activation()), date(k.RetiredAt))
	}
	return tw.Flush()
}

func (e env) initialAccessCreate(args []string) error {
	var ttl time.Duration
	var grants, scopes, resources listFlag
	st, _, cfg, err := e.adminCommand("token initial-access create", args, func(fs *flag.FlagSet) {
		fs.DurationVar(&ttl, "ttl", 0, "lifetime (0: never expires)")
		fs.Var(&grants, "allow-grant", "grant type a client registered with this token may have beyond the anonymous ones: client_credentials (repeatable)")
		fs.Var(&scopes, "scope", "scope allowance of clients registered with this token (repeatable; may include admin-only scopes)")
		fs.Var(&resources, "resource", "resource allowance of clients registered with this token (repeatable)")
	})
	if err != nil {
		return err
	}
	defer st.Close()
	for _, g := range grants {
		if g != oauth.GrantClientCredentials {
			return usageError{msg: "--allow-grant: only client_credentials needs an administrator's permission, not " + g}
		}
	}
	// client_credentials tokens have no user consenting to them: the
	// administrator names what they may carry, never "everything".
	if len(grants) > 0 && (len(scopes) == 0 || len(resources) == 0) {
		return usageError{msg: "--allow-grant client_credentials needs --scope and --resource: the allowances of clients registered with the token"}
	}
	// 0 is "never expires"; a negative lifetime is a slip (the sign of
	// "expires 1h ago"?), never to be read as forever.
	if ttl < 0 {
		return usageError{msg: fmt.Sprintf("--ttl %v: a lifetime cannot be negative (0: the token never expires)", ttl)}
	}
	for _, r := range resources {
		if u, err := url.Parse(r); err != nil || !u.IsAbs() || u.Host == "" || u.Fragment != "" {
			return usageError{msg: "--resource " + r + " is not an absolute URL without a fragment (RFC 8707)"}
		}
	}
	// The allowances are held to what the server offers, as client create
	// holds a client's: a scope or resource no request can obtain is a typo.
	if err := (&clientFlags{scopes: scopes, resources: resources}).offered(cfg); err != nil {
		return err
	}
	secret, err := tokens.NewSecret(rand.Reader, tokens.PrefixInitialAccessToken)
	if err != nil {
		return err
	}
	now := time.Now()
	t := store.InitialAccessToken{Hash: tokens.Hash(secret), CreatedAt: now, AllowGrants: grants, Scopes: scopes, Resources: resources}
	if ttl > 0 {
		t.ExpiresAt = now.Add(ttl)
	}
	if err := st.CreateInitialAccessToken(e.ctx, t); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s\n", secret)
	return nil
}
