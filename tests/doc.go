// Package tests holds the end-to-end tests: the real server (provider.New,
// as cmd/authz builds it) on real loopback HTTP, against both stores, with
// PostgreSQL under make test; the example resource server and cmd/authz run
// as separate processes where a test needs them. Benchmarks live here too.
package tests
