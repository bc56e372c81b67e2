package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authzd/authz/migrations"
	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/dcr"
	"github.com/authzd/authz/provider/store"
	"github.com/authzd/authz/provider/store/memory"
	"github.com/authzd/authz/provider/store/postgres"
	"github.com/authzd/authz/provider/tokens"
)

// config is what every subcommand reads: flags override AUTHZ_* environment
// variables, which override the defaults. README's configuration table lists
// the same names.
type config struct {
	Issuer             string
	Addr               string
	DatabaseURL        string
	LogLevel           string
	LogFormat          string
	EncryptionKey      string
	PreviousKeys       string
	SigningAlg         string
	Resources          string
	Scopes             string
	AccessTokenTTL     time.Duration
	AuthCodeTTL        time.Duration
	RefreshIdleTTL     time.Duration
	GrantTTL           time.Duration
	RefreshGrace       time.Duration
	SessionTTL         time.Duration
	JanitorInterval    time.Duration
	KeyReloadInterval  time.Duration
	RegistrationPolicy string
	MetadataDocuments  string
	RegistrationScopes string
	AdminScopes        string
	RedirectSchemes    string
	RegUnusedTTL       time.Duration
	RegIdleTTL         time.Duration
	AutoMigrate        bool
	DBTimeout          time.Duration

	LoginFailuresPerAccount int
	LoginFailuresPerIP      int
	LoginWindow             time.Duration
	RegistrationLimit       int
	RegistrationWindow      time.Duration
	TrustedProxies          string
	ProxyHeaders            string

	AdminAddr      string
	AccessLog      bool
	AuditRetention time.Duration
	OIDC           string
	LocalLogin     string
	// Upstreams come from the AUTHZ_CONFIG file only.
	Upstreams []provider.Upstream

	// origins says where each setting's value came from, by flag name:
	// originFlag, originEnv or originFile; absent, the default. An error
	// about a value names the setting as the operator gave it (where), so
	// a bad line in the file is not reported under an environment
	// variable they never set.
	origins map[string]string
	// file is the AUTHZ_CONFIG path, when there is one.
	file string
}

// Where a setting's value came from (config.origins).
const (
	originFlag = "flag"
	originEnv  = "env"
	originFile = "file"
)

// where names the setting flagName as the operator gave it: --flag on the
// command line, the key and path of the AUTHZ_CONFIG file, or otherwise
// (from the environment, or the default) its environment variable.
func (c *config) where(flagName string) string {
	switch c.origins[flagName] {
	case originFlag:
		return "--" + flagName
	case originFile:
		return "AUTHZ_CONFIG " + c.file + ": " + flagName
	}
	for _, s := range c.settings() {
		if s.flag == flagName {
			return s.env
		}
	}
	return flagName
}

// valued is where(flagName) with the value given, quoted: NAME="value".
func (c *config) valued(flagName, value string) string {
	return fmt.Sprintf("%s=%q", c.where(flagName), value)
}

// markFlags records the configuration flags given on the command line
// (after fs.Parse), which override the environment and the file.
func (c *config) markFlags(fs *flag.FlagSet) {
	if c.origins == nil {
		c.origins = map[string]string{}
	}
	settings := c.settings()
	fs.Visit(func(f *flag.Flag) {
		if slices.ContainsFunc(settings, func(s setting) bool { return s.flag == f.Name }) {
			c.origins[f.Name] = originFlag
		}
	})
}

// setting is one row of the configuration table. Defaults that are the
// server's own come from provider's exported defaults, never copies.
type setting struct {
	flag, env, def, usage string
	// option names the provider.Options field the setting feeds, so that
	// provider's validation errors (*provider.OptionError) are reported
	// under the setting's name as given (config.where).
	option string
	// zeroOK: 0 is a meaningful value. Otherwise a duration or count of 0
	// is refused: provider reads zero as "unset", and the CLI's defaults
	// are never zero, so a 0 here was typed by the user.
	zeroOK  bool
	str     *string
	dur     *time.Duration
	boolean *bool
	integer *int
	// secret: the value is never shown (not as the flag's default in -h or
	// in a usage error, not in an error message).
	secret bool
}

