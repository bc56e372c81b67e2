package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// usageError is a mistake in the command line; it prints usage hints.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

const usage = `authz: an OAuth 2.1 authorization server

Usage:
  authz serve [--dev] [flags]        run the server (--dev seeds a demo user and client)
  authz migrate [flags]              apply database migrations
  authz client create --name N --redirect-uri U [--redirect-uri U2 ...] [--public]
                      [--scope S ...] [--resource R ...] [--grant-type G ...] [--introspect]
                      [--auth-method M] [--jwks JSON|@file | --jwks-uri U] [--json]
                      (and --application-type, --client-uri, --logo-uri, --tos-uri,
                      --policy-uri, --contact, --software-id, --software-version)
  authz client update ID [the same flags] [--rotate-secret] [--json]
  authz client list [--self-registered] [--json] | show ID | delete ID
  authz user create NAME --password-stdin
  authz user set-password NAME --password-stdin
  authz user delete NAME | authz user list
  authz user unlock NAME             clear NAME's failed sign-ins (every client IP)
  authz keys rotate                  add a signing key (published now, signing after
                                     twice AUTHZ_KEY_RELOAD_INTERVAL)
  authz keys list                    show each signing key's algorithm, state and dates
  authz audit list [--since 24h] [--user U] [--client C] [--event E] [--limit N] [--json]
                                     show audit events, oldest first
  authz token initial-access create [--ttl D]
                      [--allow-grant client_credentials --scope S ... --resource R ...]
                                     make an initial access token (registration policy "token";
                                     its policy applies to clients registered with it)

Run "authz serve -h" for the configuration flags; each has an AUTHZ_* variable.
`

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
		fmt.Fprintf(os.Stderr, "authz: %s\n\n%s", ue.msg, usage)
		os.Exit(2)
	}
	fmt.Fprintf(os.Stderr, "authz: %s\n", err)
	os.Exit(1)
}

// env is a command's standard streams.
type env struct {
	ctx    context.Context
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	e := env{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr}
	if len(args) == 0 {
		return usageError{"no command given"}
	}
	cmd, rest := args[0], args[1:]
	sub := ""
	if len(rest) > 0 {
		sub = rest[0]
	}
	switch cmd {
	case "serve":
		return e.serve(rest)
	case "migrate":
		return e.migrate(rest)
	case "client":
		switch sub {
		case "create":
			return e.clientCreate(rest[1:])
		case "list":
			return e.clientList(rest[1:])
		case "show":
			return e.clientShow(rest[1:])
		case "update":
			return e.clientUpdate(rest[1:])
		case "delete":
			return e.clientDelete(rest[1:])
		}
	case "user":
		switch sub {
		case "create":
			return e.userCreate(rest[1:])
		case "set-password":
			return e.userSetPassword(rest[1:])
		case "delete":
			return e.userDelete(rest[1:])
		case "list":
			return e.userList(rest[1:])
		case "unlock":
			return e.userUnlock(rest[1:])
		}
	case "keys":
		switch sub {
		case "rotate":
			return e.keysRotate(rest[1:])
		case "list":
			return e.keysList(rest[1:])
		}
	case "audit":
		if sub == "list" {
			return e.auditList(rest[1:])
		}
	case "token":
		if sub == "initial-access" && len(rest) > 1 && rest[1] == "create" {
			return e.initialAccessCreate(rest[2:])
		}
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		return usageError{fmt.Sprintf("unknown command %q", cmd)}
	}
	return usageError{fmt.Sprintf("unknown %s subcommand %q", cmd, sub)}
}

// flags returns a flag set with the configuration flags registered.
func (e env) flags(name string, cfg *config) (*flag.FlagSet, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
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
			return nil, usageError{err.Error()}
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return pos, nil
}
