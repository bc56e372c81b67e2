package middleware

import (
	"context"
	"errors"
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
