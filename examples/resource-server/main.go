package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/authzd/authz/middleware"
)

func main() {
	issuer := flag.String("issuer", "http://localhost:8080", "authorization server issuer URL")
	resource := flag.String("resource", "http://127.0.0.1:8081/api", "this service's URL: the audience its tokens must carry")
	addr := flag.String("addr", "127.0.0.1:8081", "listen address (authz uses 8080, and 9090 for its admin listener)")
	scope := flag.String("scope", "read", "scopes GET /api/hello needs (space-separated)")
	clientID := flag.String("client-id", "", "client ID for token introspection (opaque tokens, revocation checks)")
	clientSecret := flag.String("client-secret", os.Getenv("RESOURCE_CLIENT_SECRET"), "client secret for introspection (or RESOURCE_CLIENT_SECRET)")
	checkRevocation := flag.Bool("check-revocation", false, "ask the introspection endpoint about every JWT (cached)")
	cacheTTL := flag.Duration("introspection-cache", 30*time.Second, "how long an introspection answer is reused")
	minRefresh := flag.Duration("jwks-min-refresh", 5*time.Second, "least time between two key set fetches")
	flag.Parse()

	// The ten lines a downstream service needs start here.
	v, err := middleware.New(middleware.Config{
		Issuer: *issuer, Resource: *resource, ScopesSupported: strings.Fields(*scope), ResourceName: "Example API",
		ClientID: *clientID, ClientSecret: *clientSecret, CheckRevocation: *checkRevocation,
		IntrospectionCacheTTL: *cacheTTL, MinRefreshInterval: *minRefresh,
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	for _, p := range v.MetadataPaths() {
		mux.Handle("GET "+p, v.ProtectedResourceMetadata())
	}
	mux.Handle("GET /api/hello", v.Require(strings.Fields(*scope)...)(http.HandlerFunc(hello)))

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	// The test harness and scripts read the address from this line.
	fmt.Printf("resource-server listening on http://%s resource=%s\n", ln.Addr(), *resource)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 10 * time.Second, IdleTimeout: 60 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

func hello(w http.ResponseWriter, r *http.Request) {
	tok, _ := middleware.TokenFromContext(r.Context())
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"hello": tok.Subject, "client_id": tok.ClientID, "scopes": tok.Scopes, "audience": tok.Audience,
		"expires_at": tok.ExpiresAt.UTC().Format(time.RFC3339),
	})
}
