package resourceid

import "testing"

// TestCanonical pins the canonical form server and middleware share. The
// rows marked "was" are where the two former copies disagreed.
func TestCanonical(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"https://api.example.com", "https://api.example.com"},
		{"https://api.example.com/", "https://api.example.com"}, // RFC 3986 §6.2.3
		{"HTTPS://API.Example.COM:443/mcp", "https://api.example.com/mcp"},
		{"http://h:80/x", "http://h/x"},
		{"http://h:8080/x", "http://h:8080/x"},
		{"https://h/mcp/", "https://h/mcp/"},   // kept; Match may ignore it
		{"https://h/a%2Fb", "https://h/a%2Fb"}, // was: the server decoded it to /a/b
		{"https://h/a%2fb", "https://h/a%2Fb"},
		{"https://h/%7Euser/%61", "https://h/~user/a"},
		{"https://h/mcp?", "https://h/mcp"}, // was: the server kept the "?"
		{"https://h/mcp?x=%7e", "https://h/mcp?x=~"},
		{"https://[2001:DB8::1]:443/r", "https://[2001:db8::1]/r"},
		{"https://[2001:db8::1]:8443/r", "https://[2001:db8::1]:8443/r"},
	} {
		got, err := Canonical(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("Canonical(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "/relative", "https://h/x#frag", "https://h/x#", "https://u:p@h/x", "urn:x:y", "https:///x"} {
		if got, err := Canonical(bad); err == nil {
			t.Errorf("Canonical(%q) = %q, want an error", bad, got)
		}
	}
}

func TestMatch(t *testing.T) {
	t.Parallel()
	configured := []string{"https://h", "https://h/mcp", "https://h/api/", "https://two/x", "https://two/x/"}
	for _, tc := range []struct {
		req, want string
		ok        bool
	}{
		{"https://h/", "https://h", true},
		{"https://H", "https://h", true},
		{"https://h/mcp/", "https://h/mcp", true},
		{"https://h/api", "https://h/api/", true}, // the configured form wins
		{"https://two/x", "https://two/x", true},
		{"https://two/x/", "https://two/x/", true},
		{"https://h/other", "", false},
		{"https://h/mcp//", "", false},
	} {
		got, ok, err := Match(tc.req, configured)
		if err != nil || ok != tc.ok || got != tc.want {
			t.Errorf("Match(%q) = %q, %v, %v; want %q, %v", tc.req, got, ok, err, tc.want, tc.ok)
		}
	}
	ambiguous := []string{"https://a/x", "https://a/x/"}
	if _, ok, _ := Match("https://a/x//", ambiguous); ok {
		t.Error("matched an ambiguous request")
	}
}

func TestWellKnown(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ id, path, url string }{
		{"https://h", "/.well-known/x", "https://h/.well-known/x"},
		{"https://h/", "/.well-known/x", "https://h/.well-known/x"},
		{"https://h/mcp", "/.well-known/x/mcp", "https://h/.well-known/x/mcp"},
		{"https://h/mcp/", "/.well-known/x/mcp", "https://h/.well-known/x/mcp"},
		{"https://h:8443/a%2Fb", "/.well-known/x/a%2Fb", "https://h:8443/.well-known/x/a%2Fb"},
	} {
		p, err := WellKnownPath(tc.id, "/.well-known/x")
		if err != nil || p != tc.path {
			t.Errorf("WellKnownPath(%q) = %q, %v; want %q", tc.id, p, err, tc.path)
		}
		u, err := WellKnownURL(tc.id, "/.well-known/x")
		if err != nil || u != tc.url {
			t.Errorf("WellKnownURL(%q) = %q, %v; want %q", tc.id, u, err, tc.url)
		}
	}
}
