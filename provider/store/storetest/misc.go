package storetest

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/authzd/authz/provider/store"
)

// RFC 7009 revocation of JWT access tokens: the server remembers the jti
// until the token would have expired anyway.
func testAccessTokenRevocation(t *testing.T, newStore factory) {
	e := newEnv(t, newStore)
	exp, laterExp := at(time.Hour), at(2*time.Hour)

	revoked, err := e.accessTokenRevoked("jti-1", base)
	e.must(err, "AccessTokenRevoked before revocation")
	if revoked {
		t.Fatalf("jti-1 revoked before RevokeAccessToken")
	}
	e.must(e.s.RevokeAccessToken(e.ctx, "jti-1", exp), "RevokeAccessToken")
	e.must(e.s.RevokeAccessToken(e.ctx, "jti-1", exp), "RevokeAccessToken again (idempotent)")
	e.must(e.s.RevokeAccessToken(e.ctx, "jti-2", laterExp), "RevokeAccessToken jti-2")

	for _, tt := range []struct {
		name string
		jti  string
		now  time.Time
		want bool
	}{
		{"revoked, now", "jti-1", base, true},
		{"revoked, one microsecond before expiry", "jti-1", exp.Add(-time.Microsecond), true},
		{"never revoked", "jti-3", base, false},
	} {
		got, err := e.accessTokenRevoked(tt.jti, tt.now)
		e.must(err, "AccessTokenRevoked "+tt.name)
		if got != tt.want {
			t.Errorf("AccessTokenRevoked %s = %v, want %v", tt.name, got, tt.want)
		}
	}

	n, err := e.s.DeleteExpired(e.ctx, exp)
	e.must(err, "DeleteExpired")
	if n < 1 {
		t.Errorf("DeleteExpired at the jti's expiry removed %d records, want at least 1", n)
	}
	// Asked with an earlier clock, a vanished entry answers false: it is gone,
	// not merely past its expiry.
	got, err := e.accessTokenRevoked("jti-1", exp.Add(-time.Microsecond))
	e.must(err, "AccessTokenRevoked after DeleteExpired")
	if got {
		t.Errorf("jti-1 still recorded after DeleteExpired at its expiry")
	}
	got, err = e.accessTokenRevoked("jti-2", exp)
	e.must(err, "AccessTokenRevoked jti-2")
	if !got {
		t.Errorf("jti-2 (expires %v) lost by DeleteExpired at %v", laterExp, exp)
	}
}

func testConsents(t *testing.T, newStore factory) {
	e := newEnv(t, newStore)
	c1, c2, u := e.client("c1").ID, e.client("c2").ID, e.user("u1").ID

	_, err := e.s.GetConsent(e.ctx, u, c1)
	wantErr(t, "GetConsent before any", err, store.ErrNotFound)

	first := e.consent(u, c1)
	got, err := e.s.GetConsent(e.ctx, u, c1)
	e.must(err, "GetConsent")
	equal(t, "consent", got, first, canonConsent)

	// AddConsent adds: the union, in first-seen order, never fewer scopes.
	e.must(e.s.AddConsent(e.ctx, store.Consent{UserID: u, ClientID: c1, Scopes: []string{"profile", "read", "profile"},
		Resources: []string{"https://files.example.com/"}, UpdatedAt: at(time.Hour)}), "AddConsent again")
	got, err = e.s.GetConsent(e.ctx, u, c1)
	e.must(err, "GetConsent after adding")
	want := store.Consent{UserID: u, ClientID: c1, Scopes: []string{"openid", "read", "profile"},
		Resources: []string{"https://api.example.com/", "https://files.example.com/"}, UpdatedAt: at(time.Hour)}
	equal(t, "merged consent", got, want, canonConsent)

	_, err = e.s.GetConsent(e.ctx, u, c2)
	wantErr(t, "GetConsent for another client", err, store.ErrNotFound)
	e.consent(u, c2)

	err = e.s.AddConsent(e.ctx, store.Consent{UserID: u, ClientID: "no-such-client", Scopes: []string{"read"}, UpdatedAt: base})
	wantErr(t, "AddConsent for an unknown client", err, store.ErrNotFound)

	// DeleteConsent forgets one client's consent, idempotently.
	e.must(e.s.DeleteConsent(e.ctx, u, c1), "DeleteConsent")
	e.must(e.s.DeleteConsent(e.ctx, u, c1), "DeleteConsent again")
	_, err = e.s.GetConsent(e.ctx, u, c1)
	wantErr(t, "GetConsent after DeleteConsent", err, store.ErrNotFound)
	_, err = e.s.GetConsent(e.ctx, u, c2)
	e.must(err, "GetConsent of the other client after DeleteConsent")

	// Concurrent consents for different scopes all count: remembering is
	// one atomic step, not a read followed by a write (issue 16).
	c3 := e.client("c3").ID
	errs := race(func(i int) error {
		return e.s.AddConsent(e.ctx, store.Consent{UserID: u, ClientID: c3,
			Scopes: []string{fmt.Sprintf("s%02d", i)}, Resources: []string{fmt.Sprintf("https://r%02d.example.com/", i)}, UpdatedAt: base})
	})
	for i, err := range errs {
		e.must(err, fmt.Sprintf("concurrent AddConsent %d", i))
	}
	got, err = e.s.GetConsent(e.ctx, u, c3)
	e.must(err, "GetConsent after concurrent adds")
	if len(got.Scopes) != racers || len(got.Resources) != racers {
		t.Fatalf("after %d concurrent AddConsent: %d scopes, %d resources; consents were lost", racers, len(got.Scopes), len(got.Resources))
	}
}

