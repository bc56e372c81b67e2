// Package middleware is the resource-server kit: it validates the bearer
// tokens an authz (or any RFC 8414 / RFC 9068) authorization server issues
// and rejects every token whose audience is not this service's own URL
// (RFC 8707). It answers failures with RFC 6750 §3 / RFC 9728 §5.1
// challenges and serves the RFC 9728 protected resource metadata that MCP
// clients use to find the authorization server.
//
// It depends only on the standard library and go-jose, so any Go service
// can import it.
//
//	v, err := middleware.New(middleware.Config{
//		Issuer:   "https://auth.example.com",
//		Resource: "https://api.example.com/mcp",
//	})
//	if err != nil { log.Fatal(err) }
//	mux := http.NewServeMux()
//	for _, p := range v.MetadataPaths() {
//		mux.Handle(p, v.ProtectedResourceMetadata())
//	}
//	mux.Handle("/mcp", v.Require("mcp:tools")(mcpHandler))
package middleware
