// Package migrations holds authz's PostgreSQL schema as numbered SQL files
// embedded in the binary, and Apply, which brings a database up to date.
//
// Apply is safe to run from many processes at once (several replicas
// starting together, `authz migrate` beside a running server): it takes a
// transaction-scoped advisory lock keyed by the current schema, so one
// process applies and the others wait and then find nothing left to do.
// Each file runs in the same transaction as its bookkeeping row, so a
// failed migration leaves nothing half-written. Each applied file's SHA-256
// is recorded, and Apply refuses to run when an applied file has changed.
// Check is the read-only counterpart for commands that must not change the
// schema (every admin command): it says "run authz migrate" instead.
package migrations