// Counters are the rate limits every replica shares: fixed windows that a
// hit after expiry restarts, and that concurrent hits never undercount.
func testCounters(t *testing.T, newStore factory) {
	e := newEnv(t, newStore)
	window := 10 * time.Minute

	_, err := e.s.GetCounter(e.ctx, "login:ip:192.0.2.1", base)
	wantErr(t, "GetCounter before any hit", err, store.ErrNotFound)

	for i := 1; i <= 3; i++ {
		c, err := e.s.HitCounter(e.ctx, "login:ip:192.0.2.1", window, at(time.Duration(i)*time.Minute))
		e.must(err, "HitCounter")
		mustCounter(t, fmt.Sprintf("hit %d", i), c, i, at(time.Minute+window))
	}
	c, err := e.s.GetCounter(e.ctx, "login:ip:192.0.2.1", at(time.Minute+window-time.Microsecond))
	e.must(err, "GetCounter within the window")
	mustCounter(t, "GetCounter", c, 3, at(time.Minute+window))
	// At ExpiresAt the window is over.
	_, err = e.s.GetCounter(e.ctx, "login:ip:192.0.2.1", at(time.Minute+window))
	wantErr(t, "GetCounter at the window's end", err, store.ErrNotFound)
	c, err = e.s.HitCounter(e.ctx, "login:ip:192.0.2.1", window, at(time.Minute+window))
	e.must(err, "HitCounter after the window")
	mustCounter(t, "first hit of a new window", c, 1, at(time.Minute+2*window))

	// UnhitCounter takes back one hit of a live counter, never below zero,
	// and leaves a missing or expired counter alone.
	e.must(e.s.UnhitCounter(e.ctx, "login:ip:192.0.2.1", at(time.Minute+window)), "UnhitCounter")
	c, err = e.s.GetCounter(e.ctx, "login:ip:192.0.2.1", at(time.Minute+window))
	e.must(err, "GetCounter after UnhitCounter")
	mustCounter(t, "after one unhit", c, 0, at(time.Minute+2*window))
	e.must(e.s.UnhitCounter(e.ctx, "login:ip:192.0.2.1", at(time.Minute+window)), "UnhitCounter at zero")
	c, err = e.s.HitCounter(e.ctx, "login:ip:192.0.2.1", window, at(time.Minute+window))
	e.must(err, "HitCounter after unhits")
	mustCounter(t, "a hit after unhitting past zero", c, 1, at(time.Minute+2*window))
	e.must(e.s.UnhitCounter(e.ctx, "login:ip:192.0.2.1", at(time.Minute+2*window)), "UnhitCounter of an expired counter")
	c, err = e.s.HitCounter(e.ctx, "login:ip:192.0.2.1", window, at(time.Minute+2*window))
	e.must(err, "HitCounter after the window")
	mustCounter(t, "an expired counter is not unhit", c, 1, at(time.Minute+3*window))
	e.must(e.s.UnhitCounter(e.ctx, "login:ip:never-hit", base), "UnhitCounter of a missing counter")
	_, err = e.s.GetCounter(e.ctx, "login:ip:never-hit", base)
	wantErr(t, "GetCounter after unhitting a missing counter", err, store.ErrNotFound)
	// Concurrent hits each taken back leave nothing counted.
	for _, err := range race(func(i int) error {
		if _, err := e.s.HitCounter(e.ctx, "login:ip:203.0.113.9", window, base); err != nil {
			return err
		}
		return e.s.UnhitCounter(e.ctx, "login:ip:203.0.113.9", base)
	}) {
		e.must(err, "concurrent HitCounter and UnhitCounter")
	}
	c, err = e.s.GetCounter(e.ctx, "login:ip:203.0.113.9", base)
	e.must(err, "GetCounter after concurrent hits and unhits")
	mustEqual(t, "count after concurrent hits and unhits", c.Count, 0)

	// Prefix deletion (authz user unlock): only the matching keys go.
	for _, k := range []string{"login:a:alice:192.0.2.1", "login:a:alice:192.0.2.2", "login:a:alice2:192.0.2.1", "login:a:al%ce:x"} {
		_, err := e.s.HitCounter(e.ctx, k, window, base)
		e.must(err, "HitCounter "+k)
	}
	n, err := e.s.DeleteCounters(e.ctx, "login:a:alice:")
	e.must(err, "DeleteCounters")
	mustEqual(t, "counters deleted", n, int64(2))
	for k, want := range map[string]error{"login:a:alice:192.0.2.1": store.ErrNotFound, "login:a:alice2:192.0.2.1": nil, "login:a:al%ce:x": nil} {
		_, err := e.s.GetCounter(e.ctx, k, base)
		wantErr(t, "GetCounter "+k+" after DeleteCounters", err, want)
	}
	n, err = e.s.DeleteCounters(e.ctx, "login:a:al_ce")
	e.must(err, "DeleteCounters with a LIKE wildcard")
	mustEqual(t, "counters deleted by a prefix with _", n, int64(0))

	// Concurrent hits: every one is counted, each sees a distinct count.
	seen := make([]int, racers)
	for _, err := range race(func(i int) error {
		c, err := e.s.HitCounter(e.ctx, "register:ip:198.51.100.7", time.Hour, base)
		seen[i] = c.Count
		return err
	}) {
		e.must(err, "concurrent HitCounter")
	}
	slices.Sort(seen)
	for i, v := range seen {
		if v != i+1 {
			t.Fatalf("concurrent hits saw counts %v, want 1..%d each once", seen, racers)
		}
	}

	// DeleteExpired removes counters whose window is over.
	before, err := e.s.DeleteExpired(e.ctx, at(time.Hour+time.Microsecond))
	e.must(err, "DeleteExpired")
	if before < 1 {
		t.Errorf("DeleteExpired removed %d records, want the expired counters", before)
	}
	c, err = e.s.HitCounter(e.ctx, "register:ip:198.51.100.7", time.Hour, base)
	e.must(err, "HitCounter after DeleteExpired")
	mustEqual(t, "count after the expired counter was deleted", c.Count, 1)
}

