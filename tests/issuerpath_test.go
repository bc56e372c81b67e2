package tests

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/store"
)

// TestIssuerURLWithoutSlashReachesRootPage: with an issuer that has a path,
// the issuer URL itself (as every document and the CLI print it, without a
// final "/") answered a bare 404; it now leads to the root page under it.
func TestIssuerURLWithoutSlashReachesRootPage(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), func(o *provider.Options) {
			o.Issuer += "/tenant"
			o.Resources = []string{o.Issuer + "/mcp"}
		})
		iss := e.issuer + "/tenant"
		noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		for _, method := range []string{"GET", "HEAD"} {
			req, _ := http.NewRequest(method, iss, nil)
			resp, err := noFollow.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			mustEqual(t, method+" "+iss, resp.StatusCode, http.StatusFound)
			mustEqual(t, "Location", resp.Header.Get("Location"), "/tenant/")
		}
		resp, err := http.Get(iss)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		mustEqual(t, "followed to "+resp.Request.URL.String(), resp.StatusCode, 200)
		if !strings.Contains(string(body), "/tenant"+provider.PathApps) {
			t.Errorf("the root page does not link Connected apps:\n%s", body)
		}
		// Other paths are still not found, and POST is not redirected.
		resp, err = http.Post(iss, "application/x-www-form-urlencoded", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Errorf("POST %s: %d", iss, resp.StatusCode)
		}
	})
}
