package tests

import (
	"net/http"
	"testing"

	"github.com/authzd/authz/provider"
)

// TestAccessLogRouteLabels pins the route label of the access log and the
// HTTP metrics: the pattern of the matched route (templates included),
// "unmatched" when no route or no method matches, on a bare issuer and on
// one with a path. The label is now attached to each route at startup
// rather than read from gorilla/mux per request (README, Benchmarks,
// "Per-request work"); this is what must not have changed.
func TestAccessLogRouteLabels(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, path string }{{"bare issuer", ""}, {"issuer with a path", "/tenant"}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e, logs := startLogged(t, memoryStore(), func(o *provider.Options) {
				if tc.path != "" {
					o.Issuer += tc.path
					o.Resources = []string{o.Issuer + "/mcp"}
				}
			})
			root := e.http.URL // the origin: the browser prefixes e.issuer to paths
			for _, rc := range []struct {
				method, path, route string
				status              int
			}{
				{"POST", tc.path + provider.PathToken, tc.path + provider.PathToken, http.StatusUnauthorized},
				{"OPTIONS", tc.path + provider.PathToken, tc.path + provider.PathToken, http.StatusNoContent},
				{"DELETE", tc.path + provider.PathToken, "unmatched", http.StatusMethodNotAllowed},
				{"GET", tc.path + provider.PathRegister + "/some-client", tc.path + provider.PathRegister + "/{client_id}", http.StatusUnauthorized},
				{"GET", tc.path + "/no-such-page", "unmatched", http.StatusNotFound},
				{"GET", tc.path + provider.PathHealthz, tc.path + provider.PathHealthz, http.StatusOK},
			} {
				p := e.browser().do(rc.method, root+rc.path, nil)
				if p.status != rc.status {
					t.Errorf("%s %s: status %d, want %d", rc.method, rc.path, p.status, rc.status)
					continue
				}
				id := p.header.Get(provider.HeaderRequestID)
				var got []any
				for _, r := range logs.records(t, "request") {
					if r["request_id"] == id {
						got = append(got, r["route"])
					}
				}
				if len(got) != 1 || got[0] != rc.route {
					t.Errorf("%s %s: route labels %v, want [%s]", rc.method, rc.path, got, rc.route)
				}
			}
			if tc.path != "" {
				// The issuer URL itself redirects to its root page.
				p := e.browser().do("GET", root+tc.path, nil)
				id := p.header.Get(provider.HeaderRequestID)
				for _, r := range logs.records(t, "request") {
					if r["request_id"] == id && r["route"] != tc.path {
						t.Errorf("GET %s: route %v, want %s", tc.path, r["route"], tc.path)
					}
				}
			}
		})
	}
}
