package tests

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/store"
)

// page is a browser tab on one server, which writes a screenshot of what
// it shows to a temporary folder when the test fails.
type tab struct {
	t    *testing.T
	ctx  context.Context
	name string
}

func (b tab) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	// A step that waits in vain fails after 20 s, leaving time for the
	// screenshot within the browser's own 90 s.
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.fail("chromium: %v", err)
	}
}

// text is the visible text (innerText) of the first element css selects.
func (b tab) text(css string) string {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS(css), chromedp.NodeVisible))
	if err != nil {
		b.fail("chromium: text of %s: %v", css, err)
	}
	return v
}

func (b tab) eval(js string) bool {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](js))
	if err != nil {
		b.fail("chromium: %s: %v", js, err)
	}
	return v
}

func (b tab) str(js string) string {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](js))
	if err != nil {
		b.fail("chromium: %s: %v", js, err)
	}
	return v
}

// fail writes a full-page screenshot to a folder that outlives the test,
// says where, and fails.
func (b tab) fail(format string, args ...any) {
	b.t.Helper()
	b.screenshot()
	b.t.Fatalf(format, args...)
}

func (b tab) screenshot() {
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("no screenshot: %v", err)
		return
	}
	dir, err := os.MkdirTemp("", "authz-browser-")
	if err == nil {
		path := filepath.Join(dir, strings.ReplaceAll(b.t.Name(), "/", "_")+"-"+b.name+".png")
		if os.WriteFile(path, png, 0o644) == nil {
			b.t.Logf("screenshot of %s: %s", b.name, path)
		}
	}
}

// check fails (with a screenshot) unless ok.
func (b tab) check(ok bool, format string, args ...any) {
	b.t.Helper()
	if !ok {
		b.screenshot()
		b.t.Errorf(format, args...)
	}
}

