package tests

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/store"
	"github.com/authzd/authz/provider/store/postgres"
	"github.com/authzd/authz/provider/store/postgres/pgtest"
	"github.com/authzd/authz/provider/tokens"
)

// pgReplicaStore opens a store with its own pool on dsn, as a separate
// replica process would.
func pgReplicaStore(t testing.TB, dsn string) store.Store {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return postgres.New(pool)
}

// startReplica runs one replica on st sharing the test's clock and
// encryption key, with the given key-reload interval. Replicas behind one
// load balancer share one issuer: when first is not nil the replica takes
// its issuer and resources (HTTP still goes to the replica's own listener).
func startReplica(t testing.TB, first *env, st store.Store, clk *clock, encKey []byte, reload time.Duration) *env {
	t.Helper()
	e := start(t, st, func(o *provider.Options) {
		o.Now = clk.Now
		o.EncryptionKey = encKey
		o.KeyRefreshInterval = reload
		if first != nil {
			o.Issuer = first.srv.Options().Issuer
			o.Resources = first.srv.Options().Resources
		}
	})
	e.clock = clk
	return e
}

// revokeAt calls RFC 7009 revocation at a replica as client id.
func revokeAt(t testing.TB, e *env, id, secret, token string) tokenResp {
	t.Helper()
	return postForm(t, e.http.URL+provider.PathRevoke, url.Values{"token": {token}}, id, secret)
}

func assertActive(t testing.TB, what string, m map[string]any) {
	t.Helper()
	if m["active"] != true {
		t.Fatalf("%s: introspection = %v, want active", what, m)
	}
}

// replicaSet is replicas A and B on one PostgreSQL with a 30 s key reload,
// and C and D, laggards whose periodic reload does not come in time (1 h).
type replicaSet struct {
	clk                 *clock
	encKey              []byte
	a, b, c, d          *env
	svc, rs             store.Client
	svcSecret, rsSecret string
}

const replicaReload = 30 * time.Second

func newReplicaSet(t *testing.T, wrap func(store.Store) store.Store) *replicaSet {
	t.Helper()
	dsn := pgtest.URL(t)
	r := &replicaSet{clk: newClock(), encKey: make([]byte, 32)}
	_, _ = rand.Read(r.encKey)
	open := func() store.Store {
		st := pgReplicaStore(t, dsn)
		if wrap != nil {
			st = wrap(st)
		}
		return st
	}
	r.a = startReplica(t, nil, open(), r.clk, r.encKey, replicaReload)
	r.b = startReplica(t, r.a, open(), r.clk, r.encKey, replicaReload)
	r.c = startReplica(t, r.a, open(), r.clk, r.encKey, time.Hour)
	r.d = startReplica(t, r.a, open(), r.clk, r.encKey, time.Hour)
	r.svc, r.svcSecret = r.a.client(store.ClientMetadata{GrantTypes: []string{oauth.GrantClientCredentials}, Scopes: []string{"read"}})
	r.rs, r.rsSecret = r.a.resourceServer(store.ClientMetadata{})
	return r
}

// token gets a client_credentials access token from replica e.
func (r *replicaSet) token(t testing.TB, e *env) string {
	t.Helper()
	tr := e.postToken(url.Values{"grant_type": {"client_credentials"}}, r.svc.ID, r.svcSecret)
	mustEqual(t, "client_credentials", tr.Status, 200)
	return tr.AccessToken
}

// rotate runs what `authz keys rotate` runs, with the replicas' reload interval.
func (r *replicaSet) rotate(t testing.TB) store.SigningKey {
	t.Helper()
	now := r.clk.Now()
	keys, err := provider.RotateSigningKeys(context.Background(), r.a.store, r.encKey, "ES256", now, now.Add(provider.KeyActivationDelay(replicaReload)), nil)
	if err != nil {
		t.Fatal(err)
	}
	return keys[0]
}

func jwksKids(t testing.TB, e *env) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, k := range getJSON(t, e.issuer+provider.PathJWKS)["keys"].([]any) {
		out[k.(map[string]any)["kid"].(string)] = true
	}
	return out
}