func (c *config) settings() []setting {
	return []setting{
		{flag: "issuer", env: "AUTHZ_ISSUER", option: "Issuer", def: "http://localhost:8080", usage: "issuer URL (RFC 8414); every endpoint lives under it", str: &c.Issuer},
		{flag: "addr", env: "AUTHZ_ADDR", def: "127.0.0.1:8080", usage: "listen address", str: &c.Addr},
		{flag: "database-url", env: "AUTHZ_DATABASE_URL", def: "", usage: "PostgreSQL URL; empty runs on the in-memory store (data lost on exit)", str: &c.DatabaseURL, secret: true},
		{flag: "log-level", env: "AUTHZ_LOG_LEVEL", def: "info", usage: "debug, info, warn or error", str: &c.LogLevel},
		{flag: "log-format", env: "AUTHZ_LOG_FORMAT", def: "text", usage: "text or json", str: &c.LogFormat},
		{flag: "encryption-key", env: "AUTHZ_ENCRYPTION_KEY", option: "EncryptionKey", def: "", usage: "base64 of 32 bytes encrypting signing keys at rest (required with PostgreSQL; make one with: openssl rand -base64 32)", str: &c.EncryptionKey, secret: true},
		{flag: "previous-encryption-keys", env: "AUTHZ_PREVIOUS_ENCRYPTION_KEYS", option: "PreviousEncryptionKeys", def: "", usage: "comma-separated encryption keys the current one replaced: they only open what they sealed (signing keys until \"authz keys reencrypt\", in-flight forms, sign-ins and refresh retries)", str: &c.PreviousKeys, secret: true},
		{flag: "signing-alg", env: "AUTHZ_SIGNING_ALG", option: "SigningAlgorithm", def: provider.DefaultSigningAlgorithm, usage: "access-token signing algorithm: ES256 or EdDSA", str: &c.SigningAlg},
		{flag: "resources", env: "AUTHZ_RESOURCES", option: "Resources", def: "", usage: "comma-separated protected resource URLs (RFC 8707); default: the issuer", str: &c.Resources},
		{flag: "scopes", env: "AUTHZ_SCOPES", option: "Scopes", def: "", usage: "comma-separated scopes the server offers, each NAME or NAME=description shown on the consent page", str: &c.Scopes},
		{flag: "access-token-ttl", env: "AUTHZ_ACCESS_TOKEN_TTL", option: "AccessTokenTTL", def: short(provider.DefaultAccessTokenTTL), usage: "access-token lifetime", dur: &c.AccessTokenTTL},
		{flag: "auth-code-ttl", env: "AUTHZ_AUTH_CODE_TTL", option: "AuthCodeTTL", def: short(provider.DefaultAuthCodeTTL), usage: "authorization-code lifetime (at most " + short(provider.MaxAuthCodeTTL) + ")", dur: &c.AuthCodeTTL},
		{flag: "refresh-idle-ttl", env: "AUTHZ_REFRESH_IDLE_TTL", option: "RefreshIdleTTL", def: short(provider.DefaultRefreshIdleTTL), usage: "refresh-token idle lifetime", dur: &c.RefreshIdleTTL},
		{flag: "grant-ttl", env: "AUTHZ_GRANT_TTL", option: "GrantTTL", def: short(provider.DefaultGrantTTL), usage: "absolute lifetime of a grant (all its refresh tokens)", dur: &c.GrantTTL},
		{flag: "refresh-grace", env: "AUTHZ_REFRESH_GRACE", option: "RefreshGrace", zeroOK: true, def: short(provider.DefaultRefreshGrace), usage: "how long a rotated refresh token still yields its one successor (concurrent refreshes, retries); 0 disables, else at least the " + short(provider.RetryAfter) + " Retry-After", dur: &c.RefreshGrace},
		{flag: "session-ttl", env: "AUTHZ_SESSION_TTL", option: "SessionTTL", def: short(provider.DefaultSessionTTL), usage: "login session lifetime", dur: &c.SessionTTL},
		{flag: "janitor-interval", env: "AUTHZ_JANITOR_INTERVAL", option: "JanitorInterval", def: short(provider.DefaultJanitorInterval), usage: "how often expired records and old signing keys are removed", dur: &c.JanitorInterval},
		{flag: "key-reload-interval", env: "AUTHZ_KEY_RELOAD_INTERVAL", option: "KeyRefreshInterval", def: short(provider.DefaultKeyRefreshInterval), usage: "how often signing keys are re-read; \"authz keys rotate\" activates a new key after twice this", dur: &c.KeyReloadInterval},
		{flag: "registration", env: "AUTHZ_REGISTRATION", option: "RegistrationPolicy", def: provider.DefaultRegistrationPolicy, usage: "dynamic client registration: open, token or off", str: &c.RegistrationPolicy},
		{flag: "client-metadata-documents", env: "AUTHZ_CLIENT_METADATA_DOCUMENTS", def: "on", usage: "accept an https client_id naming its client metadata document (MCP clients): on or off", str: &c.MetadataDocuments},
		{flag: "registration-scopes", env: "AUTHZ_REGISTRATION_SCOPES", option: "RegistrationScopes", def: "", usage: "comma-separated scopes self-registered clients may request; empty: every offered scope except the admin scopes; none: no scope", str: &c.RegistrationScopes},
		{flag: "admin-scopes", env: "AUTHZ_ADMIN_SCOPES", option: "AdminScopes", def: "", usage: "comma-separated offered scopes only administrator-created clients (or an initial access token's policy) may be allowed", str: &c.AdminScopes},
		{flag: "redirect-schemes", env: "AUTHZ_REDIRECT_SCHEMES", option: "RedirectSchemes", def: strings.Join(dcr.DefaultRedirectSchemes, ","), usage: "single-word private-use redirect schemes self-registered clients may use besides reverse-DNS ones (RFC 8252 §7.1); none: only reverse-DNS", str: &c.RedirectSchemes},
		{flag: "registration-unused-ttl", env: "AUTHZ_REGISTRATION_UNUSED_TTL", option: "RegistrationUnusedTTL", def: short(provider.DefaultRegistrationUnusedTTL), usage: "a self-registered or metadata-document client that never completed an authorization is deleted this long after it was first stored", dur: &c.RegUnusedTTL},
		{flag: "registration-idle-ttl", env: "AUTHZ_REGISTRATION_IDLE_TTL", option: "RegistrationIdleTTL", def: short(provider.DefaultRegistrationIdleTTL), usage: "a self-registered or metadata-document client without a live grant is deleted this long after its last use", dur: &c.RegIdleTTL},
		{flag: "auto-migrate", env: "AUTHZ_AUTO_MIGRATE", def: "true", usage: "apply database migrations at start", boolean: &c.AutoMigrate},
		{flag: "db-timeout", env: "AUTHZ_DB_TIMEOUT", option: "StoreTimeout", def: short(provider.DefaultStoreTimeout), usage: "deadline of every database call, start-up included (applying migrations: 10 times it); past it a request answers 503 temporarily_unavailable and start-up fails", dur: &c.DBTimeout},
		{flag: "login-failures-per-account", env: "AUTHZ_LOGIN_FAILURES_PER_ACCOUNT", option: "LoginFailuresPerAccount", def: strconv.Itoa(provider.DefaultLoginFailuresPerAccount), usage: "failed sign-ins allowed per account from one client IP per login window", integer: &c.LoginFailuresPerAccount},
		{flag: "login-failures-per-ip", env: "AUTHZ_LOGIN_FAILURES_PER_IP", option: "LoginFailuresPerIP", def: strconv.Itoa(provider.DefaultLoginFailuresPerIP), usage: "failed sign-ins allowed per client IP per login window", integer: &c.LoginFailuresPerIP},
		{flag: "login-window", env: "AUTHZ_LOGIN_WINDOW", option: "LoginWindow", def: short(provider.DefaultLoginWindow), usage: "window of the sign-in limits (and how long a lockout lasts at most)", dur: &c.LoginWindow},
		{flag: "registration-limit", env: "AUTHZ_REGISTRATION_LIMIT", option: "RegistrationsPerIP", def: strconv.Itoa(provider.DefaultRegistrationsPerIP), usage: "dynamic registrations allowed per client IP per registration window", integer: &c.RegistrationLimit},
		{flag: "registration-window", env: "AUTHZ_REGISTRATION_WINDOW", option: "RegistrationWindow", def: short(provider.DefaultRegistrationWindow), usage: "window of the registration limit", dur: &c.RegistrationWindow},
		{flag: "trusted-proxies", env: "AUTHZ_TRUSTED_PROXIES", option: "TrustedProxies", def: "", usage: "comma-separated CIDRs of reverse proxies whose forwarding header (see --proxy-headers) names the client IP and whose X-Request-ID is kept; empty: the peer address", str: &c.TrustedProxies},
		{flag: "proxy-headers", env: "AUTHZ_PROXY_HEADERS", option: "ProxyHeaders", def: provider.DefaultProxyHeaders, usage: "the one header a trusted proxy names the client in: " + provider.ProxyHeadersXForwarded + " (X-Forwarded-For) or " + provider.ProxyHeadersForwarded + " (RFC 7239 Forwarded); the other is ignored", str: &c.ProxyHeaders},
		{flag: "admin-addr", env: "AUTHZ_ADMIN_ADDR", def: "127.0.0.1:9090", usage: "admin listener for /metrics (Prometheus) and /debug/pprof/; empty turns it off. Never expose it publicly", str: &c.AdminAddr},
		{flag: "access-log", env: "AUTHZ_ACCESS_LOG", def: "true", usage: "log one INFO line per request (method, route, status, duration, client id)", boolean: &c.AccessLog},
		{flag: "audit-retention", env: "AUTHZ_AUDIT_RETENTION", option: "AuditRetention", def: short(provider.DefaultAuditRetention), usage: "how long audit events are kept before the janitor deletes them", dur: &c.AuditRetention},
		{flag: "oidc", env: "AUTHZ_OIDC", option: "DisableOIDC", def: "on", usage: "OpenID Connect provider (ID tokens, UserInfo, logout): on or off", str: &c.OIDC},
		{flag: "local-login", env: "AUTHZ_LOCAL_LOGIN", option: "DisableLocalLogin", def: "on", usage: "password sign-in: on, or off to sign in through upstream providers only", str: &c.LocalLogin},
	}
}

