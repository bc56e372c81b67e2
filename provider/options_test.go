package provider

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/authzd/authz/provider/store/memory"
)

// TestResolveOptions: zero fields take the exported defaults; every invalid
// value is refused once, here, naming its Options field (the CLI reports it
// under its variable). Negative lifetimes used to be accepted silently.
func TestResolveOptions(t *testing.T) {
	t.Parallel()
	o, err := ResolveOptions(Options{Issuer: "https://auth.example.com/"})
	if err != nil {
		t.Fatal(err)
	}
	if o.Issuer != "https://auth.example.com" || len(o.Resources) != 1 || o.Resources[0] != o.Issuer ||
		o.AccessTokenTTL != DefaultAccessTokenTTL || o.AuthCodeTTL != DefaultAuthCodeTTL ||
		o.RefreshIdleTTL != DefaultRefreshIdleTTL || o.GrantTTL != DefaultGrantTTL ||
		o.RefreshGrace != 0 || o.SessionTTL != DefaultSessionTTL ||
		o.KeyRefreshInterval != DefaultKeyRefreshInterval || o.JanitorInterval != DefaultJanitorInterval ||
		o.StoreTimeout != DefaultStoreTimeout || o.LoginWindow != DefaultLoginWindow ||
		o.RegistrationWindow != DefaultRegistrationWindow || o.LoginFailuresPerAccount != DefaultLoginFailuresPerAccount ||
		o.LoginFailuresPerIP != DefaultLoginFailuresPerIP || o.RegistrationsPerIP != DefaultRegistrationsPerIP ||
		o.RegistrationPolicy != DefaultRegistrationPolicy || o.SigningAlgorithm != DefaultSigningAlgorithm ||
		o.ProxyHeaders != DefaultProxyHeaders || DefaultProxyHeaders != ProxyHeadersXForwarded {
		t.Fatalf("defaults not applied: %+v", o)
	}
	resources := []string{"HTTPS://API.example.com:443/"}
	if _, err := ResolveOptions(Options{Issuer: "https://a.example", Resources: resources}); err != nil {
		t.Fatal(err)
	}
	if resources[0] != "HTTPS://API.example.com:443/" {
		t.Fatalf("ResolveOptions changed the caller's Resources: %q", resources)
	}

	for _, tc := range []struct {
		name   string
		mutate func(*Options)
		option string
	}{
		{"issuer not absolute", func(o *Options) { o.Issuer = "auth.example.com" }, "Issuer"},
		{"resource with fragment", func(o *Options) { o.Resources = []string{"https://api.example.com#x"} }, "Resources"},
		{"bad scope", func(o *Options) { o.Scopes = []string{`a"b`} }, "Scopes"},
		{"unknown algorithm", func(o *Options) { o.SigningAlgorithm = "HS256" }, "SigningAlgorithm"},
		{"negative access-token lifetime", func(o *Options) { o.AccessTokenTTL = -time.Minute }, "AccessTokenTTL"},
		{"negative code lifetime", func(o *Options) { o.AuthCodeTTL = -time.Second }, "AuthCodeTTL"},
		{"code lifetime over 10m", func(o *Options) { o.AuthCodeTTL = 11 * time.Minute }, "AuthCodeTTL"},
		{"negative refresh idle lifetime", func(o *Options) { o.RefreshIdleTTL = -1 }, "RefreshIdleTTL"},
		{"negative grant lifetime", func(o *Options) { o.GrantTTL = -1 }, "GrantTTL"},
		{"negative session lifetime", func(o *Options) { o.SessionTTL = -1 }, "SessionTTL"},
		{"negative janitor interval", func(o *Options) { o.JanitorInterval = -1 }, "JanitorInterval"},
		{"negative key refresh", func(o *Options) { o.KeyRefreshInterval = -1 }, "KeyRefreshInterval"},
		{"negative store timeout", func(o *Options) { o.StoreTimeout = -1 }, "StoreTimeout"},
		{"negative login window", func(o *Options) { o.LoginWindow = -1 }, "LoginWindow"},
		{"negative registration window", func(o *Options) { o.RegistrationWindow = -1 }, "RegistrationWindow"},
		{"negative login limit", func(o *Options) { o.LoginFailuresPerAccount = -1 }, "LoginFailuresPerAccount"},
		{"negative IP limit", func(o *Options) { o.LoginFailuresPerIP = -1 }, "LoginFailuresPerIP"},
		{"negative registration limit", func(o *Options) { o.RegistrationsPerIP = -1 }, "RegistrationsPerIP"},
		{"negative grace", func(o *Options) { o.RefreshGrace = -time.Second }, "RefreshGrace"},
		{"grace shorter than Retry-After", func(o *Options) { o.RefreshGrace = RetryAfter - time.Second }, "RefreshGrace"},
		{"unknown registration policy", func(o *Options) { o.RegistrationPolicy = "sometimes" }, "RegistrationPolicy"},
		// Exactly the two spellings: "both" or a header name would read as
		// a family it is not.
		{"unknown proxy headers", func(o *Options) { o.ProxyHeaders = "x-forwarded-for" }, "ProxyHeaders"},
		{"proxy headers: both", func(o *Options) { o.ProxyHeaders = "both" }, "ProxyHeaders"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := Options{Issuer: "https://auth.example.com"}
			tc.mutate(&o)
			_, err := ResolveOptions(o)
			var oe *OptionError
			if !errors.As(err, &oe) || oe.Option != tc.option {
				t.Fatalf("ResolveOptions = %v, want an OptionError for %s", err, tc.option)
			}
		})
	}
}

