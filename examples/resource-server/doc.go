// Command resource-server is an example downstream API protected by
// authz's middleware: GET /api/hello answers only tokens whose audience is
// this service's URL (-resource) and that carry -scope.
//
//	go run ./examples/resource-server -issuer http://localhost:8080 -resource http://127.0.0.1:8081/api
//
// For introspection (-client-id, -client-secret), create its client as a
// resource server, which may introspect tokens for its own URL only:
//
//	authz client create --name api --grant-type client_credentials --introspect --resource http://127.0.0.1:8081/api --json
package main