func mustCounter(t *testing.T, what string, c store.Counter, count int, expires time.Time) {
	t.Helper()
	if c.Count != count || !c.ExpiresAt.Equal(expires) {
		t.Fatalf("%s: count %d expires %v, want %d and %v", what, c.Count, c.ExpiresAt, count, expires)
	}
}

func mustEqual[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Fatalf("%s = %v, want %v", what, got, want)
	}
}

func testSigningKeys(t *testing.T, newStore factory) {
	e := newEnv(t, newStore)
	key := func(id string, created time.Time) store.SigningKey {
		return store.SigningKey{
			ID: id, Algorithm: "ES256",
			PublicJWK:           []byte(`{"kty":"EC","crv":"P-256","kid":"` + id + `","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}`),
			EncryptedPrivateKey: append([]byte{0, 1, 2, 0xff}, randomHash()...),
			CreatedAt:           created,
		}
	}
	list := func(what string, want ...store.SigningKey) {
		t.Helper()
		got, err := e.s.ListSigningKeys(e.ctx)
		e.must(err, "ListSigningKeys")
		equal(t, what, got, want, canonKeys)
	}
	list("no keys")

	k1 := key("k1", base)
	e.must(e.s.RotateSigningKey(e.ctx, k1), "RotateSigningKey k1")
	list("one current key", k1)

	k2 := key("k2", at(time.Hour))
	e.must(e.s.RotateSigningKey(e.ctx, k2), "RotateSigningKey k2")
	k1.RetiredAt = k2.CreatedAt
	list("k2 current, k1 retired at k2's creation", k2, k1)

	k3 := key("k3", at(2*time.Hour))
	e.must(e.s.RotateSigningKey(e.ctx, k3), "RotateSigningKey k3")
	k2.RetiredAt = k3.CreatedAt // k1 keeps its first retirement
	list("k3 current", k3, k2, k1)

	// Strictly before: k2, retired exactly at the cut-off, stays published.
	e.must(e.s.DeleteSigningKeysRetiredBefore(e.ctx, k2.RetiredAt), "DeleteSigningKeysRetiredBefore")
	list("k1 deleted", k3, k2)

	// The current key is never retired, so it is never deleted.
	e.must(e.s.DeleteSigningKeysRetiredBefore(e.ctx, at(1000*time.Hour)), "DeleteSigningKeysRetiredBefore far future")
	list("only the current key left", k3)

	// A key published ahead of its activation: the current key signs until
	// then, so it is retired at the new key's ActivatesAt, not at its creation.
	k4 := key("k4", at(3*time.Hour))
	k4.ActivatesAt = at(3*time.Hour + time.Minute)
	e.must(e.s.RotateSigningKey(e.ctx, k4), "RotateSigningKey k4 (pending)")
	k3.RetiredAt = k4.ActivatesAt
	list("k4 pending, k3 retiring at k4's activation", k4, k3)

	// A second rotation before k4 activates retires k4 too, at the newer
	// activation, and leaves k3's earlier retirement alone.
	k5 := key("k5", at(3*time.Hour+time.Second))
	k5.ActivatesAt = at(3*time.Hour + 2*time.Minute)
	e.must(e.s.RotateSigningKey(e.ctx, k5), "RotateSigningKey k5 (pending)")
	k4.RetiredAt = k5.ActivatesAt
	list("k5 pending after k4", k5, k4, k3)

	// The first key is created only on an empty store.
	if err := e.s.CreateFirstSigningKey(e.ctx, key("k6", at(4*time.Hour))); !errors.Is(err, store.ErrAlreadyExists) {
		t.Fatalf("CreateFirstSigningKey with keys present: %v, want ErrAlreadyExists", err)
	}
	list("nothing added", k5, k4, k3)
}

