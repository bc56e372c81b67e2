// Package oauth is the protocol vocabulary, written once: grant types,
// client authentication methods, response types, the error codes of
// RFC 6749, RFC 6750, RFC 7591 and RFC 8707 with the HTTP status each one
// is answered with, and the one error type that carries them. It is a
// leaf on the standard library only: provider, provider/dcr and
// provider/store import it, so a name and its meaning cannot drift
// between them (house rule 2).
package oauth
