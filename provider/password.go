package provider

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/authzd/authz/provider/store"
)

// argon2id parameters: OWASP's recommended minimum for argon2id (m = 19 MiB,
// t = 2, p = 1), which RFC 9106 §4 allows for memory-constrained servers.
// Hashes made with other parameters (earlier releases used m = 32 MiB,
// p = 2) still verify: checkPassword reads them from the hash.
const (
	argonTime    = 2
	argonMemory  = 19 * 1024 // KiB
	argonThreads = 1
	argonKeyLen  = 32
	argonSaltLen = 16
)

// argonSlots bounds how many argon2id computations run at once in this
// process. Each holds its memory cost in RAM, and anyone can send sign-in
// attempts: without a bound, N concurrent attempts cost N × 19 MiB, and a
// burst of them exhausts the server's memory. Half the cores (at least one)
// keeps sign-in fast while the rest of the server keeps serving tokens.
var argonSlots = make(chan struct{}, max(1, runtime.GOMAXPROCS(0)/2))

// argonWait is how long a sign-in waits for a slot before it is answered
// 503 temporarily_unavailable (with Retry-After) instead of queueing forever.
const argonWait = 5 * time.Second

// errHashBusy is the outage-class error of a sign-in that found every
// hashing slot taken for argonWait.
var errHashBusy = fmt.Errorf("%w: every password-hashing slot is busy", store.ErrUnavailable)

// withArgonSlot runs f while holding one of argonSlots.
func withArgonSlot(ctx context.Context, f func()) error {
	ctx, cancel := context.WithTimeout(ctx, argonWait)
	defer cancel()
	select {
	case argonSlots <- struct{}{}:
	case <-ctx.Done():
		return errHashBusy
	}
	defer func() { <-argonSlots }()
	f()
	// Give the hash's memory back to the OS before the slot frees, so the
	// process's resident size stays near its working set plus one hash per
	// slot instead of keeping each hash's garbage until the GC and the
	// scavenger get to it. It costs one collection per password check,
	// which is small beside the hash itself.
	debug.FreeOSMemory()
	return nil
}

// HashPassword returns an encoded argon2id hash of a human password.
func HashPassword(password string, r io.Reader) (string, error) {
	if password == "" {
		return "", errors.New("password must not be empty")
	}
	salt := make([]byte, argonSaltLen)
	if _, err := io.ReadFull(r, salt); err != nil {
		return "", err
	}
	return encodeArgon2id(salt, argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)), nil
}

// encodeArgon2id is the PHC string of an argon2id hash made with the
// parameters above.
func encodeArgon2id(salt, key []byte) string {
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, argonMemory, argonTime, argonThreads, b64.EncodeToString(salt), b64.EncodeToString(key))
}

// checkPassword reports whether password matches the encoded hash, in
// constant time with respect to the hash, computing it in one of
// argonSlots; errHashBusy when no slot frees up in time.
func checkPassword(ctx context.Context, encoded, password string) (ok bool, err error) {
	err = withArgonSlot(ctx, func() { ok = matchPassword(encoded, password) })
	return ok, err
}

// matchPassword is checkPassword's computation.
func matchPassword(encoded, password string) bool {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var version int
	var mem, t uint32
	var threads uint8
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &mem, &t, &threads); err != nil {
		return false
	}
	b64 := base64.RawStdEncoding
	salt, err1 := b64.DecodeString(parts[4])
	want, err2 := b64.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false
	}
	got := argon2.IDKey([]byte(password), salt, t, mem, threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

// dummyHash is checked against when the user does not exist, so a failed
// login takes as long for an unknown account as for a wrong password. It
// is built from the same parameters as HashPassword, so changing them
// changes both; no password matches it (the key is not argon2's output).
var dummyHash = encodeArgon2id(make([]byte, argonSaltLen), make([]byte, argonKeyLen))