// testFirstSigningKey: replicas starting at once on an empty database each
// try to create the first key; exactly one succeeds and one key exists.
func testFirstSigningKey(t *testing.T, newStore factory) {
	e := newEnv(t, newStore)
	raceFirstKey(t, e, "", "ES256")
	keys, err := e.s.ListSigningKeys(e.ctx)
	e.must(err, "ListSigningKeys")
	if len(keys) != 1 || !keys[0].RetiredAt.IsZero() {
		t.Fatalf("keys after the race: %+v, want exactly one unretired key", keys)
	}
}

// testResealSigningKey: re-sealing a key is a compare-and-swap on its old
// ciphertext. It changes only that key's ciphertext; a stale old, a missing
// key, or the loser of a race changes nothing; racers re-sealing one key at
// once leave exactly one winner's ciphertext.
func testResealSigningKey(t *testing.T, newStore factory) {
	e := newEnv(t, newStore)
	key := func(id string, created time.Time) store.SigningKey {
		return store.SigningKey{
			ID: id, Algorithm: "ES256", PublicJWK: []byte(`{"kty":"EC","kid":"` + id + `"}`),
			EncryptedPrivateKey: randomHash(), CreatedAt: created,
		}
	}
	k1, k2 := key("k1", base), key("k2", at(time.Hour))
	e.must(e.s.RotateSigningKey(e.ctx, k1), "RotateSigningKey k1")
	e.must(e.s.RotateSigningKey(e.ctx, k2), "RotateSigningKey k2")
	k1.RetiredAt = k2.CreatedAt
	list := func(what string, want ...store.SigningKey) {
		t.Helper()
		got, err := e.s.ListSigningKeys(e.ctx)
		e.must(err, "ListSigningKeys")
		equal(t, what, got, want, canonKeys)
	}
	sealed := randomHash()
	ok, err := e.s.ResealSigningKey(e.ctx, "k1", k1.EncryptedPrivateKey, sealed)
	e.must(err, "ResealSigningKey k1")
	if !ok {
		t.Fatal("ResealSigningKey with the current ciphertext did not replace it")
	}
	k1.EncryptedPrivateKey = sealed
	list("k1 re-sealed, k2 and every other field untouched", k2, k1)

	for _, c := range []struct {
		what, id string
		old      []byte
	}{{"a stale ciphertext", "k2", randomHash()}, {"an unknown key", "k9", k2.EncryptedPrivateKey}} {
		ok, err := e.s.ResealSigningKey(e.ctx, c.id, c.old, randomHash())
		e.must(err, "ResealSigningKey with "+c.what)
		if ok {
			t.Fatalf("ResealSigningKey with %s reported a change", c.what)
		}
		list("nothing changed by "+c.what, k2, k1)
	}

	// Racing runs each propose their own ciphertext for k2: one wins.
	proposals := make([][]byte, racers)
	for i := range proposals {
		proposals[i] = randomHash()
	}
	won := make([]bool, racers)
	errs := race(func(i int) error {
		var err error
		won[i], err = e.s.ResealSigningKey(e.ctx, "k2", k2.EncryptedPrivateKey, proposals[i])
		return err
	})
	if n, other := count(errs); n["ok"] != racers {
		t.Fatalf("racing ResealSigningKey: %v (%v)", n, other)
	}
	winner := -1
	for i, w := range won {
		if w {
			if winner >= 0 {
				t.Fatalf("racers %d and %d both replaced k2's ciphertext", winner, i)
			}
			winner = i
		}
	}
	if winner < 0 {
		t.Fatal("no racer replaced k2's ciphertext")
	}
	k2.EncryptedPrivateKey = proposals[winner]
	list("k2 holds the winner's ciphertext", k2, k1)
}

