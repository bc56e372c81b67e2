package tests

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/store"
)

// pngLogo is a small real PNG.
func pngLogo(t *testing.T) []byte {
	img := image.NewRGBA(image.Rect(0, 0, 4, 4))
	img.Set(1, 1, color.RGBA{R: 200, A: 255})
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestConsentPage: what a person sees before allowing an app: scopes as
// sentences (configured, built-in, or the name), the app's logo inlined
// from the server (never loaded by the browser from the app's host, never
// SVG), its home page and policies, whether an administrator vouched for
// it, where the answer goes, and "Not you? Sign out".
func TestConsentPage(t *testing.T) {
	t.Parallel()
	logo := pngLogo(t)
	assets := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/logo.png":
			_, _ = w.Write(logo)
		case "/logo.svg":
			w.Header().Set("Content-Type", "image/png") // lies: the bytes decide
			_, _ = w.Write([]byte(`<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"></svg>`))
		case "/huge.png":
			_, _ = w.Write(append(logo, make([]byte, 1<<20)...))
		}
	}))
	t.Cleanup(assets.Close)
	e := start(t, memoryStore(), func(o *provider.Options) {
		o.HTTPClient = assets.Client()
		o.Scopes = append(o.Scopes, "offline_access")
		o.ScopeDescriptions = map[string]string{"read": "Read your documents"}
	})
	username, password := e.user("consent-viewer")

	admin, _, redirect := e.loopbackClient(false)
	meta := admin.Metadata
	meta.LogoURI, meta.ClientURI, meta.PolicyURI, meta.TOSURI = assets.URL+"/logo.png", "https://app.example.com/", "https://app.example.com/privacy", "https://app.example.com/terms"
	admin.Metadata = meta
	if _, err := e.store.UpdateClient(t.Context(), admin.ID, replaceClient(admin)); err != nil {
		t.Fatal(err)
	}
	req := authRequest{clientID: admin.ID, redirectURI: redirect, state: "s", scope: "read write offline_access", verifier: testVerifier}
	p := e.browser().consentPage(req.url(e.issuer), username, password)
	mustEqual(t, "consent status", p.status, http.StatusOK)
	for _, want := range []string{
		"Read your documents", "(read)",
		"Use the “write” permission",
		"Keep access while you are away: you stay signed in until you revoke it",
		"Verified by your administrator",
		`src="data:image/png;base64,`,
		`href="https://app.example.com/"`, `href="https://app.example.com/privacy"`, `href="https://app.example.com/terms"`,
		"you go back to <code>http://127.0.0.1:", "Not you?", "Signed in as <strong>consent-viewer</strong>",
	} {
		if !strings.Contains(p.body, want) {
			t.Errorf("consent page lacks %q", want)
		}
	}
	if strings.Contains(p.body, assets.URL) {
		t.Errorf("the page makes the browser load the app's logo from its host")
	}
	if strings.Contains(p.body, "<input type=\"text\"") || strings.Contains(p.body, "registered itself") {
		t.Errorf("consent page shows inputs or the self-registered marker for an admin client")
	}

	// A self-registered client: the marker says so; an SVG or oversized
	// logo is not shown; links that are not http(s) are dropped.
	for _, logoPath := range []string{"/logo.svg", "/huge.png"} {
		status, reg := e.register(t, map[string]any{"redirect_uris": []string{"http://127.0.0.1/cb"}, "client_name": "Self app",
			"token_endpoint_auth_method": "none", "logo_uri": assets.URL + logoPath, "client_uri": "https://self.example.com"})
		mustEqual(t, "register", status, http.StatusCreated)
		p = e.browser().consentPage(authRequest{clientID: reg["client_id"].(string), redirectURI: "http://127.0.0.1:5555/cb", state: "s", scope: "read", verifier: testVerifier}.url(e.issuer), username, password)
		mustEqual(t, "consent status", p.status, http.StatusOK)
		if !strings.Contains(p.body, "Registered itself") || strings.Contains(p.body, "Verified by your administrator") {
			t.Errorf("self-registered client: trust marker missing or wrong")
		}
		if strings.Contains(p.body, "<img") {
			t.Errorf("logo %s shown", logoPath)
		}
	}

	// With the default outbound fetcher, a logo it cannot fetch (here: a
	// certificate it does not trust) is not shown, and the page still renders.
	e2 := start(t, memoryStore(), nil)
	u2, pw2 := e2.user("nologo")
	c2, _, r2 := e2.loopbackClient(false)
	m2 := c2.Metadata
	m2.LogoURI = assets.URL + "/logo.png" // 127.0.0.1
	c2.Metadata = m2
	if _, err := e2.store.UpdateClient(t.Context(), c2.ID, replaceClient(c2)); err != nil {
		t.Fatal(err)
	}
	p = e2.browser().consentPage(authRequest{clientID: c2.ID, redirectURI: r2, state: "s", scope: "read", verifier: testVerifier}.url(e2.issuer), u2, pw2)
	if p.status != http.StatusOK || strings.Contains(p.body, "<img") {
		t.Errorf("logo on a loopback address: status %d, shown %v", p.status, strings.Contains(p.body, "<img"))
	}
}

