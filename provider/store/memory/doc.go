// Package memory is the in-memory store.Store: the development default
// (authz serve --dev) and a quick store for tests. Everything lives in maps
// behind one mutex and is lost when the process exits.
//
// It follows the contract in package store exactly and passes
// storetest.Run, the same suite the PostgreSQL store passes, so behaviour
// seen in development is behaviour in production.
package memory
