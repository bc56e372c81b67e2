package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/authzd/authz/provider/store"
)

// usageError is a mistake in the command line; main prints it with the
// help of the command it concerns (help), or the full usage.
type usageError struct {
	msg  string
	help string
}

func (e usageError) Error() string { return e.msg }

// cmdSpec is one row of the command table: the one place a command's
// name, arguments and summary are written. The usage text, `authz help`,
// `authz GROUP --help` and `authz GROUP SUB --help` are all built from it.
type cmdSpec struct {
	name    string // "client create"
	args    string // its arguments and own flags, for the synopsis
	summary string
	run     func(e env, args []string) error
}

func commands() []cmdSpec {
	clientFlags := "--name N --redirect-uri U [--redirect-uri U2 ...] [--public]\n" +
		"    [--scope S ...] [--resource R ...] [--grant-type G ...] [--introspect] [--auth-method M]\n" +
		"    [--jwks JSON|@file | --jwks-uri U] [--application-type T] [--client-uri U]\n" +
		"    [--logo-uri U] [--tos-uri U] [--policy-uri U] [--contact C ...]\n" +
		"    [--software-id S] [--software-version V]\n" +
		"    [--post-logout-redirect-uri U ...] [--id-token-alg RS256|ES256|EdDSA] [--json]"
	return []cmdSpec{
		{"serve", "[--dev]", "run the server (--dev seeds a demo user and client)", env.serve},
		{"migrate", "", "apply database migrations", env.migrate},
		{"client create", clientFlags, "register a client; its secret is printed once", env.clientCreate},
		{"client update", "ID [any of the create flags] [--rotate-secret] [--json]", "change the fields whose flags are given", env.clientUpdate},
		{"client list", "[--self-registered] [--json]", "list clients with their trust and last use (--self-registered: only dynamically registered ones)", env.clientList},
		{"client show", "ID", "show one client", env.clientShow},
		{"client delete", "ID", "delete a client and revoke its grants", env.clientDelete},
		{"user create", "NAME --password-stdin [--name N] [--email E [--email-verified]]", "create a user (password of at least 8 characters on stdin)", env.userCreate},
		{"user set-password", "NAME --password-stdin", "set a user's password", env.userSetPassword},
		{"user delete", "NAME", "delete a user and revoke their grants", env.userDelete},
		{"user list", "", "list users", env.userList},
		{"user unlock", "NAME", "clear NAME's failed sign-ins (every client IP)", env.userUnlock},
		{"keys rotate", "", "add a new access-token key and a new ID-token key per algorithm in use (published now, signing after twice AUTHZ_KEY_RELOAD_INTERVAL)", env.keysRotate},
		{"keys reencrypt", "", "re-seal every signing key sealed under a previous encryption key (AUTHZ_PREVIOUS_ENCRYPTION_KEYS) under AUTHZ_ENCRYPTION_KEY", env.keysReencrypt},
		{"keys list", "", "show each signing key (access tokens, ID tokens) with its algorithm, state and dates", env.keysList},
		{"audit list", "[--since 24h] [--user U] [--client C] [--event E] [--limit N] [--json]", "show audit events, oldest first", env.auditList},
		{"token initial-access create", "[--ttl D] [--allow-grant client_credentials --scope S ... --resource R ...]",
			"make an initial access token (registration policy \"token\"; its policy applies to clients registered with it)", env.initialAccessCreate},
		{"version", "", "print the version, commit and Go version", env.version},
		{"help", "[COMMAND]", "show help for all commands or one", nil},
	}
}

// synopsis is one command's lines in a usage text.
func (c cmdSpec) synopsis() string {
	line := "  authz " + c.name
	if c.args != "" {
		line += " " + strings.ReplaceAll(c.args, "\n", "\n        ")
	}
	return line + "\n      " + c.summary + "\n"
}

const usageHeader = "authz: an OAuth 2.1 authorization server\n\nUsage:\n"

const usageFooter = `
Every command reads the configuration flags ("authz serve --help" lists
them); each has an AUTHZ_* variable. "authz COMMAND --help" shows a
command's own flags.
`

// usage is the help for the commands whose name starts with prefix ("" for all).
func usage(prefix string) string {
	var b strings.Builder
	b.WriteString(usageHeader)
	for _, c := range commands() {
		if prefix == "" || c.name == prefix || strings.HasPrefix(c.name, prefix+" ") {
			b.WriteString(c.synopsis())
		}
	}
	b.WriteString(usageFooter)
	return b.String()
}

// group reports whether name is a command group ("client", "token initial-access").
func group(name string) bool {
	for _, c := range commands() {
		if strings.HasPrefix(c.name, name+" ") {
			return true
		}
	}
	return false
}

func isHelp(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help" || arg == "help"
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	if err == nil {
		return
	}
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	var ue usageError
	if errors.As(err, &ue) {
		help := ue.help
		if help == "" {
			help = usage("")
		}
		fmt.Fprintf(os.Stderr, "authz: %s\n\n%s", ue.msg, help)
		os.Exit(2)
	}
	fmt.Fprintf(os.Stderr, "authz: %s\n", describe(err))
	os.Exit(1)
}

