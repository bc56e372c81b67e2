package tests

import (
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// flagDefault runs bin with args (a help request) and returns the default
// of flag name as Go's flag package prints it.
func flagDefault(t *testing.T, bin, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	// The built-in defaults, not this environment's AUTHZ_* settings.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AUTHZ_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out, _ := cmd.CombinedOutput() // -h exits 0 or 2
	m := regexp.MustCompile(`(?m)^  -` + regexp.QuoteMeta(name) + `\b.*\n\s+.*\(default "([^"]*)"\)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("%s %v: no default for -%s in:\n%s", bin, args, name, out)
	}
	return string(m[1])
}

// TestQuickStartExampleRunsBesideMakeRun: the README runs `make run` and
// then `go run ./examples/resource-server` with their defaults, on one
// machine. The example listened on 127.0.0.1:9090, which is authz's admin
// listener (AUTHZ_ADMIN_ADDR): the second to start failed with "address
// already in use". The defaults must not collide, and the example's
// default -resource must be the URL it listens on.
func TestQuickStartExampleRunsBesideMakeRun(t *testing.T) {
	t.Parallel()
	authzBin, resourceBin := buildBinaries(t)
	adminAddr := flagDefault(t, authzBin, "admin-addr", "serve", "--help")
	authzAddr := flagDefault(t, authzBin, "addr", "serve", "--help")
	exampleAddr := flagDefault(t, resourceBin, "addr", "-h")
	exampleResource := flagDefault(t, resourceBin, "resource", "-h")
	if exampleAddr == adminAddr || exampleAddr == authzAddr {
		t.Errorf("the example resource server listens on %s by default, as authz's -addr (%s) or -admin-addr (%s) does",
			exampleAddr, authzAddr, adminAddr)
	}
	if u, err := url.Parse(exampleResource); err != nil || u.Host != exampleAddr {
		t.Errorf("the example's default -resource %s is not on its default -addr %s", exampleResource, exampleAddr)
	}
}
