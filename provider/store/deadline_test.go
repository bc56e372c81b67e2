package store_test

import (
	"testing"
	"time"

	"github.com/authzd/authz/provider/store"
	"github.com/authzd/authz/provider/store/memory"
	"github.com/authzd/authz/provider/store/storetest"
)

// TestWithDeadlineConformance: the deadline decorator hands every call and
// every answer through unchanged, so a wrapped store still passes the suite.
// (What it does to a database that does not answer is tested against a real
// PostgreSQL behind a stalled proxy, in tests/outage_test.go.)
func TestWithDeadlineConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return store.WithDeadline(memory.New(), time.Minute)
	})
}
