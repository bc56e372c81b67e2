package middleware

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// BenchmarkBareVerify is the floor: go-jose parsing and verifying an ES256
// signature, nothing else.
func BenchmarkBareVerify(b *testing.B) {
	ti := newTestIssuer(b, "")
	v, clk := newValidator(b, ti, nil)
	tok := ti.sign(ti.claims(resource, clk.Now()), nil)
	if _, err := v.Validate(context.Background(), tok); err != nil {
		b.Fatal(err)
	}
	key, err := v.keys.lookup(context.Background(), "k0")
	if err != nil {
		b.Fatal(err)
	}
	algs := []jose.SignatureAlgorithm{jose.ES256}
	b.ReportAllocs()
	for b.Loop() {
		jws, err := jose.ParseSignedCompact(tok, algs)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := jws.Verify(key); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkValidateFresh validates a JWT the cache has not seen: parse,
// key lookup, signature, claims, audience.
func BenchmarkValidateFresh(b *testing.B) {
	ti := newTestIssuer(b, "")
	v, clk := newValidator(b, ti, func(c *Config) { c.CacheSize = -1 })
	tok := ti.sign(ti.claims(resource, clk.Now()), nil)
	ctx := context.Background()
	if _, err := v.Validate(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Validate(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkValidateCached validates a JWT seen before.
func BenchmarkValidateCached(b *testing.B) {
	ti := newTestIssuer(b, "")
	v, clk := newValidator(b, ti, nil)
	tok := ti.sign(ti.claims(resource, clk.Now()), nil)
	ctx := context.Background()
	if _, err := v.Validate(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := v.Validate(ctx, tok); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkRequireCached is the whole middleware around an empty handler,
// without the network.
func BenchmarkRequireCached(b *testing.B) {
	ti := newTestIssuer(b, "")
	v, clk := newValidator(b, ti, nil)
	tok := ti.sign(ti.claims(resource, clk.Now()), nil)
	h := v.Require("read")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	req := httptest.NewRequest("GET", resource, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != 200 {
		b.Fatal(w.Code)
	}
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, req)
	}
}
