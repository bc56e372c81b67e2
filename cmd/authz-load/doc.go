// Command authz-load drives running authz servers on this machine with
// every flow, for a bounded time per concurrency level, and prints per
// level: rate, p50/p90/p99/max latency, errors by HTTP status and OAuth
// error code, and (given their PIDs) the server's and PostgreSQL's CPU
// seconds per request and the server's RSS.
//
//	authz-load -issuer http://127.0.0.1:8080 -mode refresh -concurrency 1,4,16,64 -duration 10s \
//	    -client-id ID -client-secret S -code-client-id CID -code-client-secret CS \
//	    -username U -password P [-database-url URL] [-server-pid PID] [-pg-pid PID]
//
// Modes: client_credentials, introspect, revoke, authorization_code
// (codes minted through the real login and consent pages), refresh (one
// chain per worker), refresh_shared (pairs of workers present one token at
// once: the grace path), resource (GET -target, a service behind
// middleware/), bound and bound_code (the store's SQL straight through pgx:
// the database's own limit), all, and mixed (every flow at once across
// -replicas, with a pass/fail verdict: the soak).
//
// It only sends traffic to loopback addresses and stops by itself.
package main
