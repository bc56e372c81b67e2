// Package tokens makes and checks what the server hands out: random
// prefixed secrets and their SHA-256 digests, signing keys encrypted at
// rest, and RFC 9068 JWT access tokens.
package tokens
