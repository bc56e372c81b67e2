// Package resourceid is the one definition of a protected resource's
// identifier (RFC 8707 §2) and of the well-known document locations derived
// from it (RFC 8414 §3.1, RFC 9728 §3.1). The authorization server
// (provider) and the resource-server kit (middleware) both import it, so
// the audience a token is issued for and the audience a service accepts are
// computed by the same code (house rule 12). It is internal and stdlib-only,
// so middleware gains no dependency.
package resourceid
