// Package dcr validates OAuth client metadata: the RFC 7591 registration
// rules, the OAuth 2.1 / RFC 8252 redirect URI rules, and redirect URI
// matching at the authorization endpoint. It has no I/O and no store.
package dcr
