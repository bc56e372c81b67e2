package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/pkce"
	"github.com/authzd/authz/provider/store"
	"github.com/authzd/authz/provider/tokens"
)

// Server timeouts: slow clients cannot hold connections open forever.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = 60 * time.Second
	idleTimeout       = 120 * time.Second
	shutdownTimeout   = 30 * time.Second
	adminWriteTimeout = 2 * time.Minute
)

func (e env) serve(args []string) error {
	var cfg config
	fs, err := e.flags("serve", &cfg)
	if err != nil {
		return err
	}
	dev := fs.Bool("dev", false, "seed a demo user and a demo public client, and print them")
	pos, err := parse(fs, &cfg, args)
	if err != nil {
		return err
	}
	if err := noArguments("serve", pos); err != nil {
		return err
	}
	log, err := cfg.logger(e.stderr)
	if err != nil {
		return err
	}
	if *dev && cfg.Scopes == "" {
		cfg.Scopes = "read=Read your data,write=Change your data"
	}
	st, persistent, err := e.openStore(&cfg, cfg.AutoMigrate)
	if err != nil {
		return err
	}
	defer st.Close()
	if !persistent {
		log.Warn("no database configured (AUTHZ_DATABASE_URL is empty): running on the in-memory store; every client, user and token is lost on exit")
	}
	opts, err := cfg.providerOptions(st, log)
	if err != nil {
		return err
	}
	srv, err := provider.New(e.ctx, opts)
	if err != nil {
		return cfg.keyError(err)
	}
	// Both listeners open before --dev prints anything: a banner saying
	// "listening on" with a URL, above an "address already in use", sends
	// people to whatever else holds the port.
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("%s: %w (is another server running there? set it to another address)", cfg.where("addr"), err)
	}
	defer ln.Close()
	var aln net.Listener
	if cfg.AdminAddr != "" {
		if aln, err = net.Listen("tcp", cfg.AdminAddr); err != nil {
			return fmt.Errorf("%s: %w (set it to another address, or empty to turn the admin listener off)", cfg.where("admin-addr"), err)
		}
		defer aln.Close()
	}
	if *dev {
		if err := seedDev(e, srv.Options(), st, ln.Addr().String()); err != nil {
			return fmt.Errorf("seeding demo data: %w", err)
		}
	}
	// The admin listener (metrics, pprof) is separate from the public one
	// and loopback by default: what it shows is for operators only.
	var adminSrv *http.Server
	if aln != nil {
		adminSrv = &http.Server{
			Handler:           srv.AdminHandler(),
			ReadHeaderTimeout: readHeaderTimeout,
			// A CPU profile or trace runs for ?seconds= (30 by default).
			WriteTimeout: adminWriteTimeout,
			ErrorLog:     slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}
		go func() {
			if err := adminSrv.Serve(aln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("admin listener stopped", "cause", err)
			}
		}()
		log.Info("admin listener (metrics, pprof)", "addr", aln.Addr().String())
	}
	httpSrv := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		// Requests do not inherit the signal context: a shutdown lets
		// in-flight requests finish instead of cancelling them.
		BaseContext: func(net.Listener) context.Context { return context.Background() },
	}
	// The janitor reads its clock and interval from the server's resolved
	// options (not from opts, whose defaults are applied inside New).
	go srv.RunJanitor(e.ctx)
	errc := make(chan error, 1)
	go func() { errc <- httpSrv.Serve(ln) }()
	log.Info("authz listening", "addr", ln.Addr().String(), "issuer", srv.Options().Issuer, "persistent", persistent)

	select {
	case err := <-errc:
		return err
	case <-e.ctx.Done():
	}
	log.Info("shutting down: finishing in-flight requests")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if adminSrv != nil {
		_ = adminSrv.Close()
	}
	if err := httpSrv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	// Background refreshes of stale client documents stopped with e.ctx;
	// they must be done with the store before it is closed.
	srv.WaitBackground()
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Info("stopped")
	return nil
}

const (
	demoUsername = "demo"
	demoClientID = "demo-client"
)

// seedDev creates the demo user and public client (unless they exist) and
// prints how to use them.
func seedDev(e env, o provider.Options, st store.Store, addr string) error {
	ctx := e.ctx
	now := time.Now()
	password := "(unchanged: the demo user already existed)"
	if _, err := st.GetUserByUsername(ctx, demoUsername); errors.Is(err, store.ErrNotFound) {
		secret, err := tokens.NewSecret(rand.Reader, "")
		if err != nil {
			return err
		}
		password = secret[:16]
		u, err := provider.NewUser(demoUsername, password, provider.UserProfile{}, now, rand.Reader)
		if err != nil {
			return err
		}
		if err := st.CreateUser(ctx, u); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	if _, err := st.GetClient(ctx, demoClientID); errors.Is(err, store.ErrNotFound) {
		c, _, err := provider.NewClient(store.ClientMetadata{
			Name: "Demo app", RedirectURIs: []string{"http://127.0.0.1/callback"},
			TokenEndpointAuthMethod: oauth.AuthNone, ApplicationType: "native",
			GrantTypes: []string{oauth.GrantAuthorizationCode, oauth.GrantRefreshToken},
			Scopes:     o.Scopes,
		}, now, rand.Reader)
		if err != nil {
			return err
		}
		c.ID, c.Trust = demoClientID, store.TrustAdmin
		if err := st.CreateClient(ctx, c); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	verifier, err := tokens.NewSecret(rand.Reader, "")
	if err != nil {
		return err
	}
	q := url.Values{
		"response_type": {"code"}, "client_id": {demoClientID},
		"redirect_uri":   {"http://127.0.0.1:9999/callback"},
		"code_challenge": {pkce.ChallengeS256(verifier)}, "code_challenge_method": {"S256"},
		"state": {"demo-state"}, "resource": {o.Resources[0]},
	}
	if len(o.Scopes) > 0 {
		q.Set("scope", o.Scopes[0])
	}
	fmt.Fprintf(e.stdout, `
authz is running in development mode (listening on %s)

  demo user:       %s
  password:        %s
  demo client_id:  %s   (public client, PKCE S256, redirect http://127.0.0.1:<any port>/callback)

Open this authorization URL in a browser, sign in, and allow:

  %s%s?%s

The browser then lands on http://127.0.0.1:9999/callback?code=...; exchange the code with:

  curl -s %s%s -d grant_type=authorization_code -d client_id=%s \
    -d redirect_uri=http://127.0.0.1:9999/callback -d code_verifier=%s -d code=CODE

`, addr, demoUsername, password, demoClientID, o.Issuer, provider.PathAuthorize, q.Encode(),
		o.Issuer, provider.PathToken, demoClientID, verifier)
	return nil
}

func (e env) migrate(args []string) error {
	var cfg config
	fs, err := e.flags("migrate", &cfg)
	if err != nil {
		return err
	}
	pos, err := parse(fs, &cfg, args)
	if err != nil {
		return err
	}
	if err := noArguments("migrate", pos); err != nil {
		return err
	}
	if cfg.DatabaseURL == "" {
		return errors.New("migrate needs a database: set AUTHZ_DATABASE_URL or --database-url")
	}
	pg, err := e.openPostgres(&cfg)
	if err != nil {
		return err
	}
	defer boundedClose{Store: pg, limit: cfg.DBTimeout}.Close()
	applied, err := e.applyMigrations(&cfg, pg)
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintln(e.stdout, "migrations: the schema is up to date")
	} else {
		fmt.Fprintf(e.stdout, "migrations: applied %v\n", applied)
	}
	return nil
}
