package tests

import (
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/store"
)

// chaosSeed is fixed so a failure reproduces; change it locally to explore.
var chaosSeed uint64 = 1

// TestGarbageNeverBreaksTheServer throws seeded random combinations of
// parameters, valid and hostile, at every endpoint a client can reach
// without a browser. Whatever comes in, the answer is a client error in the
// endpoint's own format: never a 500, never a panic, never a non-JSON body
// from a JSON endpoint.
func TestGarbageNeverBreaksTheServer(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		e := start(t, open(t), nil)
		conf, secret, redirect := e.loopbackClient(false)
		pub, _, _ := e.loopbackClient(true)
		rng := rand.New(rand.NewPCG(chaosSeed, 2))
		pick := func(vals ...string) string { return vals[rng.IntN(len(vals))] }
		junk := []string{"", " ", "\x00", "\xff\xfe", "%", "a\nb", strings.Repeat("x", 3000), "authz_rt_", "authz_ac_x", "e30.e30.e30",
			"eyJhbGciOiJub25lIn0.e30.", "../../etc/passwd", `{"a":1}`, "\u202e", "null"}
		values := map[string][]string{
			"grant_type":            {"authorization_code", "refresh_token", "client_credentials", "password", "implicit", "urn:ietf:params:oauth:grant-type:jwt-bearer"},
			"code":                  {"authz_ac_AAAA"},
			"redirect_uri":          {redirect, "jetbrains://x", "javascript:alert(1)", "http://127.0.0.1:1/callback"},
			"code_verifier":         {testVerifier, "short"},
			"refresh_token":         {"authz_rt_AAAA"},
			"client_id":             {conf.ID, pub.ID, "nope"},
			"client_secret":         {secret, "wrong"},
			"resource":              {"https://mcp.example.com/mcp", "/relative", "https://x#frag", "https://nope.example.com"},
			"scope":                 {"read", "read write admin", "nuclear", `"quoted"`},
			"token":                 {"x"},
			"token_type_hint":       {"access_token", "refresh_token", "bogus"},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
			"client_assertion":      {"a.b.c"},
		}
		keys := make([]string, 0, len(values))
		for k := range values {
			keys = append(keys, k)
		}
		form := func() url.Values {
			f := url.Values{}
			for range rng.IntN(7) + 1 {
				k := keys[rng.IntN(len(keys))]
				v := pick(append(values[k], junk...)...)
				if rng.IntN(5) == 0 {
					f.Add(k, v) // sometimes repeated
				}
				f.Add(k, v)
			}
			return f
		}
		post := func(path string, f url.Values, basic bool) {
			req, _ := http.NewRequest("POST", e.issuer+path, strings.NewReader(f.Encode()))
			req.Header.Set("Content-Type", pick("application/x-www-form-urlencoded", "application/x-www-form-urlencoded", "text/plain", ""))
			if basic {
				req.SetBasicAuth(pick(conf.ID, pub.ID, "\x00", ""), pick(secret, "", "wrong"))
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode >= 500 {
				t.Fatalf("POST %s %.300v: %d %.300s", path, f, resp.StatusCode, raw)
			}
			if path == provider.PathRevoke && resp.StatusCode == 200 && len(raw) == 0 {
				return // RFC 7009 §2.2: success has no body
			}
			var m map[string]any
			if err := json.Unmarshal(raw, &m); err != nil {
				t.Fatalf("POST %s %.300v: non-JSON %d %.200s", path, f, resp.StatusCode, raw)
			}
		}
		b := e.browser()
		for i := range 1200 {
			f := form()
			switch i % 4 {
			case 0, 1:
				post(provider.PathToken, f, rng.IntN(2) == 0)
			case 2:
				post(pick(provider.PathRevoke, provider.PathIntrospect), f, rng.IntN(2) == 0)
			case 3:
				for _, k := range []string{"response_type", "code_challenge", "code_challenge_method", "state"} {
					if rng.IntN(2) == 0 {
						f.Set(k, pick("code", "token", "S256", "plain", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", pick(junk...)))
					}
				}
				p := b.do("GET", provider.PathAuthorize+"?"+f.Encode(), nil)
				if p.status >= 500 {
					t.Fatalf("GET authorize %.300v: %d %.200s", f, p.status, p.body)
				}
				if p.location != "" {
					u, err := url.Parse(p.location)
					if err != nil || (u.Scheme != "http" && !strings.HasPrefix(p.location, "/")) {
						t.Fatalf("GET authorize %.300v redirected to %q", f, p.location)
					}
				}
			}
		}
	})
}