// TestSignOutAndRootPages: "Not you? Sign out" asks first, signs out, and
// comes back to the same authorization at the sign-in page, which says
// the browser is signed out; the root page leads to connected apps; the
// Revoke button asks for confirmation before the form that revokes.
func TestSignOutAndRootPages(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		username, password := e.user("leaver")
		c, secret, redirect := e.loopbackClient(false)
		b := e.browser()
		authURL := authRequest{clientID: c.ID, redirectURI: redirect, state: "s", scope: "read", verifier: testVerifier}.url(e.issuer)
		p := b.consentPage(authURL, username, password)
		link := hrefRe.FindAllStringSubmatch(p.body, -1)
		var signOut string
		for _, m := range link {
			if strings.HasPrefix(m[1], provider.PathLogout) {
				signOut = strings.ReplaceAll(m[1], "&amp;", "&")
			}
		}
		if signOut == "" {
			t.Fatalf("no sign-out link on the consent page")
		}
		p = b.do("GET", signOut, nil)
		if p.status != http.StatusOK || !strings.Contains(p.body, "Sign out?") {
			t.Fatalf("sign-out page: %d %.300s", p.status, p.body)
		}
		mustEqual(t, "still signed in after GET", b.do("GET", provider.PathApps, nil).status, http.StatusOK)
		p = b.do("POST", provider.PathLogout, formFields(p.body))
		mustEqual(t, "sign out", p.status, http.StatusSeeOther)
		loc, _ := url.Parse(p.location)
		if loc.Path != provider.PathLogin || loc.Query().Get("signed_out") != "1" || !strings.HasPrefix(loc.Query().Get("return_to"), provider.PathAuthorize+"?") {
			t.Fatalf("after sign-out: %s", p.location)
		}
		p = b.do("GET", p.location, nil)
		if !strings.Contains(p.body, "You are signed out.") || !strings.Contains(p.body, c.Metadata.Name) {
			t.Errorf("sign-in page after sign-out: %.500s", p.body)
		}
		// Signing in as someone else continues the same authorization.
		other, otherPW := e.user("other-person")
		f := formFields(p.body)
		f.Set("username", other)
		f.Set("password", otherPW)
		p = b.do("POST", provider.PathLogin, f)
		if p.status != http.StatusSeeOther || !strings.HasPrefix(p.location, provider.PathAuthorize) {
			t.Fatalf("sign-in as another user: %d %s", p.status, p.location)
		}
		code := e.codeFor(b, authRequest{clientID: c.ID, redirectURI: redirect, state: "s", scope: "read", verifier: testVerifier}, other, otherPW)
		tr := e.postToken(exchangeForm(code, redirect, testVerifier, nil), c.ID, secret)
		mustEqual(t, "token", tr.Status, http.StatusOK)

		// Plain sign-out from the apps page lands on the signed-out page too.
		apps := b.do("GET", provider.PathApps, nil)
		if !strings.Contains(apps.body, `<details class="confirm"><summary class="danger">Revoke</summary>`) ||
			!strings.Contains(apps.body, "It is signed out on that device at once.") {
			t.Errorf("Revoke has no confirmation step: %.1500s", apps.body)
		}
		p = b.do("POST", provider.PathLogout, url.Values{"csrf_token": {formFields(apps.body).Get("csrf_token")}})
		mustEqual(t, "apps sign-out location", p.location, provider.PathLogin+"?signed_out=1")

		// The root page.
		p = b.do("GET", "/", nil)
		if p.status != http.StatusOK || !strings.Contains(p.body, `href="`+provider.PathApps+`"`) {
			t.Errorf("root page: %d %.300s", p.status, p.body)
		}
		// Every page declares its language and labels its fields.
		for _, path := range []string{"/", provider.PathLogin} {
			p = b.do("GET", path, nil)
			if !strings.Contains(p.body, `<html lang="en">`) {
				t.Errorf("%s has no lang", path)
			}
		}
	})
}

var hrefRe = regexp.MustCompile(`href="([^"]+)"`)