// TestReplicasAgreeAcrossKeyRotation: a rotation is published before any
// replica signs with it; tokens from both replicas, old key and new, verify
// on every replica (the laggard reloads on the unknown kid) and a
// revocation made on any replica, the laggard included, holds on all.
func TestReplicasAgreeAcrossKeyRotation(t *testing.T) {
	t.Parallel()
	r := newReplicaSet(t, nil)
	a, b, c, d := r.a, r.b, r.c, r.d
	a1, b1 := r.token(t, a), r.token(t, b)
	oldKid := kidOf(t, a1)
	mustEqual(t, "B's first key", kidOf(t, b1), oldKid)

	k2 := r.rotate(t)
	mustEqual(t, "A signs with the old key right after the rotation", kidOf(t, r.token(t, a)), oldKid)

	r.clk.Advance(replicaReload + time.Second)
	for name, e := range map[string]*env{"A": a, "B": b} {
		if !jwksKids(t, e)[k2.ID] {
			t.Fatalf("%s does not publish the new key one reload after the rotation", name)
		}
		mustEqual(t, name+" before the activation", kidOf(t, r.token(t, e)), oldKid)
	}

	r.clk.Advance(replicaReload)
	a2, b2 := r.token(t, a), r.token(t, b)
	mustEqual(t, "A's key after the activation", kidOf(t, a2), k2.ID)
	mustEqual(t, "B's key after the activation", kidOf(t, b2), k2.ID)

	// Every token is active on every replica. C has never loaded the new
	// key: the unknown kid makes it reload once.
	for _, e := range []*env{a, b, c} {
		for _, tok := range []string{a1, b1, a2, b2} {
			assertActive(t, "token on "+e.http.URL, e.introspect(t, r.rs.ID, r.rsSecret, tok))
		}
	}

	// Revocations recorded by whichever replica receives them.
	mustEqual(t, "revoke a2 at B", revokeAt(t, b, r.svc.ID, r.svcSecret, a2).Status, 200)
	mustEqual(t, "revoke b1 at A", revokeAt(t, a, r.svc.ID, r.svcSecret, b1).Status, 200)
	// D has never loaded the new key either: it must reload, not answer a
	// 200 that revoked nothing.
	mustEqual(t, "revoke b2 at the laggard D", revokeAt(t, d, r.svc.ID, r.svcSecret, b2).Status, 200)
	for _, e := range []*env{a, b, c, d} {
		for _, tok := range []string{a2, b1, b2} {
			assertInactive(t, "revoked token on "+e.http.URL, e.introspect(t, r.rs.ID, r.rsSecret, tok))
		}
		assertActive(t, "a1 (not revoked) on "+e.http.URL, e.introspect(t, r.rs.ID, r.rsSecret, a1))
	}
}

// TestRevocationThatCannotBeRecordedFails: when the laggard cannot load the
// key that signed the token, or cannot record the revocation, the answer is
// 503 temporarily_unavailable with Retry-After, never a 200 that did nothing.
func TestRevocationThatCannotBeRecordedFails(t *testing.T) {
	t.Parallel()
	probes := map[*env]*keyStoreProbe{}
	var all []*keyStoreProbe
	r := newReplicaSet(t, func(st store.Store) store.Store {
		p := &keyStoreProbe{Store: st}
		all = append(all, p)
		return p
	})
	for i, e := range []*env{r.a, r.b, r.c, r.d} {
		probes[e] = all[i]
	}
	r.rotate(t)
	r.clk.Advance(provider.KeyActivationDelay(replicaReload))
	tok := r.token(t, r.a)

	probes[r.d].failLists.Store(true)
	tr := revokeAt(t, r.d, r.svc.ID, r.svcSecret, tok)
	mustEqual(t, "revocation at a laggard that cannot reload", tr.Status, http.StatusServiceUnavailable)
	mustEqual(t, "error", tr.Error, "temporarily_unavailable")
	if tr.Header.Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
	assertActive(t, "token after the failed revocation", r.a.introspect(t, r.rs.ID, r.rsSecret, tok))

	probes[r.b].failRevoke.Store(true)
	mustEqual(t, "revocation that cannot be stored", revokeAt(t, r.b, r.svc.ID, r.svcSecret, tok).Status, http.StatusServiceUnavailable)

	// Once the store answers again, the same revocation goes through.
	probes[r.d].failLists.Store(false)
	mustEqual(t, "revocation after the outage", revokeAt(t, r.d, r.svc.ID, r.svcSecret, tok).Status, 200)
	assertInactive(t, "token after the revocation", r.a.introspect(t, r.rs.ID, r.rsSecret, tok))
}

