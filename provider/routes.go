package provider

import (
	"net/http"
	"slices"
	"strings"

	"github.com/gorilla/mux"

	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/wellknown"
)

// route is one row of the route table: where an endpoint lives, what it
// answers, and what it adds to the RFC 8414 metadata. Handler mounts the
// table and buildMetadata reads it, so what is advertised is what is served
// by construction (house rule 8).
type route struct {
	// path is relative to the issuer's path; rootPath, when set, is an
	// absolute path on the issuer's origin instead (RFC 8414 §3.1 and
	// RFC 9728 §3.1 insert the well-known suffix before the path).
	path, rootPath string
	// methods the route answers; nil means any (the handler checks).
	methods []string
	handler http.Handler
	// cors: any origin may call it, for endpoints authenticated by request
	// parameters only, never cookies. Adds OPTIONS.
	cors bool
	// json: errors, 405 included, are RFC 6749 §5.2 JSON.
	json bool
	// advertise, when set, puts the endpoint's URL in the metadata (the
	// RFC 8414 document is the OpenID one's embedded part).
	advertise func(m *wellknown.OpenIDProviderMetadata, url string)
}

// muxPath is the route's path on the server.
func (s *Server) muxPath(rt route) string {
	if rt.rootPath != "" {
		return rt.rootPath
	}
	return s.issuerPath + rt.path
}

// routes is the route table, built from the options.
func (s *Server) routes() []route {
	get, post := http.MethodGet, http.MethodPost
	rs := []route{
		{path: PathAuthorize, methods: []string{get, post}, handler: http.HandlerFunc(s.handleAuthorize),
			advertise: func(m *wellknown.OpenIDProviderMetadata, u string) { m.AuthorizationEndpoint = u }},
		{path: PathToken, methods: []string{post}, handler: s.jsonEndpoint(s.countTokens(s.handleToken)), cors: true, json: true,
			advertise: func(m *wellknown.OpenIDProviderMetadata, u string) { m.TokenEndpoint = u }},
		{path: PathJWKS, handler: wellknown.Bytes(s.jwks, "public, max-age=60"),
			advertise: func(m *wellknown.OpenIDProviderMetadata, u string) { m.JWKSURI = u }},
		{path: PathRevoke, methods: []string{post}, handler: s.jsonEndpoint(s.handleRevoke), cors: true, json: true,
			advertise: func(m *wellknown.OpenIDProviderMetadata, u string) {
				m.RevocationEndpoint = u
				m.RevocationEndpointAuthMethodsSupported = slices.Clone(oauth.AuthMethods)
			}},
		{path: PathIntrospect, methods: []string{post}, handler: s.jsonEndpoint(s.handleIntrospect), json: true,
			advertise: func(m *wellknown.OpenIDProviderMetadata, u string) {
				m.IntrospectionEndpoint = u
				m.IntrospectionEndpointAuthMethodsSupported = slices.Clone(oauth.ConfidentialAuthMethods)
			}},
		{path: PathLogin, methods: []string{get, post}, handler: http.HandlerFunc(s.handleLogin)},
		{path: PathLogout, methods: []string{get, post}, handler: http.HandlerFunc(s.handleLogout)},
		{path: "/", methods: []string{get, http.MethodHead}, handler: http.HandlerFunc(s.handleHome)},
		{path: PathApps, methods: []string{get, post}, handler: http.HandlerFunc(s.handleApps)},
		{path: PathHealthz, handler: http.HandlerFunc(handleHealthz)},
		{path: PathReadyz, handler: http.HandlerFunc(s.handleReady)},
	}
	if s.opts.RegistrationPolicy != RegistrationOff {
		rs = append(rs,
			route{path: PathRegister, methods: []string{post}, handler: s.jsonEndpoint(s.countRegistrations(registrationDCR, s.handleRegister)), cors: true, json: true,
				advertise: func(m *wellknown.OpenIDProviderMetadata, u string) { m.RegistrationEndpoint = u }},
			route{path: PathRegister + "/{client_id}", methods: []string{get, http.MethodPut, http.MethodDelete},
				handler: s.jsonEndpoint(s.handleClientConfiguration), json: true})
	} else {
		// RFC 7591 §3: the endpoint exists but refuses; it is not advertised.
		rs = append(rs, route{path: PathRegister, methods: []string{post}, handler: s.jsonEndpoint(s.handleRegister), json: true})
	}
	// Sign-in through upstream providers; an unknown name is a page.
	rs = append(rs,
		route{path: PathUpstream + "{name}", methods: []string{get}, handler: http.HandlerFunc(s.handleUpstreamStart)},
		route{path: PathUpstream + "{name}/callback", methods: []string{get}, handler: http.HandlerFunc(s.handleUpstreamCallback)})
	if s.oidcOn() {
		// UserInfo is authenticated by its bearer token only, never a
		// cookie, so any origin may call it (OIDC Core §5.3).
		rs = append(rs,
			route{path: PathUserInfo, methods: []string{get, post}, handler: s.jsonEndpoint(s.handleUserInfo), cors: true, json: true,
				advertise: func(m *wellknown.OpenIDProviderMetadata, u string) { m.UserInfoEndpoint = u }},
			route{path: PathEndSession, methods: []string{get, post}, handler: http.HandlerFunc(s.handleEndSession),
				advertise: func(m *wellknown.OpenIDProviderMetadata, u string) { m.EndSessionEndpoint = u }})
		// OIDC Discovery §4.1: the issuer with the suffix appended; for an
		// issuer with a path, also the RFC 8414 §5 path-inserted location.
		doc := wellknown.JSON(s.openidMetadata)
		rs = append(rs, route{path: wellknown.OpenIDConfigurationSuffix, handler: doc})
		if s.issuerPath != "" {
			ins, _ := wellknown.InsertedPath(s.opts.Issuer, wellknown.OpenIDConfigurationSuffix)
			rs = append(rs, route{rootPath: ins, handler: doc})
		}
	}

	// RFC 8414 §3.1: the metadata lives at the path-inserted location; many
	// clients also try the issuer-relative one, so both answer.
	meta := wellknown.JSON(s.metadata)
	insPath, _ := wellknown.InsertedPath(s.opts.Issuer, wellknown.AuthorizationServerSuffix)
	rs = append(rs, route{rootPath: insPath, handler: meta})
	if s.issuerPath != "" {
		rs = append(rs, route{path: wellknown.AuthorizationServerSuffix, handler: meta})
	}
	// RFC 9728 documents for the configured resources this server hosts
	// itself (same origin as the issuer), e.g. the default resource.
	for _, res := range s.opts.Resources {
		if !sameOrigin(res, s.opts.Issuer) {
			continue
		}
		path, err := wellknown.InsertedPath(res, wellknown.ProtectedResourceSuffix)
		if err != nil {
			continue
		}
		rs = append(rs, route{rootPath: path, handler: wellknown.JSON(wellknown.ProtectedResourceMetadata{
			Resource:             res,
			AuthorizationServers: []string{s.opts.Issuer},
			// What a self-registered client can obtain, not every
			// offered scope: MCP clients ask for all of these and must
			// not be refused (RFC 8414 metadata still lists them all).
			ScopesSupported:        resourceScopes(s.registrableScopes()),
			BearerMethodsSupported: []string{"header"},
		})})
	}
	return rs
}

