package tests

import (
	"net/url"
	"strings"
	"testing"

	"github.com/authzd/authz/provider"
	"github.com/authzd/authz/provider/store"
)

// BenchmarkIntrospectionClientCredentialsPostgres introspects a token
// without a grant, as `make load`'s introspect mode does: the store's
// answer is one statement (revoked? client still there?), where
// BenchmarkIntrospectionPostgres's token of a grant takes one batch.
func BenchmarkIntrospectionClientCredentialsPostgres(b *testing.B) {
	e := benchEnv(b)
	svc, secret := e.resourceServer(store.ClientMetadata{Scopes: []string{"read"}})
	tr := e.postToken(url.Values{"grant_type": {"client_credentials"}}, svc.ID, secret)
	if tr.Status != 200 {
		b.Fatalf("client_credentials: %d %s", tr.Status, tr.Error)
	}
	form := url.Values{"token": {tr.AccessToken}}
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			raw := benchPost(b, e.issuer+provider.PathIntrospect, form, svc.ID, secret, 200)
			if !strings.Contains(string(raw), `"active":true`) {
				b.Fatalf("inactive: %s", raw)
			}
		}
	})
}
