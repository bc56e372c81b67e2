// Package pkce implements the S256 method of RFC 7636: challenge and
// verifier syntax checks and a constant-time verification.
package pkce