// raceFirstKey has racers goroutines create the first key of purpose at
// once: exactly one may succeed, every other gets ErrAlreadyExists.
func raceFirstKey(t *testing.T, e *env, purpose, alg string) {
	t.Helper()
	errs := race(func(i int) error {
		id := fmt.Sprintf("first-%d", i)
		return e.s.CreateFirstSigningKey(e.ctx, store.SigningKey{
			ID: id, Algorithm: alg, Purpose: purpose, PublicJWK: []byte(`{"kty":"EC","kid":"` + id + `"}`),
			EncryptedPrivateKey: randomHash(), CreatedAt: base,
		})
	})
	n, other := count(errs, store.ErrAlreadyExists)
	if n["ok"] != 1 || n[store.ErrAlreadyExists.Error()] != racers-1 {
		t.Fatalf("outcomes %v (first unexpected error: %v), want 1 ok and %d ErrAlreadyExists", n, other, racers-1)
	}
}

// testSigningKeyPurposes: access-token keys and each algorithm's ID-token
// keys rotate, retire and are created first independently of each other
// (a rotation retires only keys of its purpose), under one publication
// rule; listing returns them all, and old retired keys of any purpose are
// deleted alike.
func testSigningKeyPurposes(t *testing.T, newStore factory) {
	e := newEnv(t, newStore)
	key := func(id, purpose, alg string, created, activates time.Time) store.SigningKey {
		return store.SigningKey{
			ID: id, Algorithm: alg, Purpose: purpose,
			PublicJWK:           []byte(`{"kty":"EC","kid":"` + id + `"}`),
			EncryptedPrivateKey: append([]byte{9, 0xff}, randomHash()...),
			CreatedAt:           created, ActivatesAt: activates,
		}
	}
	list := func(what string, want ...store.SigningKey) {
		t.Helper()
		got, err := e.s.ListSigningKeys(e.ctx)
		e.must(err, "ListSigningKeys")
		equal(t, what, got, want, canonKeys)
	}
	rs, es := store.IDTokenPurpose("RS256"), store.IDTokenPurpose("ES256")

	// An access-token key stored without a purpose is an access-token key.
	a1 := key("a1", "", "ES256", base, base)
	e.must(e.s.CreateFirstSigningKey(e.ctx, a1), "CreateFirstSigningKey a1")
	got, err := e.s.ListSigningKeys(e.ctx)
	e.must(err, "ListSigningKeys")
	if len(got) != 1 || got[0].Purpose != store.PurposeAccessToken {
		t.Fatalf("a key stored without a purpose lists as %+v, want purpose %q", got, store.PurposeAccessToken)
	}

	// The first ID-token key of an algorithm, with access keys present.
	r1 := key("r1", rs, "RS256", at(time.Minute), at(time.Minute))
	e.must(e.s.CreateFirstSigningKey(e.ctx, r1), "CreateFirstSigningKey r1 (first RS256 ID-token key)")
	if err := e.s.CreateFirstSigningKey(e.ctx, key("r-other", rs, "RS256", at(time.Minute), at(time.Minute))); !errors.Is(err, store.ErrAlreadyExists) {
		t.Fatalf("a second first RS256 ID-token key: %v, want ErrAlreadyExists", err)
	}
	s1 := key("s1", es, "ES256", at(2*time.Minute), at(2*time.Minute))
	e.must(e.s.CreateFirstSigningKey(e.ctx, s1), "CreateFirstSigningKey s1 (first ES256 ID-token key)")
	list("one key per purpose", s1, r1, a1)

	// Rotating the RS256 ID-token key retires r1 at r2's activation and
	// leaves the access-token key and the ES256 key alone.
	r2 := key("r2", rs, "RS256", at(time.Hour), at(time.Hour+time.Minute))
	e.must(e.s.RotateSigningKey(e.ctx, r2), "RotateSigningKey r2")
	r1.RetiredAt = r2.ActivatesAt
	list("r2 pending, r1 retiring", r2, s1, r1, a1)

	// Rotating the access-token key retires a1 only.
	a2 := key("a2", store.PurposeAccessToken, "EdDSA", at(2*time.Hour), at(2*time.Hour+time.Minute))
	e.must(e.s.RotateSigningKey(e.ctx, a2), "RotateSigningKey a2")
	a1.RetiredAt = a2.ActivatesAt
	list("a2 pending, a1 retiring", a2, r2, s1, r1, a1)

	// Retired keys of every purpose go by the same cut-off; current ones stay.
	e.must(e.s.DeleteSigningKeysRetiredBefore(e.ctx, at(1000*time.Hour)), "DeleteSigningKeysRetiredBefore")
	list("only the current keys", a2, r2, s1)
}

