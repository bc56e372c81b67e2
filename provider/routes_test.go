package provider

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/authzd/authz/provider/store/memory"
)

// TestRouteTable: the metadata advertises exactly the routes of the table
// that say so, every advertised URL is served, a route not advertised is
// absent from the metadata, and every JSON route answers a wrong method
// with an RFC 6749 §5.2 JSON 405.
func TestRouteTable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, issuer, policy string
		registration         bool
		noOIDC               bool
	}{
		{"bare host, open registration", "https://auth.example.com", RegistrationOpen, true, false},
		{"issuer with a path, registration off", "https://auth.example.com/tenant", RegistrationOff, false, false},
		{"OpenID Connect off", "https://auth.example.com/tenant", RegistrationOpen, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := New(context.Background(), Options{Issuer: tc.issuer, Store: memory.New(), RegistrationPolicy: tc.policy, DisableOIDC: tc.noOIDC,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				t.Fatal(err)
			}
			h := s.Handler()
			serve := func(method, target string) *httptest.ResponseRecorder {
				u, _ := url.Parse(target)
				w := httptest.NewRecorder()
				h.ServeHTTP(w, httptest.NewRequest(method, u.RequestURI(), strings.NewReader("")))
				return w
			}

			// Both documents: the RFC 8414 one and the OpenID Connect
			// Discovery one, whose embedded part it is.
			advertised := map[string]bool{}
			var collect func(mv reflect.Value)
			collect = func(mv reflect.Value) {
				for i := 0; i < mv.NumField(); i++ {
					f := mv.Type().Field(i)
					if f.Anonymous {
						collect(mv.Field(i))
						continue
					}
					if (strings.HasSuffix(f.Name, "Endpoint") || f.Name == "JWKSURI") && mv.Field(i).String() != "" {
						advertised[mv.Field(i).String()] = true
					}
				}
			}
			collect(reflect.ValueOf(s.openidMetadata))
			if !reflect.DeepEqual(s.metadata, s.openidMetadata.AuthorizationServerMetadata) {
				t.Error("the RFC 8414 document is not the OpenID document's embedded part")
			}
			for _, p := range []string{PathUserInfo, PathEndSession} {
				if got := advertised[s.url(p)]; got == tc.noOIDC {
					t.Errorf("%s advertised: %v with OpenID Connect off=%v", p, got, tc.noOIDC)
				}
			}
			oidcDoc := serve(http.MethodGet, tc.issuer+"/.well-known/openid-configuration")
			if (oidcDoc.Code == http.StatusOK) == tc.noOIDC {
				t.Errorf("openid-configuration answers %d with OpenID Connect off=%v", oidcDoc.Code, tc.noOIDC)
			}
			if got := advertised[s.url(PathRegister)]; got != tc.registration {
				t.Errorf("registration endpoint advertised: %v, want %v", got, tc.registration)
			}
			fromTable := map[string]bool{}
			for _, rt := range s.routes() {
				if rt.advertise != nil {
					fromTable[s.url(rt.path)] = true
				}
			}
			if !reflect.DeepEqual(advertised, fromTable) {
				t.Errorf("metadata endpoints %v, route table %v", advertised, fromTable)
			}
			for u := range advertised {
				method := http.MethodPost
				if strings.HasSuffix(u, PathJWKS) {
					method = http.MethodGet
				}
				if w := serve(method, u); w.Code == http.StatusNotFound || w.Code == http.StatusMethodNotAllowed {
					t.Errorf("advertised %s is not served: %s answers %d", u, method, w.Code)
				}
			}
			for _, rt := range s.routes() {
				if !rt.json {
					continue
				}
				u := s.url(strings.ReplaceAll(rt.path, "{client_id}", "some-client"))
				w := serve(http.MethodPatch, u)
				var body map[string]string
				if w.Code != http.StatusMethodNotAllowed || !strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") ||
					json.Unmarshal(w.Body.Bytes(), &body) != nil || body["error"] != "invalid_request" {
					t.Errorf("PATCH %s: %d %q %q, want a JSON 405", rt.path, w.Code, w.Header().Get("Content-Type"), w.Body.String())
				}
			}
		})
	}
}
