// Package wellknown serves the discovery documents: RFC 8414 authorization
// server metadata, RFC 9728 protected resource metadata, and the JWK Set.
// It computes the well-known locations (including RFC 8414 §3.1 / RFC 9728
// §3.1 path insertion for identifiers with a path) and writes JSON with the
// CORS headers browser-based clients need. It knows nothing of routing or
// storage: provider builds the documents from its options and path constants.
package wellknown
