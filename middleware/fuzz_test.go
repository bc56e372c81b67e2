package middleware

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzValidate: whatever arrives as a bearer token, validation answers
// with a token or one of its two errors, never a panic, and never accepts
// something the test issuer did not sign.
func FuzzValidate(f *testing.F) {
	ti := newTestIssuer(f, "")
	v, clk := newValidator(f, ti, nil)
	good := ti.sign(ti.claims(resource, clk.Now()), nil)
	f.Add(good)
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add(strings.Repeat("A", 5000))
	f.Add(good[:len(good)-3] + "xyz")
	f.Fuzz(func(t *testing.T, raw string) {
		tok, err := v.Validate(context.Background(), raw)
		switch {
		case err == nil:
			// Only the issuer's token (or a re-encoding of its very
			// signature, which ECDSA allows) is accepted.
			if tok == nil || tok.ID != "jti-1" || tok.Subject != "user-1" {
				t.Fatalf("accepted %q as %+v", raw, tok)
			}
		case !errors.Is(err, ErrInvalidToken) && !errors.Is(err, ErrUnavailable):
			t.Fatalf("error %v is neither invalid nor unavailable", err)
		case len(raw) > 32 && strings.Contains(err.Error(), raw):
			t.Fatalf("error %q echoes the token", err)
		}
		r := httptest.NewRequest("GET", resource, nil)
		r.Header.Set("Authorization", "Bearer "+raw)
		rec, _ := serve(v, r)
		if rec.Code >= 500 && rec.Code != 503 {
			t.Fatalf("status %d", rec.Code)
		}
	})
}