// register adds the configuration flags to fs, with defaults from the
// environment and the AUTHZ_CONFIG file. Their values are checked here so
// a bad one is reported by name: the file's key and path, or the
// variable's name (config.where).
func (c *config) register(fs *flag.FlagSet) error {
	file, err := loadConfigFile(c.settings())
	if err != nil {
		return err
	}
	c.Upstreams, c.file, c.origins = file.upstreams, file.path, map[string]string{}
	for _, s := range c.settings() {
		def := s.def
		if v, ok := file.settings[s.flag]; ok {
			def, c.origins[s.flag] = v, originFile
		}
		if v, ok := os.LookupEnv(s.env); ok {
			def, c.origins[s.flag] = v, originEnv
		}
		switch {
		case s.str != nil && s.secret:
			// The flag's default is what -h and usage errors print: keep it
			// empty and put the environment's value in place afterwards.
			fs.StringVar(s.str, s.flag, "", s.usage+" ($"+s.env+"; its value is never shown)")
			*s.str = def
		case s.str != nil:
			fs.StringVar(s.str, s.flag, def, s.usage+" ($"+s.env+")")
		case s.integer != nil:
			n, err := strconv.Atoi(def)
			if err != nil {
				return fmt.Errorf("%s is not a whole number", c.valued(s.flag, def))
			}
			fs.IntVar(s.integer, s.flag, n, s.usage+" ($"+s.env+")")
		case s.dur != nil:
			d, err := time.ParseDuration(def)
			if err != nil {
				return fmt.Errorf("%s is not a duration (examples: 30s, 15m, 720h)", c.valued(s.flag, def))
			}
			fs.DurationVar(s.dur, s.flag, d, s.usage+" ($"+s.env+")")
		case s.boolean != nil:
			b, err := strconv.ParseBool(def)
			if err != nil {
				return fmt.Errorf("%s is not true or false", c.valued(s.flag, def))
			}
			fs.BoolVar(s.boolean, s.flag, b, s.usage+" ($"+s.env+")")
		}
	}
	return nil
}