// TestPagesInChromium drives the sign-in, consent (an administrator's app
// with logo and policies, and an app that registered itself), connected
// apps (desktop and 375 px) and error pages in headless Chromium, and
// checks what a person sees.
func TestPagesInChromium(t *testing.T) {
	t.Parallel()
	requireChromium(t)
	logo := pngLogo(t)
	assets := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(logo) }))
	t.Cleanup(assets.Close)
	e := start(t, memoryStore(), func(o *provider.Options) {
		o.HTTPClient = assets.Client()
		o.ScopeDescriptions = map[string]string{"read": "Read your documents", "write": "Change your documents"}
	})
	username, password := e.user("browser-user")
	c, secret, redirect := e.loopbackClient(false)
	m := c.Metadata
	m.Name, m.LogoURI, m.PolicyURI, m.TOSURI = "Docs Editor", assets.URL+"/logo.png", "https://docs.example.com/privacy", "https://docs.example.com/terms"
	c.Metadata = m
	if _, err := e.store.UpdateClient(t.Context(), c.ID, func(c *store.Client) error { c.Metadata = m; return nil }); err != nil {
		t.Fatal(err)
	}
	b := tab{t: t, ctx: newChromium(t), name: "sign-in"}

	// Sign-in: labelled fields, the app it continues to.
	b.do(chromedp.Navigate(authRequest{clientID: c.ID, redirectURI: redirect, state: "s", scope: "read write", verifier: testVerifier}.url(e.issuer)),
		chromedp.WaitVisible(chromedp.ID("username")))
	b.check(strings.Contains(b.text("main"), "to continue to Docs Editor"), "sign-in page does not name the app: %q", b.text("main"))
	b.check(b.eval(`[...document.querySelectorAll('input:not([type=hidden])')].every(i => i.labels.length > 0)`), "a sign-in field has no label")
	b.check(b.eval(`document.documentElement.lang === 'en'`), "no lang")
	b.do(chromedp.SendKeys(chromedp.ID("username"), username), chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Submit(chromedp.ID("password")), chromedp.WaitVisible(chromedp.CSS("ul.scopes")))

	// Consent, administrator's app: sentences, marker, logo, policies.
	b.name = "consent-admin"
	consent := b.text("main")
	for _, want := range []string{"Allow Docs Editor?", "Verified by your administrator", "Read your documents (read)", "Change your documents (write)",
		"Privacy policy", "Terms of service", "Not you?"} {
		b.check(strings.Contains(consent, want), "consent page does not show %q:\n%s", want, consent)
	}
	b.check(b.eval(`(() => { const i = document.querySelector('img.app-logo'); return !!i && i.complete && i.naturalWidth === 4 && i.src.startsWith('data:image/png') })()`),
		"the logo is not shown from the page itself")
	b.check(!b.eval(`document.querySelector('ul.scopes input, ul.scopes code') !== null`), "scopes are shown as inputs or code boxes")
	b.check(b.eval(`getComputedStyle(document.querySelector('ul.scopes li')).borderTopStyle === 'none'`), "scope items are boxed like inputs")

	// Consent, an app that registered itself.
	status, reg := e.register(t, map[string]any{"redirect_uris": []string{"http://127.0.0.1/cb"}, "client_name": "Unknown Tool", "token_endpoint_auth_method": "none"})
	mustEqual(t, "register", status, http.StatusCreated)
	b.name = "consent-self-registered"
	b.do(chromedp.Navigate(authRequest{clientID: reg["client_id"].(string), redirectURI: fmt.Sprintf("http://127.0.0.1:%d/cb", freePort(t)), state: "s", scope: "read", verifier: testVerifier}.url(e.issuer)),
		chromedp.WaitVisible(chromedp.CSS(".badge")))
	b.check(strings.Contains(b.text(".badge"), "Registered itself"), "self-registered marker: %q", b.text(".badge"))
	b.check(!b.eval(`document.querySelector('img.app-logo') !== null`), "a logo for an app without one")

	// The user's app, authorized and redeemed (from another device), so
	// Connected apps has a row.
	code := e.codeFor(e.browser(), authRequest{clientID: c.ID, redirectURI: redirect, state: "s", scope: "read write", verifier: testVerifier}, username, password)
	mustEqual(t, "token", e.postToken(exchangeForm(code, redirect, testVerifier, nil), c.ID, secret).Status, http.StatusOK)

	for _, width := range []int64{1280, 375} {
		b.name = fmt.Sprintf("apps-%d", width)
		b.do(chromedp.EmulateViewport(width, 800), chromedp.Navigate(e.issuer+provider.PathApps), chromedp.WaitVisible(chromedp.CSS("table.apps")))
		b.check(strings.Contains(b.text("table.apps"), "Docs Editor"), "app name not visible at %d px", width)
		b.check(b.eval(`document.documentElement.scrollWidth <= window.innerWidth`), "horizontal overflow at %d px", width)
		b.check(b.eval(`[...document.querySelectorAll('main *')].every(el => el.getBoundingClientRect().right <= window.innerWidth + 0.5)`),
			"an element sticks out of the viewport at %d px: %s", width, b.str(`[...document.querySelectorAll('main *')].filter(el => el.getBoundingClientRect().right > window.innerWidth + 0.5).map(el => el.tagName + '.' + el.className + ' ' + Math.round(el.getBoundingClientRect().right)).join(', ') + ' / ' + document.documentElement.scrollWidth + ' > ' + window.innerWidth`))
		b.check(!strings.Contains(b.text("table.apps"), "Revoke Docs Editor's access?"), "the confirmation shows before Revoke is clicked")
	}
	// Revoke asks first (still at 375 px).
	b.name = "apps-revoke-confirm"
	b.do(chromedp.Click(chromedp.CSS("details.confirm summary")), chromedp.WaitVisible(chromedp.CSS("details.confirm button.danger")))
	b.check(strings.Contains(b.text("details.confirm"), "Revoke Docs Editor's access? It is signed out on that device at once."), "confirmation text: %q", b.text("details.confirm"))
	b.do(chromedp.Click(chromedp.CSS("details.confirm button.danger")), chromedp.WaitVisible(chromedp.ID("no-apps")))
	b.check(strings.Contains(b.text("main"), "No app has access to your account."), "after Revoke: %q", b.text("main"))

	// Sign out: asks, then says so.
	b.name = "sign-out"
	b.do(chromedp.Navigate(e.issuer+provider.PathLogout), chromedp.WaitVisible(chromedp.ID("confirm-sign-out")), chromedp.Click(chromedp.ID("confirm-sign-out")),
		chromedp.WaitVisible(chromedp.CSS(".notice")))
	b.check(b.text(".notice") == "You are signed out.", "signed-out notice: %q", b.text(".notice"))

	// An error page a person can read.
	b.name = "error"
	b.do(chromedp.Navigate(e.issuer+provider.PathAuthorize+"?client_id=nosuch&response_type=code"), chromedp.WaitVisible(chromedp.CSS("h1")))
	b.check(b.text("h1") != "" && !strings.Contains(b.text("main"), "{"), "error page: %q", b.text("main"))
}
