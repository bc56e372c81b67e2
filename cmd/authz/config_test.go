package main

import (
	"flag"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/authzd/authz/provider/store/memory"
)

// TestRefreshGraceMapping: AUTHZ_REFRESH_GRACE=0 means "no grace window",
// while provider.Options reads zero as "the default"; the mapping between
// the two must hold.
func TestRefreshGraceMapping(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in       time.Duration
		disabled bool
	}{{0, true}, {30 * time.Second, false}, {5 * time.Second, false}} {
		c := config{Issuer: "http://localhost:8080", RefreshGrace: tc.in}
		o, err := c.providerOptions(memory.New(), slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		if tc.disabled && o.RefreshGrace >= 0 {
			t.Errorf("grace %v: provider RefreshGrace %v, want negative (disabled)", tc.in, o.RefreshGrace)
		}
		if !tc.disabled && o.RefreshGrace != tc.in {
			t.Errorf("grace %v: provider RefreshGrace %v", tc.in, o.RefreshGrace)
		}
	}
}

// TestClientMetadataDocumentsSetting: on by default, "off" turns it off,
// anything else is refused by name.
func TestClientMetadataDocumentsSetting(t *testing.T) {
	t.Parallel()
	defaults := func() config {
		var c config
		if err := c.register(flag.NewFlagSet("x", flag.ContinueOnError)); err != nil {
			t.Fatal(err)
		}
		return c
	}
	if c := defaults(); c.MetadataDocuments != "on" {
		t.Fatalf("default %q, want on", c.MetadataDocuments)
	}
	for _, tc := range []struct {
		in       string
		disabled bool
		bad      bool
	}{{"on", false, false}, {"off", true, false}, {"maybe", false, true}, {"", false, true}} {
		c := defaults()
		c.MetadataDocuments = tc.in
		if err := c.validate(); (err != nil) != tc.bad {
			t.Errorf("%q: validate() = %v", tc.in, err)
		} else if err != nil && !strings.Contains(err.Error(), "AUTHZ_CLIENT_METADATA_DOCUMENTS") {
			t.Errorf("%q: the error does not name the variable: %v", tc.in, err)
		}
		if tc.bad {
			continue
		}
		o, err := c.providerOptions(memory.New(), slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		if o.DisableClientMetadataDocuments != tc.disabled {
			t.Errorf("%q: DisableClientMetadataDocuments = %v", tc.in, o.DisableClientMetadataDocuments)
		}
	}
}