// env is a command's standard streams, and the database it opened.
type env struct {
	ctx    context.Context
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	// database is set (to config.databaseName, never with the password)
	// once the command connects to PostgreSQL, so that an outage is
	// reported under the database's name.
	database *string
	// databaseSetting is the database URL setting as the operator gave it
	// (config.where), set with database: an outage says to check that.
	databaseSetting *string
}

// databaseError is an outage of the database a command opened.
type databaseError struct {
	database, setting string
	err               error
}

func (e databaseError) Error() string { return e.err.Error() }
func (e databaseError) Unwrap() error { return e.err }

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	e := env{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr, database: new(string), databaseSetting: new(string)}
	err := dispatch(e, args)
	if *e.database != "" && errors.Is(err, store.ErrUnavailable) {
		err = databaseError{database: *e.database, setting: *e.databaseSetting, err: err}
	}
	return err
}

func dispatch(e env, args []string) error {
	stdout := e.stdout
	if len(args) == 0 {
		return usageError{msg: "no command given"}
	}
	if isHelp(args[0]) {
		// authz help [COMMAND...]
		name := strings.Join(args[1:], " ")
		if name != "" && !group(name) && !known(name) {
			return usageError{msg: fmt.Sprintf("unknown command %q", name)}
		}
		fmt.Fprint(stdout, usage(name))
		return nil
	}
	// The longest command name the arguments start with.
	for n := min(len(args), 3); n >= 1; n-- {
		name := strings.Join(args[:n], " ")
		for _, c := range commands() {
			if c.name == name && c.run != nil {
				err := c.run(e, args[n:])
				// A command used wrongly shows its own synopsis, not
				// every command's.
				if ue := (usageError{}); errors.As(err, &ue) && ue.help == "" {
					ue.help = usage(c.name)
					return ue
				}
				return err
			}
		}
	}
	// A group: its help, or which subcommand is unknown.
	for n := min(len(args), 2); n >= 1; n-- {
		name := strings.Join(args[:n], " ")
		if !group(name) {
			continue
		}
		if len(args) == n {
			return usageError{msg: name + " needs a subcommand", help: usage(name)}
		}
		if isHelp(args[n]) {
			fmt.Fprint(stdout, usage(name))
			return nil
		}
		return usageError{msg: fmt.Sprintf("unknown %s subcommand %q", name, args[n]), help: usage(name)}
	}
	return usageError{msg: fmt.Sprintf("unknown command %q", args[0])}
}

// noArguments refuses positional arguments to a command whose synopsis
// names none (its first word is not a placeholder such as ID or NAME):
// `authz keys rotate now` is a mistake to report, not a rotation.
func noArguments(name string, pos []string) error {
	if len(pos) == 0 {
		return nil
	}
	for _, c := range commands() {
		if c.name != name {
			continue
		}
		if w := strings.Fields(c.args); len(w) > 0 && w[0] == strings.ToUpper(w[0]) && !strings.HasPrefix(w[0], "-") && !strings.HasPrefix(w[0], "[") {
			return nil
		}
	}
	return usageError{msg: fmt.Sprintf("%s takes no arguments, only flags (got %q)", name, pos[0]), help: usage(name)}
}

func known(name string) bool {
	for _, c := range commands() {
		if c.name == name {
			return true
		}
	}
	return false
}

// flags returns a flag set with the configuration flags registered.
func (e env) flags(name string, cfg *config) (*flag.FlagSet, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		for _, c := range commands() {
			if c.name == name {
				fmt.Fprintf(fs.Output(), "Usage:\n%s\nFlags:\n", c.synopsis())
			}
		}
		fs.PrintDefaults()
	}
	if err := cfg.register(fs); err != nil {
		return nil, err
	}
	return fs, nil
}

// parse parses args (flags may follow positional arguments) and validates
// the configuration. It returns the positional arguments.
func parse(fs *flag.FlagSet, cfg *config, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{msg: err.Error()}
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	cfg.markFlags(fs)
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return pos, nil
}

// describe is how an error reads to an operator: the packages' own prefixes
// ("store: not found", "postgres: …") are ours, not theirs, so they go; a
// database that cannot be reached says so.
func describe(err error) string {
	msg := err.Error()
	for _, p := range []string{"store: ", "postgres: ", "provider: "} {
		msg = strings.ReplaceAll(msg, p, "")
	}
	var timeout startupTimeout
	if errors.As(err, &timeout) {
		return timeout.Error()
	}
	db, setting := "the database", "AUTHZ_DATABASE_URL"
	if de := (databaseError{}); errors.As(err, &de) {
		db += " " + de.database
		if de.setting != "" {
			setting = de.setting
		}
	}
	if errors.Is(err, store.ErrUnavailable) {
		return db + " cannot be reached or failed; check " + setting + " and try again (" + msg + ")"
	}
	return msg
}
