package middleware

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// TestCachedTokenDiesWithItsKey: the verified-token cache answers a
// repeated JWT without checking its signature again, so it must forget a
// token once the key that signed it leaves the issuer's JWKS. Withdrawing
// a key is how an issuer revokes everything a leaked key signed; a cache
// that outlived the withdrawal would keep those tokens working until they
// expire.
func TestCachedTokenDiesWithItsKey(t *testing.T) {
	t.Parallel()
	ti := newTestIssuer(t, "")
	v, clk := newValidator(t, ti, func(c *Config) {
		c.RefreshInterval = time.Minute
		c.MinRefreshInterval = time.Second
	})
	ctx := context.Background()
	old := ti.sign(ti.claims(resource, clk.Now()), nil)
	if _, err := v.Validate(ctx, old); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Validate(ctx, old); err != nil {
		t.Fatalf("the same token again (from the cache): %v", err)
	}

	ti.rotate()
	ti.withdraw("k0")
	clk.Advance(2 * time.Second) // past MinRefreshInterval, well before the token's exp
	// A token signed with the new key makes the validator fetch the key
	// set, which no longer has k0.
	c := ti.claims(resource, clk.Now())
	c["jti"] = "signed-with-k1"
	if _, err := v.Validate(ctx, ti.sign(c, nil)); err != nil {
		t.Fatalf("token signed with the new key: %v", err)
	}
	if _, err := v.Validate(ctx, old); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("cached token whose key was withdrawn: err = %v, want ErrInvalidToken", err)
	}
}

// TestMetadataURLs pins where the middleware looks for the authorization
// server's metadata: RFC 8414 §3.1's path-inserted form first, then the
// appended forms, the suffixes being the ones the server routes.
func TestMetadataURLs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		issuer string
		want   []string
	}{
		{"https://auth.example.com", []string{
			"https://auth.example.com/.well-known/oauth-authorization-server",
			"https://auth.example.com/.well-known/openid-configuration"}},
		{"https://auth.example.com/", []string{
			"https://auth.example.com/.well-known/oauth-authorization-server",
			"https://auth.example.com/.well-known/openid-configuration"}},
		{"https://auth.example.com:8443/tenant/a/", []string{
			"https://auth.example.com:8443/.well-known/oauth-authorization-server/tenant/a",
			"https://auth.example.com:8443/tenant/a/.well-known/oauth-authorization-server",
			"https://auth.example.com:8443/tenant/a/.well-known/openid-configuration"}},
	} {
		t.Run(tc.issuer, func(t *testing.T) {
			t.Parallel()
			if got := metadataURLs(tc.issuer); !slices.Equal(got, tc.want) {
				t.Errorf("metadataURLs(%q) = %q, want %q", tc.issuer, got, tc.want)
			}
		})
	}
}
