package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

func main() {
	if _, err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "authz-load:", err)
		os.Exit(1)
	}
}

type config struct {
	replicas           []string
	mode               string
	levels             []int
	duration           time.Duration
	ccID, ccSecret     string
	codeID, codeSecret string
	redirect           string
	username, password string
	scope, resource    string
	target             string
	dbURL, boundShape  string
	serverPIDs         []int
	pgPID              int
	cpuProfile         string
}

// modes lists the modes in the order `-mode all` runs them.
var modes = []string{"client_credentials", "introspect", "revoke", "authorization_code", "refresh", "refresh_shared", "resource", "bound", "bound_code"}

const maxDuration = 2 * time.Hour

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func loopbackOnly(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(u.Hostname()); u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("refusing to load %s: only loopback targets are allowed", u.Host)
	}
	return nil
}

func parseConfig(args []string) (*config, error) {
	fs := flag.NewFlagSet("authz-load", flag.ContinueOnError)
	c := &config{}
	issuer := fs.String("issuer", "http://127.0.0.1:8080", "issuer URL of the server under test (loopback only)")
	replicas := fs.String("replicas", "", "comma-separated base URLs of replicas sharing -issuer (default: the issuer); requests rotate over them")
	fs.StringVar(&c.mode, "mode", "client_credentials", "one of "+strings.Join(modes, ", ")+", mixed (the soak), or all")
	levels := fs.String("concurrency", "1,4,16,64", "comma-separated concurrency levels, each run for -duration")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "how long each level runs (at most 2h)")
	fs.StringVar(&c.ccID, "client-id", "", "confidential client allowed client_credentials (client_credentials, introspect, revoke, resource, mixed)")
	fs.StringVar(&c.ccSecret, "client-secret", os.Getenv("AUTHZ_LOAD_CLIENT_SECRET"), "its secret (or AUTHZ_LOAD_CLIENT_SECRET)")
	fs.StringVar(&c.codeID, "code-client-id", "", "client allowed authorization_code and refresh_token, with redirect URI -redirect-uri")
	fs.StringVar(&c.codeSecret, "code-client-secret", os.Getenv("AUTHZ_LOAD_CODE_CLIENT_SECRET"), "its secret, empty for a public client (or AUTHZ_LOAD_CODE_CLIENT_SECRET)")
	fs.StringVar(&c.redirect, "redirect-uri", "http://127.0.0.1/callback", "the code client's redirect URI (never fetched)")
	fs.StringVar(&c.username, "username", "", "user that signs in on the login page")
	fs.StringVar(&c.password, "password", os.Getenv("AUTHZ_LOAD_PASSWORD"), "its password (or AUTHZ_LOAD_PASSWORD)")
	fs.StringVar(&c.scope, "scope", "read", "scope to request")
	fs.StringVar(&c.resource, "resource", "", "resource to request (RFC 8707; default: the server's first)")
	fs.StringVar(&c.target, "target", "", "resource mode: the protected URL to GET (loopback only)")
	fs.StringVar(&c.dbURL, "database-url", os.Getenv("AUTHZ_LOAD_DATABASE_URL"), "the server's PostgreSQL: bound modes, printing its settings, the soak's revoked-grant count")
	fs.StringVar(&c.boundShape, "bound-shape", "pipelined", "bound modes: pipelined (2 round trips) or sequential (one per statement, as the store before issue 13)")
	serverPIDs := fs.String("server-pid", "", "comma-separated PIDs of the authz processes: CPU per request and RSS")
	fs.IntVar(&c.pgPID, "pg-pid", 0, "PID of the postmaster: PostgreSQL CPU per request (its children summed)")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write the load program's own CPU profile to this file (what its CPU per request is spent on)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	var err error
	if c.levels, err = ints(*levels); err != nil || len(c.levels) == 0 {
		return nil, fmt.Errorf("-concurrency: want a list such as 1,4,16,64 (%v)", err)
	}
	if c.serverPIDs, err = ints(*serverPIDs); err != nil {
		return nil, fmt.Errorf("-server-pid: %v", err)
	}
	if c.duration <= 0 || c.duration > maxDuration {
		return nil, fmt.Errorf("-duration must be between 0 and %s", maxDuration)
	}
	c.replicas = []string{strings.TrimSuffix(*issuer, "/")}
	if *replicas != "" {
		c.replicas = nil
		for _, r := range strings.Split(*replicas, ",") {
			c.replicas = append(c.replicas, strings.TrimSuffix(strings.TrimSpace(r), "/"))
		}
	}
	for _, t := range append(slices.Clone(c.replicas), c.target) {
		if t == "" {
			continue
		}
		if err := loopbackOnly(t); err != nil {
			return nil, err
		}
	}
	if c.boundShape != "pipelined" && c.boundShape != "sequential" {
		return nil, errors.New("-bound-shape: pipelined or sequential")
	}
	if _, ok := flows[c.mode]; !ok && c.mode != "mixed" && c.mode != "all" {
		return nil, fmt.Errorf("unknown mode %q", c.mode)
	}
	return c, nil
}

