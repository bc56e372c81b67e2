package provider

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/authzd/authz/provider/store/memory"
)

// TestUpstreamCookieUnderPreviousKey: an upstream sign-in started before
// the encryption key changed (its cookie sealed under the previous key)
// finishes on a server that has that key as a previous one, and only
// there; new cookies are sealed under the current key.
func TestUpstreamCookieUnderPreviousKey(t *testing.T) {
	t.Parallel()
	key := func() []byte {
		k := make([]byte, 32)
		if _, err := rand.Read(k); err != nil {
			t.Fatal(err)
		}
		return k
	}
	keyA, keyB := key(), key()
	server := func(enc []byte, prev ...[]byte) *Server {
		s, err := New(context.Background(), Options{Issuer: "https://issuer.example", Store: memory.New(), EncryptionKey: enc, PreviousEncryptionKeys: prev})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a, b, bOnly := server(keyA), server(keyB, keyA), server(keyB)
	f := upstreamFlow{Provider: "corp", State: "st", Nonce: "n", Verifier: "v", ReturnTo: "/authorize", Expires: time.Now().Add(time.Minute).Unix()}
	underA, err := a.sealFlow(f)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := bOnly.openFlow(underA); ok {
		t.Fatal("a server with only B opened a cookie sealed under A")
	}
	if got, ok := b.openFlow(underA); !ok || got != f {
		t.Fatalf("B with A previous: %+v %v, want %+v", got, ok, f)
	}
	underB, err := b.sealFlow(f)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := a.openFlow(underB); ok {
		t.Fatal("B sealed a new cookie under A, not under its current key")
	}
	if got, ok := bOnly.openFlow(underB); !ok || got != f {
		t.Fatalf("B's own cookie: %+v %v", got, ok)
	}
}

// TestGraceReplayStopIsNoStoreError: a grace replay while previous keys
// are configured stops its first rotation attempt (errSuccessorKeyUnknown)
// to find the successor's key; that stop is the callback's, not the
// database's, and must not count in authz_store_errors_total, which
// operators alert on.
func TestGraceReplayStopIsNoStoreError(t *testing.T) {
	if kind := storeFailure(fmt.Errorf("postgres: rotate: %w", errSuccessorKeyUnknown)); kind != "" {
		t.Fatalf("storeFailure(errSuccessorKeyUnknown) = %q, want \"\" (not a store failure)", kind)
	}
	if kind := storeFailure(errors.New("connection reset")); kind != "other" {
		t.Fatalf("storeFailure(a real failure) = %q, want other", kind)
	}
}