// scopeNames are AUTHZ_SCOPES' names; scopeDescriptions the sentences
// given as NAME=description (shown on the consent page).
func (c *config) scopeNames() []string {
	var out []string
	for _, s := range splitList(c.Scopes) {
		name, _, _ := strings.Cut(s, "=")
		out = append(out, strings.TrimSpace(name))
	}
	return out
}

func (c *config) scopeDescriptions() map[string]string {
	out := map[string]string{}
	for _, s := range splitList(c.Scopes) {
		if name, desc, ok := strings.Cut(s, "="); ok && strings.TrimSpace(desc) != "" {
			out[strings.TrimSpace(name)] = strings.TrimSpace(desc)
		}
	}
	return out
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func (c *config) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return nil, fmt.Errorf("%s: want debug, info, warn or error", c.valued("log-level", c.LogLevel))
	}
	o := &slog.HandlerOptions{Level: level}
	switch c.LogFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, o)), nil
	}
	return nil, fmt.Errorf("%s: want text or json", c.valued("log-format", c.LogFormat))
}

// encryptionKey parses the key; with PostgreSQL it is required.
func (c *config) encryptionKey() ([]byte, error) {
	if c.EncryptionKey == "" {
		if c.DatabaseURL != "" {
			return nil, errors.New("AUTHZ_ENCRYPTION_KEY is required with a database: it encrypts the signing keys at rest. Make one with: openssl rand -base64 32")
		}
		return nil, nil
	}
	k, err := tokens.ParseEncryptionKey(c.EncryptionKey)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.where("encryption-key"), err)
	}
	return k, nil
}

