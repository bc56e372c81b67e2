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
