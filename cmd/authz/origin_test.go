package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/authzd/authz/provider/store/postgres/pgtest"
)

// TestConfigErrorsNameWhereTheValueCameFrom: a bad value is reported under
// the name the operator gave it. From the AUTHZ_CONFIG file: the file's
// path and key, never the environment variable they did not set; from the
// environment: the variable, as before (and it wins over the file); from a
// flag: the flag. Every case is one error line, exit 1, on `authz serve`.
func TestConfigErrorsNameWhereTheValueCameFrom(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() })
	for _, tt := range []struct {
		name string
		file string   // the AUTHZ_CONFIG file's content ("": none)
		env  []string // more variables
		args []string // more flags
		// want is in the message ($FILE: the file's path); notWant is not.
		want, notWant string
	}{
		// From the file.
		{"file duration", "access-token-ttl: soon\n", nil, nil,
			`AUTHZ_CONFIG $FILE: access-token-ttl="soon" is not a duration`, "AUTHZ_ACCESS_TOKEN_TTL"},
		{"file number", "registration-limit: many\n", nil, nil,
			`AUTHZ_CONFIG $FILE: registration-limit="many" is not a whole number`, "AUTHZ_REGISTRATION_LIMIT"},
		{"file boolean", "access-log: maybe\n", nil, nil,
			`AUTHZ_CONFIG $FILE: access-log="maybe" is not true or false`, "AUTHZ_ACCESS_LOG"},
		{"file zero", "db-timeout: 0s\n", nil, nil,
			`AUTHZ_CONFIG $FILE: db-timeout must be positive`, "AUTHZ_DB_TIMEOUT"},
		{"file provider rule", "registration: sometimes\n", nil, nil,
			`AUTHZ_CONFIG $FILE: registration="sometimes": `, "AUTHZ_REGISTRATION"},
		{"file provider rule on a duration", "auth-code-ttl: 11m\n", nil, nil,
			`AUTHZ_CONFIG $FILE: auth-code-ttl: `, "AUTHZ_AUTH_CODE_TTL"},
		{"file log level", "log-level: loud\n", nil, nil,
			`AUTHZ_CONFIG $FILE: log-level="loud": want debug`, "AUTHZ_LOG_LEVEL"},
		{"file switch", "oidc: maybe\n", nil, nil,
			`AUTHZ_CONFIG $FILE: oidc="maybe": want on or off`, "AUTHZ_OIDC"},
		{"file metadata documents", "client-metadata-documents: maybe\n", nil, nil,
			`AUTHZ_CONFIG $FILE: client-metadata-documents="maybe": must be on or off`, "AUTHZ_CLIENT_METADATA_DOCUMENTS"},
		{"file trusted proxies", "trusted-proxies: [10.0.0.0/8, not-a-cidr]\n", nil, nil,
			`AUTHZ_CONFIG $FILE: trusted-proxies: `, "AUTHZ_TRUSTED_PROXIES"},
		{"file encryption key", "encryption-key: short\n", nil, nil,
			`AUTHZ_CONFIG $FILE: encryption-key: `, "AUTHZ_ENCRYPTION_KEY"},
		{"file database URL", "database-url: postgres://u:p@host:notaport/db\n", []string{"AUTHZ_ENCRYPTION_KEY=" + testEncryptionKey}, nil,
			`AUTHZ_CONFIG $FILE: database-url is not a valid PostgreSQL URL`, "AUTHZ_DATABASE_URL"},
		{"file busy address", "addr: " + busy.Addr().String() + "\n", nil, nil,
			`AUTHZ_CONFIG $FILE: addr: `, "AUTHZ_ADDR"},
		// The environment: its variable, as before, also over a good file.
		{"env over the file", "access-token-ttl: 1h\n", []string{"AUTHZ_ACCESS_TOKEN_TTL=soon"}, nil,
			`AUTHZ_ACCESS_TOKEN_TTL="soon" is not a duration`, "$FILE"},
		{"env provider rule", "", []string{"AUTHZ_REGISTRATION=sometimes"}, nil, `AUTHZ_REGISTRATION="sometimes": `, "--registration"},
		{"env zero", "", []string{"AUTHZ_DB_TIMEOUT=0s"}, nil, "AUTHZ_DB_TIMEOUT must be positive", "--db-timeout"},
		// A flag: the flag, not the variable behind it.
		{"flag zero", "", nil, []string{"--db-timeout", "0s"}, "--db-timeout must be positive", "AUTHZ_DB_TIMEOUT"},
		{"flag over the file", "registration: token\n", nil, []string{"--registration", "sometimes"},
			`--registration="sometimes": `, "AUTHZ_"},
		{"flag log format", "", nil, []string{"--log-format", "xml"}, `--log-format="xml": want text or json`, "AUTHZ_LOG_FORMAT"},
		{"flag busy admin address", "", nil, []string{"--admin-addr", busy.Addr().String()}, "--admin-addr: ", "AUTHZ_ADMIN_ADDR"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := tt.env
			if !strings.HasPrefix(tt.file, "addr:") {
				env = append([]string{"AUTHZ_ADDR=127.0.0.1:0"}, env...)
			}
			file := "(no file)"
			if tt.file != "" {
				file = filepath.Join(t.TempDir(), "authz.yaml")
				if err := os.WriteFile(file, []byte(tt.file), 0o600); err != nil {
					t.Fatal(err)
				}
				env = append(env, "AUTHZ_CONFIG="+file)
			}
			want, notWant := strings.ReplaceAll(tt.want, "$FILE", file), strings.ReplaceAll(tt.notWant, "$FILE", file)
			_, stderr, code := runBounded(t, env, append([]string{"serve"}, tt.args...)...)
			// serve's start-up log lines may come first; the error is one line.
			var errs []string
			for _, l := range strings.Split(strings.TrimSpace(stderr), "\n") {
				if strings.HasPrefix(l, "authz: ") {
					errs = append(errs, l)
				}
			}
			if code != 1 || len(errs) != 1 || !strings.Contains(errs[0], want) || strings.Contains(errs[0], notWant) {
				t.Errorf("exit %d, stderr %q; want exit 1 and one error line with %q, without %q", code, stderr, want, notWant)
			}
		})
	}
}