// TestUnknownKidReloadIsSingleFlightAndRateLimited: tokens naming kids
// nobody published make a replica reload its keys at most once per 5 s,
// however many arrive at once, and are then inactive.
func TestUnknownKidReloadIsSingleFlightAndRateLimited(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, open func(testing.TB) store.Store) {
		probe := &keyStoreProbe{Store: open(t)}
		e := start(t, probe, func(o *provider.Options) { o.KeyRefreshInterval = time.Hour })
		rs, rsSecret := e.client(store.ClientMetadata{GrantTypes: []string{oauth.GrantClientCredentials}})
		forged := func() string {
			k, err := tokens.GenerateKey(rand.Reader, "ES256")
			if err != nil {
				t.Fatal(err)
			}
			sg, err := tokens.NewSigner(k)
			if err != nil {
				t.Fatal(err)
			}
			now := e.clock.Now()
			tok, err := sg.Sign(tokens.AccessTokenClaims{Issuer: e.issuer, Subject: "mallory", Audience: []string{e.issuer + "/api"},
				ClientID: rs.ID, ID: "forged", IssuedAt: now, NotBefore: now, ExpiresAt: now.Add(time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}
		introspectAll := func(n int) {
			t.Helper()
			toks := make([]string, n)
			for i := range toks {
				toks[i] = forged()
			}
			bodies := make([]string, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					req, _ := http.NewRequest("POST", e.issuer+provider.PathIntrospect, strings.NewReader(url.Values{"token": {toks[i]}}.Encode()))
					req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
					req.SetBasicAuth(rs.ID, rsSecret)
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						bodies[i] = err.Error()
						return
					}
					defer resp.Body.Close()
					raw, _ := io.ReadAll(resp.Body)
					bodies[i] = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(raw)))
				})
			}
			wg.Wait()
			for _, b := range bodies {
				mustEqual(t, "forged token introspection", b, `200 {"active":false}`)
			}
		}
		before := probe.lists.Load()
		introspectAll(20)
		mustEqual(t, "key reloads for 20 unknown kids at once", probe.lists.Load()-before, int32(1))
		e.clock.Advance(time.Second)
		introspectAll(5)
		mustEqual(t, "key reloads 1 s later", probe.lists.Load()-before, int32(1))
		e.clock.Advance(5 * time.Second)
		introspectAll(1)
		mustEqual(t, "key reloads 6 s later", probe.lists.Load()-before, int32(2))
	})
}

// TestReplicasStartingTogetherMakeOneKey: replicas started at once on an
// empty database end with one signing key, and all sign with it.
func TestReplicasStartingTogetherMakeOneKey(t *testing.T) {
	t.Parallel()
	dsn := pgtest.URL(t)
	encKey := make([]byte, 32)
	_, _ = rand.Read(encKey)
	const n = 6
	stores := make([]store.Store, n)
	for i := range stores {
		stores[i] = pgReplicaStore(t, dsn)
	}
	srvs := make([]*provider.Server, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	startGate := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-startGate
			srvs[i], errs[i] = provider.New(context.Background(), provider.Options{
				Issuer: "https://auth.example.com", Store: stores[i], EncryptionKey: encKey,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			})
		})
	}
	close(startGate)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
	}
	keys, err := stores[0].ListSigningKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 {
		t.Fatalf("%d signing keys after %d replicas started at once, want 1", len(keys), n)
	}
	// Every replica publishes exactly that key.
	for i, srv := range srvs {
		ts := httptest.NewServer(srv.Handler())
		kids := jwksKids(t, &env{issuer: ts.URL})
		ts.Close()
		if len(kids) != 1 || !kids[keys[0].ID] {
			t.Fatalf("replica %d publishes %v, want only %s", i, kids, keys[0].ID)
		}
	}
}

// keyStoreProbe counts ListSigningKeys calls and can fail it or
// RevokeAccessToken on demand.
type keyStoreProbe struct {
	store.Store
	lists                 atomic.Int32
	failLists, failRevoke atomic.Bool
}

func (p *keyStoreProbe) ListSigningKeys(ctx context.Context) ([]store.SigningKey, error) {
	p.lists.Add(1)
	if p.failLists.Load() {
		return nil, fmt.Errorf("%w: test outage", store.ErrUnavailable)
	}
	return p.Store.ListSigningKeys(ctx)
}

func (p *keyStoreProbe) RevokeAccessToken(ctx context.Context, jti string, exp time.Time) error {
	if p.failRevoke.Load() {
		return fmt.Errorf("%w: test outage", store.ErrUnavailable)
	}
	return p.Store.RevokeAccessToken(ctx, jti, exp)
}
