package main

import (
	"io"
	"log/slog"
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
