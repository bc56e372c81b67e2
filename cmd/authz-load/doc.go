// Command authz-load drives a running authz server on this machine with
// token requests for a bounded time and prints throughput and latency.
//
//	authz-load -issuer http://127.0.0.1:8080 -client-id ID -client-secret S \
//	    [-mode client_credentials|introspect|resource] [-concurrency 16] [-duration 10s]
//
// In resource mode it gets one token for -resource and then sends
// GET -target with it: the load on a service protected by middleware/, such
// as examples/resource-server.
//
// It only sends traffic to loopback addresses and stops by itself.
package main