// TestOfferedRefusalsNameWhereTheSettingCameFrom: `--scope` or
// `--resource` the server does not offer is refused with the offered list,
// named where it was set (the file's key, a flag), not as AUTHZ_SCOPES or
// AUTHZ_RESOURCES when the operator set neither.
func TestOfferedRefusalsNameWhereTheSettingCameFrom(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "authz.yaml")
	if err := os.WriteFile(file, []byte("scopes: [read, write]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"AUTHZ_DATABASE_URL=" + pgtest.URL(t), "AUTHZ_ENCRYPTION_KEY=" + testEncryptionKey, "AUTHZ_CONFIG=" + file}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--scope", "admin"}, `authz: --scope "admin": the server does not offer it (AUTHZ_CONFIG ` + file + `: scopes="read,write")`},
		{[]string{"--resources", "https://api.example.com", "--allow-grant", "client_credentials", "--scope", "read", "--resource", "https://evil.example.com"},
			`authz: --resource "https://evil.example.com": the server does not offer it (--resources="https://api.example.com")`},
	} {
		out, stderr, code := runCmd(t, env, "", append([]string{"token", "initial-access", "create"}, tt.args...)...)
		if code != 1 || out != "" || strings.TrimSpace(stderr) != tt.want {
			t.Errorf("token initial-access create %v: exit %d, stdout %q, stderr %q; want exit 1 and %q", tt.args, code, out, stderr, tt.want)
		}
	}
}

// TestWrongEncryptionKeyNamesTheSetting: a key that cannot decrypt the
// stored signing keys is reported under the setting the operator gave it
// by (`keys rotate` and `serve`), not always as AUTHZ_ENCRYPTION_KEY.
func TestWrongEncryptionKeyNamesTheSetting(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.URL(t)
	if _, stderr, code := runCmd(t, []string{"AUTHZ_DATABASE_URL=" + dbURL, "AUTHZ_ENCRYPTION_KEY=" + testEncryptionKey}, "", "keys", "rotate"); code != 0 {
		t.Fatalf("keys rotate: %s", stderr)
	}
	file := filepath.Join(t.TempDir(), "authz.yaml")
	if err := os.WriteFile(file, []byte("encryption-key: "+wrongEncryptionKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name       string
		env, args  []string
		want, none string
	}{
		{"env", []string{"AUTHZ_ENCRYPTION_KEY=" + wrongEncryptionKey}, nil, "authz: AUTHZ_ENCRYPTION_KEY: ", "--encryption-key"},
		{"flag", nil, []string{"--encryption-key", wrongEncryptionKey}, "authz: --encryption-key: ", "AUTHZ_ENCRYPTION_KEY"},
		{"file", []string{"AUTHZ_CONFIG=" + file}, nil, "authz: AUTHZ_CONFIG " + file + ": encryption-key: ", "AUTHZ_ENCRYPTION_KEY"},
	} {
		for _, cmd := range [][]string{{"keys", "rotate"}, {"serve"}} {
			env := append([]string{"AUTHZ_DATABASE_URL=" + dbURL, "AUTHZ_ADDR=127.0.0.1:0"}, tt.env...)
			_, stderr, code := runBounded(t, env, append(cmd, tt.args...)...)
			var line string
			for _, l := range strings.Split(strings.TrimSpace(stderr), "\n") {
				if strings.HasPrefix(l, "authz: ") {
					line = l
				}
			}
			if code != 1 || !strings.HasPrefix(line, tt.want) || !strings.Contains(line, "encryption key is not the one") ||
				!strings.Contains(line, "give the old one in AUTHZ_PREVIOUS_ENCRYPTION_KEYS") ||
				strings.Contains(line, tt.none) || strings.Contains(stderr, wrongEncryptionKey) {
				t.Errorf("%s, key from %s: exit %d, stderr %q; want exit 1 and a line starting %q", strings.Join(cmd, " "), tt.name, code, stderr, tt.want)
			}
		}
	}
}
