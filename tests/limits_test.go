package tests

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/authzd/authz/provider"
)

// TestOversizedBodiesAreRefused: request bodies are capped; a huge body is
// a clean client error in the endpoint's own format, never a 500 and never
// read to the end.
func TestOversizedBodiesAreRefused(t *testing.T) {
	t.Parallel()
	e := start(t, storeKinds[0].open(t), nil)
	big := strings.Repeat("a", 1<<20)
	cases := []struct {
		name, path, contentType, body, wantError string
	}{
		{"token form", provider.PathToken, "application/x-www-form-urlencoded", "grant_type=client_credentials&pad=" + big, "invalid_request"},
		{"revoke form", provider.PathRevoke, "application/x-www-form-urlencoded", "token=" + big, "invalid_request"},
		{"introspect form", provider.PathIntrospect, "application/x-www-form-urlencoded", "token=" + big, "invalid_request"},
		{"registration JSON", provider.PathRegister, "application/json", `{"redirect_uris":["https://a.example.com/cb"]` + strings.Repeat(" ", 1<<20) + `}`, "invalid_client_metadata"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.Post(e.issuer+tc.path, tc.contentType, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 400 && resp.StatusCode != 413 {
				t.Fatalf("status %d: %.200s", resp.StatusCode, raw)
			}
			var m map[string]any
			if err := json.Unmarshal(raw, &m); err != nil {
				t.Fatalf("not JSON: %.200s", raw)
			}
			mustEqual(t, "error", m["error"], any(tc.wantError))
		})
	}
}