// previousKeys parses the previous encryption keys, naming a bad one by
// its position only: a key's value is never echoed.
func (c *config) previousKeys() ([][]byte, error) {
	var out [][]byte
	for i, s := range splitList(c.PreviousKeys) {
		k, err := tokens.ParseEncryptionKey(s)
		if err != nil {
			return nil, fmt.Errorf("%s: key %d: %w", c.where("previous-encryption-keys"), i+1, err)
		}
		out = append(out, k)
	}
	return out, nil
}

// openStore opens the configured store. With migrate it applies pending
// migrations to PostgreSQL (serve with AUTHZ_AUTO_MIGRATE); without, it
// only checks that the schema is the one this binary needs, so that no
// command but `authz migrate` and `authz serve` ever changes the schema.
// persistent reports whether data outlives the process.
//
// Every step is bounded (startupStep): a database that accepts the
// connection and never answers fails the command with a message naming
// it, instead of hanging it. The store returned is bounded the same way
// (store.WithDeadline, AUTHZ_DB_TIMEOUT), so an administrative command's
// queries, and whatever serve asks before provider.New wraps the store
// itself, cannot hang either.
func (e env) openStore(c *config, migrate bool) (st store.Store, persistent bool, err error) {
	if c.DatabaseURL == "" {
		return memory.New(), false, nil
	}
	pg, err := e.openPostgres(c)
	if err != nil {
		return nil, false, err
	}
	if migrate {
		_, err = e.applyMigrations(c, pg)
	} else {
		err = startupStep(e.ctx, c, "checking the schema version", c.DBTimeout, func(ctx context.Context) error {
			return migrations.Check(ctx, pg.Pool())
		})
	}
	closing := boundedClose{Store: pg, limit: c.DBTimeout}
	if err != nil {
		closing.Close()
		return nil, false, err
	}
	return store.WithDeadline(closing, c.DBTimeout), true, nil
}

// boundedClose waits at most limit for the store to close. Closing the pool
// says goodbye on every connection, and pgx gives a connection whose query
// was cut off by a deadline 15 s to send PostgreSQL a cancel request and
// drain it; a database that hangs answers neither, and a command that
// failed because of it would take that long to exit. The process is ending
// (or the server shutting down): the connections go with it.
type boundedClose struct {
	store.Store
	limit time.Duration
}

func (b boundedClose) Close() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.Store.Close()
	}()
	t := time.NewTimer(b.limit)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

// openPostgres connects to AUTHZ_DATABASE_URL and checks that the server
// answers, within AUTHZ_DB_TIMEOUT. From here on, an unavailable database
// is reported under its name (env.database).
func (e env) openPostgres(c *config) (*postgres.Store, error) {
	if e.database != nil {
		*e.database = c.databaseName()
	}
	if e.databaseSetting != nil {
		*e.databaseSetting = c.where("database-url")
	}
	var pg *postgres.Store
	err := startupStep(e.ctx, c, "connecting", c.DBTimeout, func(ctx context.Context) error {
		var err error
		pg, err = postgres.Open(ctx, c.DatabaseURL)
		return err
	})
	return pg, err
}

// applyMigrations applies pending migrations within migrationTimeout and
// returns the versions it applied.
func (e env) applyMigrations(c *config, pg *postgres.Store) ([]int, error) {
	var applied []int
	err := startupStep(e.ctx, c, "applying migrations", migrationTimeout(c.DBTimeout), func(ctx context.Context) error {
		var err error
		applied, err = migrations.Apply(ctx, pg.Pool())
		if err != nil {
			err = fmt.Errorf("applying migrations: %w", err)
		}
		return err
	})
	return applied, err
}

