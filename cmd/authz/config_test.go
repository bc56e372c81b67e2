package main

import (
	"flag"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/store/memory"
)

// TestRefreshGraceMapping: AUTHZ_REFRESH_GRACE and provider.Options mean
// the same thing ("0 = no grace window"), so the value passes through
// unchanged; a window shorter than the Retry-After the server sends is
// refused at start with one line naming the variable.
func TestRefreshGraceMapping(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      time.Duration
		wantErr bool
	}{{0, false}, {30 * time.Second, false}, {5 * time.Second, false}, {4 * time.Second, true}, {time.Millisecond, true}, {-time.Second, true}} {
		var c config // every setting at its default, then the grace under test
		if err := c.register(flag.NewFlagSet("test", flag.ContinueOnError)); err != nil {
			t.Fatal(err)
		}
		c.DatabaseURL, c.RefreshGrace = "", tc.in
		err := c.validate()
		if tc.wantErr {
			if err == nil || !strings.HasPrefix(err.Error(), "AUTHZ_REFRESH_GRACE") || strings.Contains(err.Error(), "\n") {
				t.Errorf("grace %v: validate = %v, want one line about AUTHZ_REFRESH_GRACE", tc.in, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("grace %v: validate: %v", tc.in, err)
		}
		o, err := c.providerOptions(memory.New(), slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		if o.RefreshGrace != tc.in {
			t.Errorf("grace %v: provider RefreshGrace %v", tc.in, o.RefreshGrace)
		}
		if _, err := provider.New(t.Context(), o); err != nil {
			t.Errorf("grace %v: provider.New: %v", tc.in, err)
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

// TestSettingsShowProviderDefaults: every setting's default is the value
// provider uses when the option is left unset, so `-h`, README and the
// server cannot disagree; and every setting feeding an option names a real
// Options field, so provider's errors find their variable.
func TestSettingsShowProviderDefaults(t *testing.T) {
	t.Parallel()
	var c config
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	if err := c.register(fs); err != nil {
		t.Fatal(err)
	}
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	given, err := c.providerOptions(memory.New(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defaults, err := provider.ResolveOptions(provider.Options{Issuer: c.Issuer})
	if err != nil {
		t.Fatal(err)
	}
	gv, dv := reflect.ValueOf(given), reflect.ValueOf(defaults)
	for _, st := range c.settings() {
		if st.option == "" {
			continue
		}
		f := gv.FieldByName(st.option)
		if !f.IsValid() {
			t.Errorf("%s: provider.Options has no field %s", st.env, st.option)
			continue
		}
		switch st.option {
		case "Issuer", "Resources", "Scopes", "EncryptionKey", "PreviousEncryptionKeys", "TrustedProxies", "AdminScopes", "RegistrationScopes", "RedirectSchemes":
			continue // lists: no provider default to show (the issuer is the CLI's own; the schemes are dcr's)
		case "RefreshGrace":
			// Zero is "off" in provider, so the default is set explicitly.
			if given.RefreshGrace != provider.DefaultRefreshGrace {
				t.Errorf("%s: default %s, want provider.DefaultRefreshGrace", st.env, given.RefreshGrace)
			}
			continue
		}
		if !f.Equal(dv.FieldByName(st.option)) {
			t.Errorf("%s: the CLI's default %v is not provider's %v", st.env, f.Interface(), dv.FieldByName(st.option).Interface())
		}
	}
}
