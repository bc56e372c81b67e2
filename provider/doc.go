// Package provider assembles the authorization server: options, routes, the
// OAuth endpoints (RFC 6749 authorization code with RFC 7636 PKCE, RFC 8707
// resource indicators, RFC 9068 JWT access tokens, rotating refresh tokens),
// the login and consent pages, the OpenID Connect layer (ID tokens, UserInfo,
// logout, sign-in through upstream providers), and the one place where
// errors become OAuth responses. cmd/authz and the end-to-end tests both build the server with
// New(Options) and serve (*Server).Handler(), so test wiring cannot drift from
// production.
package provider