// migrationFactor: applying migrations is bounded by this many times
// AUTHZ_DB_TIMEOUT (50s by default), longer than one database call since
// Apply waits for another replica's migration (an advisory lock) and may
// rewrite tables. A migration that needs longer gets it from a larger
// --db-timeout (`authz migrate --db-timeout 3m`: 30 minutes).
const migrationFactor = 10

func migrationTimeout(dbTimeout time.Duration) time.Duration { return migrationFactor * dbTimeout }

// startupTimeout: a start-up database step got no answer within its bound.
// It is an outage (ErrUnavailable) and reads as one line naming the
// database (never its password), the step and the setting that bounds it.
type startupTimeout struct {
	database, step string
	limit          time.Duration
	migrations     bool
	// urlSetting and timeoutSetting name the database URL and timeout
	// settings as the operator gave them (config.where).
	urlSetting, timeoutSetting string
}

func (e startupTimeout) Error() string {
	bound := e.timeoutSetting
	if e.migrations {
		bound = strconv.Itoa(migrationFactor) + " times " + e.timeoutSetting
	}
	return fmt.Sprintf("the database %s did not answer within %s while %s (the bound is %s): check that PostgreSQL is up and answering at %s",
		e.database, e.limit, e.step, bound, e.urlSetting)
}

func (e startupTimeout) Unwrap() error { return store.ErrUnavailable }

// startupStep runs f under limit. Past it, f's error (whatever pgx made of
// the cancelled context) becomes a startupTimeout; a signal that stopped
// the command (ctx cancelled) is returned as it is.
func startupStep(ctx context.Context, c *config, step string, limit time.Duration, f func(context.Context) error) error {
	sctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	err := f(sctx)
	if err != nil && ctx.Err() == nil && errors.Is(sctx.Err(), context.DeadlineExceeded) {
		return startupTimeout{database: c.databaseName(), step: step, limit: limit, migrations: step == "applying migrations",
			urlSetting: c.where("database-url"), timeoutSetting: c.where("db-timeout")}
	}
	return err
}

// databaseName is AUTHZ_DATABASE_URL as it may be shown: user, host, port
// and database, never the password or any other parameter.
func (c *config) databaseName() string {
	pc, err := pgxpool.ParseConfig(c.DatabaseURL)
	if err != nil {
		return "named by AUTHZ_DATABASE_URL"
	}
	cc := pc.ConnConfig
	return fmt.Sprintf("postgres://%s@%s/%s", cc.User, net.JoinHostPort(cc.Host, strconv.Itoa(int(cc.Port))), cc.Database)
}

// providerOptions maps the configuration to provider.Options.
func (c *config) providerOptions(st store.Store, log *slog.Logger) (provider.Options, error) {
	key, err := c.encryptionKey()
	if err != nil {
		return provider.Options{}, err
	}
	prev, err := c.previousKeys()
	if err != nil {
		return provider.Options{}, err
	}
	proxies, err := provider.ParseTrustedProxies(c.TrustedProxies)
	if err != nil {
		return provider.Options{}, fmt.Errorf("%s: %w", c.where("trusted-proxies"), err)
	}
	return provider.Options{
		Issuer: c.Issuer, Store: st, Resources: splitList(c.Resources), Scopes: c.scopeNames(), ScopeDescriptions: c.scopeDescriptions(),
		EncryptionKey: key, PreviousEncryptionKeys: prev, SigningAlgorithm: c.SigningAlg,
		AccessTokenTTL: c.AccessTokenTTL, AuthCodeTTL: c.AuthCodeTTL, RefreshIdleTTL: c.RefreshIdleTTL,
		GrantTTL: c.GrantTTL, RefreshGrace: c.RefreshGrace, SessionTTL: c.SessionTTL, JanitorInterval: c.JanitorInterval,
		KeyRefreshInterval: c.KeyReloadInterval,
		RegistrationPolicy: c.RegistrationPolicy, StoreTimeout: c.DBTimeout, Logger: log,
		LoginFailuresPerAccount: c.LoginFailuresPerAccount, LoginFailuresPerIP: c.LoginFailuresPerIP, LoginWindow: c.LoginWindow,
		RegistrationsPerIP: c.RegistrationLimit, RegistrationWindow: c.RegistrationWindow, TrustedProxies: proxies, ProxyHeaders: c.ProxyHeaders,
		DisableClientMetadataDocuments: c.MetadataDocuments == "off",
		AdminScopes:                    splitList(c.AdminScopes), RegistrationScopes: noneList(c.RegistrationScopes),
		RedirectSchemes: noneList(c.RedirectSchemes), RegistrationUnusedTTL: c.RegUnusedTTL, RegistrationIdleTTL: c.RegIdleTTL,
		DisableAccessLog: !c.AccessLog, AuditRetention: c.AuditRetention,
		DisableOIDC: c.OIDC == "off", DisableLocalLogin: c.LocalLogin == "off", Upstreams: c.Upstreams,
	}, nil
}