// testFirstIDTokenKey: replicas signing their first ID token of an
// algorithm at once each try to create its key; exactly one succeeds, and
// the access-token key already there does not count.
func testFirstIDTokenKey(t *testing.T, newStore factory) {
	e := newEnv(t, newStore)
	e.must(e.s.CreateFirstSigningKey(e.ctx, store.SigningKey{
		ID: "access", Algorithm: "ES256", PublicJWK: []byte(`{"kty":"EC","kid":"access"}`), EncryptedPrivateKey: randomHash(), CreatedAt: base,
	}), "CreateFirstSigningKey access")
	raceFirstKey(t, e, store.IDTokenPurpose("EdDSA"), "EdDSA")
	keys, err := e.s.ListSigningKeys(e.ctx)
	e.must(err, "ListSigningKeys")
	if len(keys) != 2 || !keys[0].RetiredAt.IsZero() || !keys[1].RetiredAt.IsZero() {
		t.Fatalf("keys after the race: %+v, want the access-token key and one ID-token key, neither retired", keys)
	}
}

func testSessions(t *testing.T, newStore factory) {
	tests := []struct {
		name string
		now  time.Time
		want error
	}{
		{"at creation", base, nil},
		{"one microsecond before ExpiresAt", at(time.Hour - time.Microsecond), nil},
		{"at ExpiresAt", at(time.Hour), store.ErrExpired},
		{"after ExpiresAt", at(48 * time.Hour), store.ErrExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, newStore)
			u := e.user("u1")
			s := e.session(u.ID, at(time.Hour))
			got, gotUser, err := e.s.GetSessionUser(e.ctx, s.Hash, tt.now)
			wantErr(t, "GetSessionUser", err, tt.want)
			if tt.want == nil {
				equal(t, "session", got, s, canonSession)
				equal(t, "user", gotUser, u, canonUser)
			}
		})
	}
	// The session comes with its own user, every field of it, whatever
	// other users and sessions exist (issue 13: one read for both).
	t.Run("each session with its own user", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		full := sampleUser("u-full", "full")
		full.Name, full.Email, full.EmailVerified, full.Provider = "Full Name", "full@example.com", true, "upstream"
		e.must(e.s.CreateUser(e.ctx, full), "CreateUser")
		plain := e.user("u-plain")
		sFull, sPlain := e.session(full.ID, at(time.Hour)), e.session(plain.ID, at(2*time.Hour))
		for _, w := range []struct {
			s store.Session
			u store.User
		}{{sFull, full}, {sPlain, plain}} {
			got, gotUser, err := e.s.GetSessionUser(e.ctx, w.s.Hash, base)
			e.must(err, "GetSessionUser of "+w.u.ID)
			equal(t, "session of "+w.u.ID, got, w.s, canonSession)
			equal(t, "user of "+w.u.ID+"'s session", gotUser, w.u, canonUser)
		}
	})
	t.Run("unknown session", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		e.session(e.user("u1").ID, at(time.Hour))
		_, _, err := e.s.GetSessionUser(e.ctx, randomHash(), base)
		wantErr(t, "GetSessionUser of an unknown hash", err, store.ErrNotFound)
	})
	t.Run("session of a deleted user", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		gone, kept := e.user("gone"), e.user("kept")
		s, other := e.session(gone.ID, at(time.Hour)), e.session(kept.ID, at(time.Hour))
		e.must(e.s.DeleteUser(e.ctx, gone.ID), "DeleteUser")
		_, _, err := e.s.GetSessionUser(e.ctx, s.Hash, base)
		wantErr(t, "GetSessionUser of a deleted user's session", err, store.ErrNotFound)
		_, gotUser, err := e.s.GetSessionUser(e.ctx, other.Hash, base)
		e.must(err, "GetSessionUser of the other user's session")
		equal(t, "other user", gotUser, kept, canonUser)
	})
	t.Run("Delete", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		u := e.user("u1").ID
		s, keep := e.session(u, at(time.Hour)), e.session(u, at(time.Hour))
		e.must(e.s.DeleteSession(e.ctx, s.Hash), "DeleteSession")
		_, _, err := e.s.GetSessionUser(e.ctx, s.Hash, base)
		wantErr(t, "GetSessionUser after delete", err, store.ErrNotFound)
		e.must(e.s.DeleteSession(e.ctx, s.Hash), "DeleteSession again (idempotent)")
		e.must(e.s.DeleteSession(e.ctx, randomHash()), "DeleteSession unknown (idempotent)")
		_, _, err = e.s.GetSessionUser(e.ctx, keep.Hash, base)
		e.must(err, "GetSessionUser of the other session")
	})
}

