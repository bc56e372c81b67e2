package tests

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath is Debian's Chromium (apt-get install chromium);
// scripts/ensure-chromium.sh installs it under `make test` when missing.
const chromiumPath = "/usr/bin/chromium"

// TestConsentPageInChromium looks at the consent page for a metadata-document
// client in a real browser: the publishing host and the loopback warning
// must be visible, not merely present in the HTML.
func TestConsentPageInChromium(t *testing.T) {
	t.Parallel()
	requireChromium(t)
	ds := newDocServer(t)
	e := startWithDocs(t, storeKinds[0].open(t), ds, nil)
	user, pw := e.user("chromium")
	id := ds.publish("/claude-code.json", 200, nil, map[string]any{
		"client_id": ds.url("/claude-code.json"), "client_name": "Claude Code",
		"redirect_uris": []string{"http://localhost/callback"}, "token_endpoint_auth_method": "none",
	})
	host := strings.Split(strings.TrimPrefix(ds.srv.URL, "https://"), ":")[0]
	authURL := authRequest{clientID: id, redirectURI: fmt.Sprintf("http://127.0.0.1:%d/callback", freePort(t)), state: "s",
		scope: "read offline_access", verifier: testVerifier}.url(e.issuer)

	bctx := newChromium(t)

	err := chromedp.Do(bctx,
		chromedp.Navigate(authURL),
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), user),
		chromedp.SendKeys(chromedp.ID("password"), pw),
		chromedp.Submit(chromedp.ID("password")),
		chromedp.WaitVisible(chromedp.ID("document-host")),
		chromedp.WaitVisible(chromedp.ID("loopback-warning")),
	)
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	text := func(id string) string {
		t.Helper()
		v, err := chromedp.Run(bctx, chromedp.Text(chromedp.ID(id), chromedp.NodeVisible))
		if err != nil {
			t.Fatalf("chromium: text of #%s: %v", id, err)
		}
		return v
	}
	hostText, warning := text("document-host"), text("loopback-warning")
	title, err := chromedp.Run(bctx, chromedp.Title())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(hostText, host) {
		t.Fatalf("the visible host line is %q, want it to name %s", hostText, host)
	}
	if !strings.Contains(warning, "on this computer") {
		t.Fatalf("the visible warning is %q", warning)
	}
	if !strings.Contains(title, "Claude Code") {
		t.Fatalf("title %q", title)
	}
}

// requireChromium skips (or, with AUTHZ_TEST_REQUIRE_BROWSER=1 as under
// make test, fails) a test when Debian's Chromium is not installed.
func requireChromium(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("AUTHZ_TEST_REQUIRE_BROWSER") == "1" {
			t.Fatalf("%s is missing (AUTHZ_TEST_REQUIRE_BROWSER=1): apt-get install -y chromium, or run `make test` as root", chromiumPath)
		}
		t.Skipf("%s is missing; `make test` requires it", chromiumPath)
	}
}

// newChromium starts a headless Chromium for t, stopped at its end (at the
// latest after 90 s).
func newChromium(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath), chromedp.NoSandbox, chromedp.Headless,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("no-proxy-server", true))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelBrowser(); cancelAlloc(); cancel() })
	// Start the browser now, on bctx: the first Run on a context starts it
	// bound to that context, and callers may run steps under shorter ones.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return bctx
}