// buildMetadata is the OpenID Provider Metadata (OIDC Discovery §3), whose
// embedded part is the RFC 8414 document: what the server supports, from
// the options, plus each advertised route's URL from the route table. The
// OpenID fields are set only when the OpenID Connect layer is on.
func (s *Server) buildMetadata() wellknown.OpenIDProviderMetadata {
	m := wellknown.OpenIDProviderMetadata{AuthorizationServerMetadata: wellknown.AuthorizationServerMetadata{
		Issuer:                                     s.opts.Issuer,
		ScopesSupported:                            s.offeredScopes(),
		ResponseTypesSupported:                     []string{oauth.ResponseCode},
		ResponseModesSupported:                     []string{oauth.ResponseModeQuery},
		GrantTypesSupported:                        slices.Clone(oauth.GrantTypes),
		CodeChallengeMethodsSupported:              []string{oauth.CodeChallengeS256},
		TokenEndpointAuthMethodsSupported:          slices.Clone(oauth.AuthMethods),
		AuthorizationResponseISSParameterSupported: true,
		ProtectedResources:                         s.opts.Resources,
		TokenEndpointAuthSigningAlgValuesSupported: assertionAlgNames(),
		ClientIDMetadataDocumentSupported:          !s.opts.DisableClientMetadataDocuments,
	}}
	if s.oidcOn() {
		s.addOpenIDMetadata(&m)
	}
	for _, rt := range s.routes() {
		if rt.advertise != nil {
			rt.advertise(&m, s.url(rt.path))
		}
	}
	return m
}

// Handler returns the HTTP handler serving every route of the table.
func (s *Server) Handler() http.Handler {
	r := mux.NewRouter()
	table := s.routes()
	for _, rt := range table {
		h, methods := rt.handler, rt.methods
		if rt.cors {
			h, methods = cors(h), append(slices.Clone(methods), http.MethodOptions)
		}
		path := s.muxPath(rt)
		mr := r.Handle(path, routeName(path, h))
		if methods != nil {
			mr.Methods(methods...)
		}
	}
	if s.issuerPath != "" {
		// The issuer URL itself, as the documents and the CLI print it
		// (no final "/"), is what people open: lead it to the root page.
		r.Handle(s.issuerPath, routeName(s.issuerPath, http.RedirectHandler(s.issuerPath+"/", http.StatusFound))).Methods(http.MethodGet, http.MethodHead)
	}
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "not found", http.StatusNotFound)
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The OAuth endpoints that speak JSON answer in JSON even here
		// (RFC 6749 §5.2), so clients can show the error.
		for _, rt := range table {
			if rt.json && strings.HasPrefix(r.URL.Path, s.issuerPath+strings.TrimSuffix(rt.path, "/{client_id}")) {
				s.writeJSONError(w, r, &oauth.Error{Code: oauth.CodeInvalidRequest, Description: "method " + r.Method + " is not allowed here", Status: http.StatusMethodNotAllowed})
				return
			}
		}
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	})
	return s.observe(s.recoverer(limitBody(r)))
}

func handleHealthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte("ok\n"))
}
