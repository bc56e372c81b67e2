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
	}{
		{"bare host, open registration", "https://auth.example.com", RegistrationOpen, true},
		{"issuer with a path, registration off", "https://auth.example.com/tenant", RegistrationOff, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := New(context.Background(), Options{Issuer: tc.issuer, Store: memory.New(), RegistrationPolicy: tc.policy,
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

			advertised := map[string]bool{}
			mv := reflect.ValueOf(s.metadata)
			for i := 0; i < mv.NumField(); i++ {
				name := mv.Type().Field(i).Name
				if (strings.HasSuffix(name, "Endpoint") || name == "JWKSURI") && mv.Field(i).String() != "" {
					advertised[mv.Field(i).String()] = true
				}
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
