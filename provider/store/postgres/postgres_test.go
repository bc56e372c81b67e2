package postgres_test

import (
	"testing"

	"github.com/authzd/authz/provider/store"
	"github.com/authzd/authz/provider/store/postgres"
	"github.com/authzd/authz/provider/store/postgres/pgtest"
	"github.com/authzd/authz/provider/store/storetest"
)

// TestConformance runs the suite the memory store also passes against a
// real PostgreSQL, each subtest in its own schema.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return postgres.New(pgtest.Pool(t))
	})
}

// TestOpenSizesThePoolForCommitLatency: without pool_max_conns in the URL
// the pool has DefaultMaxConns connections, not pgx's CPU-count default;
// the URL still wins when it says.
func TestOpenSizesThePoolForCommitLatency(t *testing.T) {
	t.Parallel()
	u := pgtest.URL(t)
	st, err := postgres.Open(t.Context(), u)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if got := st.Pool().Config().MaxConns; got != postgres.DefaultMaxConns {
		t.Errorf("MaxConns = %d, want %d", got, postgres.DefaultMaxConns)
	}
	st2, err := postgres.Open(t.Context(), u+"&pool_max_conns=3")
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	if got := st2.Pool().Config().MaxConns; got != 3 {
		t.Errorf("with pool_max_conns=3: MaxConns = %d", got)
	}
}