func testInitialAccessTokens(t *testing.T, newStore factory) {
	tests := []struct {
		name    string
		expires time.Time
		now     time.Time
		want    error
	}{
		{"zero ExpiresAt never expires", time.Time{}, at(100 * 365 * 24 * time.Hour), nil},
		{"one microsecond before ExpiresAt", at(time.Hour), at(time.Hour - time.Microsecond), nil},
		{"at ExpiresAt", at(time.Hour), at(time.Hour), store.ErrExpired},
		{"after ExpiresAt", at(time.Hour), at(2 * time.Hour), store.ErrExpired},
	}
	t.Run("no policy reads back empty", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, newStore)
		tok := store.InitialAccessToken{Hash: randomHash(), CreatedAt: base}
		e.must(e.s.CreateInitialAccessToken(e.ctx, tok), "CreateInitialAccessToken")
		got, err := e.s.GetInitialAccessToken(e.ctx, tok.Hash, base)
		e.must(err, "GetInitialAccessToken")
		equal(t, "initial access token", got, tok, canonIAT)
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, newStore)
			tok := store.InitialAccessToken{Hash: randomHash(), CreatedAt: base, ExpiresAt: tt.expires,
				AllowGrants: []string{"client_credentials"}, Scopes: []string{"read", "admin"}, Resources: []string{"https://api.example.com/"}}
			e.must(e.s.CreateInitialAccessToken(e.ctx, tok), "CreateInitialAccessToken")
			got, err := e.s.GetInitialAccessToken(e.ctx, tok.Hash, tt.now)
			wantErr(t, "GetInitialAccessToken", err, tt.want)
			if tt.want == nil {
				equal(t, "initial access token", got, tok, canonIAT)
				if tt.expires.IsZero() && !got.ExpiresAt.IsZero() {
					t.Errorf("ExpiresAt = %v, want zero", got.ExpiresAt)
				}
			}
		})
	}
}