func TestNewUser(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	u, err := NewUser("alice", "correct horse", UserProfile{Name: "Alice", Email: "", EmailVerified: true}, now, randReader())
	if err != nil {
		t.Fatal(err)
	}
	if u.ID == "" || u.Username != "alice" || !u.CreatedAt.Equal(now) || !matchPassword(u.PasswordHash, "correct horse") {
		t.Fatalf("NewUser = %+v", u)
	}
	// The profile is copied; email_verified without an email is dropped.
	if u.Name != "Alice" || u.Email != "" || u.EmailVerified {
		t.Fatalf("NewUser profile = %q %q %v", u.Name, u.Email, u.EmailVerified)
	}
	if v, err := NewUser("carol", "correct horse", UserProfile{Email: "carol@example.com", EmailVerified: true}, now, randReader()); err != nil || v.Email != "carol@example.com" || !v.EmailVerified {
		t.Fatalf("NewUser with a verified email = %+v, %v", v, err)
	}
	if _, err := NewUser("", "pw", UserProfile{}, now, randReader()); err == nil {
		t.Fatal("NewUser accepted an empty name")
	}
	if _, err := NewUser("bob", "", UserProfile{}, now, randReader()); err == nil {
		t.Fatal("NewUser accepted an empty password")
	}
}

func randReader() io.Reader { return rand.Reader }

// recordingReader is crypto/rand that keeps every byte it hands out.
type recordingReader struct {
	mu  sync.Mutex
	out []byte
}

func (r *recordingReader) Read(p []byte) (int, error) {
	n, err := rand.Read(p)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.out = append(r.out, p[:n]...)
	return n, err
}

// TestEphemeralKeyFromOptionsRand: with no EncryptionKey the server makes
// one from Options.Rand like every other secret (house rule 5), not from
// crypto/rand behind the caller's back.
func TestEphemeralKeyFromOptionsRand(t *testing.T) {
	t.Parallel()
	r := &recordingReader{}
	s, err := New(context.Background(), Options{Issuer: "https://auth.example.com", Store: memory.New(), Rand: r,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(s.keys.encKey) != 32 || !bytes.Contains(r.out, s.keys.encKey) {
		t.Fatal("the ephemeral encryption key did not come from Options.Rand")
	}
}