// run executes every level of the mode(s) and returns what each measured.
func run(ctx context.Context, args []string, out io.Writer) ([]level, error) {
	cfg, err := parseConfig(args)
	if err != nil {
		return nil, err
	}
	l := newLoader(cfg, slices.Max(cfg.levels))
	if cfg.dbURL != "" {
		pc, err := pgxpool.ParseConfig(cfg.dbURL)
		if err != nil {
			return nil, fmt.Errorf("-database-url: %w", err)
		}
		if h := pc.ConnConfig.Host; !strings.HasPrefix(h, "/") {
			if err := loopbackOnly("postgres://" + net.JoinHostPort(h, "0")); err != nil {
				return nil, err
			}
		}
		pc.MaxConns = int32(slices.Max(cfg.levels)) + 2
		if l.pool, err = pgxpool.NewWithConfig(ctx, pc); err != nil {
			return nil, err
		}
		defer l.pool.Close()
		s, err := pgSettings(ctx, l.pool)
		if err != nil {
			return nil, fmt.Errorf("reading PostgreSQL settings: %w", err)
		}
		fmt.Fprintln(out, s)
	}
	if cfg.cpuProfile != "" {
		f, err := os.Create(cfg.cpuProfile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
		defer pprof.StopCPUProfile()
	}
	meter := &cpuMeter{servers: cfg.serverPIDs, pg: cfg.pgPID}
	var levels []level
	if cfg.mode == "mixed" {
		per, lv, err := runLevel(l, "mixed", cfg.levels[0], cfg.duration, meter)
		if err != nil {
			return nil, err
		}
		for _, name := range slices.Sorted(maps.Keys(per)) {
			workers := 0
			for i := range cfg.levels[0] {
				if mixedFlows[i%len(mixedFlows)] == name {
					workers++
				}
			}
			s := summarise(name, workers, lv.Elapsed, per[name])
			s.print(out)
		}
		lv.print(out)
		return []level{lv}, mixedReport(ctx, l, per, out)
	}
	run := []string{cfg.mode}
	if cfg.mode == "all" {
		run = modes
	}
	for _, m := range run {
		if cfg.mode == "all" && (m == "resource" && cfg.target == "" || strings.HasPrefix(m, "bound") && l.pool == nil) {
			fmt.Fprintf(out, "mode=%s skipped (needs -target or -database-url)\n", m)
			continue
		}
		for _, conc := range cfg.levels {
			_, lv, err := runLevel(l, m, conc, cfg.duration, meter)
			if err != nil {
				return levels, fmt.Errorf("%s: %w", m, err)
			}
			lv.print(out)
			levels = append(levels, lv)
		}
	}
	return levels, nil
}

// runLevel prepares conc workers (untimed), runs them for d and returns
// each flow's recorder and the level's summary.
func runLevel(l *loader, mode string, conc int, d time.Duration, meter *cpuMeter) (map[string]*recorder, level, error) {
	names := make([]string, conc)
	loops := make([]func(context.Context, *recorder), conc)
	errs := make([]error, conc)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range conc {
		names[i] = mode
		id, n := i, conc
		if mode == "mixed" {
			names[i] = mixedFlows[i%len(mixedFlows)]
			id, n = 0, 2 // a mixed refresh_shared worker drives its pair alone
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			loops[i], errs[i] = flows[names[i]](l, id, n)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, level{}, err
	}
	recs := make([]*recorder, conc)
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	meter.start()
	start := time.Now()
	for i, loop := range loops {
		recs[i] = newRecorder()
		if loop == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			loop(ctx, recs[i])
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	per := map[string]*recorder{}
	all := newRecorder()
	for i, r := range recs {
		if per[names[i]] == nil {
			per[names[i]] = newRecorder()
		}
		per[names[i]].merge(r)
		all.merge(r)
	}
	lv := summarise(mode, conc, elapsed, all)
	meter.stop(&lv)
	return per, lv, nil
}