// noneList reads a list setting whose empty value means "the default" (nil)
// and whose value "none" means an empty list.
func noneList(s string) []string {
	if strings.TrimSpace(s) == "none" {
		return []string{}
	}
	return splitList(s)
}

// validate checks what can be checked without connecting anywhere, so bad
// configuration fails fast with one line saying what to fix.
func (c *config) validate() error {
	if c.DatabaseURL != "" {
		if _, err := pgxpool.ParseConfig(c.DatabaseURL); err != nil {
			// pgx quotes the connection string (password masked); say only
			// what is wrong with it, so no part of the value is printed.
			msg := err.Error()
			if i := strings.LastIndex(msg, "`: "); i >= 0 {
				msg = msg[i+3:]
			}
			return fmt.Errorf("%s is not a valid PostgreSQL URL (example: postgres://user:pass@localhost:5432/authz): %s", c.where("database-url"), msg)
		}
	}
	for _, st := range c.settings() {
		if st.zeroOK {
			continue
		}
		if (st.dur != nil && *st.dur <= 0) || (st.integer != nil && *st.integer <= 0) {
			return fmt.Errorf("%s must be positive", c.where(st.flag))
		}
	}
	if _, err := c.logger(io.Discard); err != nil {
		return err
	}
	if c.MetadataDocuments != "on" && c.MetadataDocuments != "off" {
		return fmt.Errorf("%s: must be on or off", c.valued("client-metadata-documents", c.MetadataDocuments))
	}
	// on/off switches are the CLI's spelling of provider's booleans.
	for _, s := range []struct{ flag, v string }{{"oidc", c.OIDC}, {"local-login", c.LocalLogin}} {
		if s.v != "on" && s.v != "off" {
			return fmt.Errorf("%s: want on or off", c.valued(s.flag, s.v))
		}
	}
	// The encryption key and trusted proxies are parsed here; every rule on
	// the values is provider's, checked once.
	o, err := c.providerOptions(nil, nil)
	if err != nil {
		return err
	}
	_, err = provider.ResolveOptions(o)
	return c.optionError(err)
}

// keyError names the encryption key setting, as the operator gave it, in
// provider's "wrong encryption key" errors (provider names no setting).
func (c *config) keyError(err error) error {
	if errors.Is(err, provider.ErrWrongEncryptionKey) {
		if c.PreviousKeys == "" {
			// The likeliest reason on a database that worked before: the
			// key was changed. Say how to change it without this.
			return fmt.Errorf("%s: %w (changing the key? give the old one in %s: README, \"Rotating the encryption key\")",
				c.where("encryption-key"), err, c.where("previous-encryption-keys"))
		}
		return fmt.Errorf("%s: %w", c.where("encryption-key"), err)
	}
	return err
}

// optionError reports a provider validation error under the name of the
// setting it concerns.
func (c *config) optionError(err error) error {
	var oe *provider.OptionError
	if !errors.As(err, &oe) {
		return err
	}
	if oe.Option == "Upstreams" {
		// Upstream providers come from the AUTHZ_CONFIG file only.
		return fmt.Errorf("AUTHZ_CONFIG %s: providers: %w", c.file, oe.Err)
	}
	for _, st := range c.settings() {
		if st.option != oe.Option {
			continue
		}
		if st.str != nil && !st.secret {
			return fmt.Errorf("%s: %w", c.valued(st.flag, *st.str), oe.Err)
		}
		return fmt.Errorf("%s: %w", c.where(st.flag), oe.Err)
	}
	return err
}

// short formats a default duration the way one would type it (15m, 720h).
func short(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return strconv.Itoa(int(d/time.Hour)) + "h"
	case d%time.Minute == 0:
		return strconv.Itoa(int(d/time.Minute)) + "m"
	}
	return d.String()
}
