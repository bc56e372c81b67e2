package wellknown

import (
	"encoding/json"
	"net/http"

	"github.com/authzd/authz/internal/resourceid"
)

// Well-known URI suffixes, defined once in internal/resourceid so the
// middleware looks where the server serves (house rule 12).
const (
	AuthorizationServerSuffix = resourceid.AuthorizationServerSuffix // RFC 8414 §3
	ProtectedResourceSuffix   = resourceid.ProtectedResourceSuffix   // RFC 9728 §3
	OpenIDConfigurationSuffix = resourceid.OpenIDConfigurationSuffix // OIDC Discovery §4
)

// OpenIDProviderMetadata is the OpenID Connect Discovery §3 document: the
// RFC 8414 document with the OpenID Connect fields added.
type OpenIDProviderMetadata struct {
	AuthorizationServerMetadata
	UserInfoEndpoint                 string   `json:"userinfo_endpoint"`
	EndSessionEndpoint               string   `json:"end_session_endpoint"`
	IDTokenSigningAlgValuesSupported []string `json:"id_token_signing_alg_values_supported"`
	SubjectTypesSupported            []string `json:"subject_types_supported"`
	ClaimsSupported                  []string `json:"claims_supported"`
	PromptValuesSupported            []string `json:"prompt_values_supported"`
	RequestParameterSupported        bool     `json:"request_parameter_supported"`
	RequestURIParameterSupported     bool     `json:"request_uri_parameter_supported"`
	ClaimsParameterSupported         bool     `json:"claims_parameter_supported"`
}

// AuthorizationServerMetadata is the RFC 8414 §2 document.
type AuthorizationServerMetadata struct {
	Issuer                                     string   `json:"issuer"`
	AuthorizationEndpoint                      string   `json:"authorization_endpoint"`
	TokenEndpoint                              string   `json:"token_endpoint"`
	JWKSURI                                    string   `json:"jwks_uri"`
	RegistrationEndpoint                       string   `json:"registration_endpoint,omitempty"`
	RevocationEndpoint                         string   `json:"revocation_endpoint,omitempty"`
	IntrospectionEndpoint                      string   `json:"introspection_endpoint,omitempty"`
	ScopesSupported                            []string `json:"scopes_supported,omitempty"`
	ResponseTypesSupported                     []string `json:"response_types_supported"`
	ResponseModesSupported                     []string `json:"response_modes_supported,omitempty"`
	GrantTypesSupported                        []string `json:"grant_types_supported"`
	CodeChallengeMethodsSupported              []string `json:"code_challenge_methods_supported"`
	TokenEndpointAuthMethodsSupported          []string `json:"token_endpoint_auth_methods_supported"`
	TokenEndpointAuthSigningAlgValuesSupported []string `json:"token_endpoint_auth_signing_alg_values_supported,omitempty"`
	RevocationEndpointAuthMethodsSupported     []string `json:"revocation_endpoint_auth_methods_supported,omitempty"`
	IntrospectionEndpointAuthMethodsSupported  []string `json:"introspection_endpoint_auth_methods_supported,omitempty"`
	AuthorizationResponseISSParameterSupported bool     `json:"authorization_response_iss_parameter_supported"`
	// ProtectedResources lists the resources this server issues tokens for.
	ProtectedResources []string `json:"protected_resources,omitempty"`
	// ClientIDMetadataDocumentSupported tells newer MCP clients whether an
	// https client_id may name a metadata document.
	ClientIDMetadataDocumentSupported bool `json:"client_id_metadata_document_supported"`
}

// ProtectedResourceMetadata is the RFC 9728 §2 document.
type ProtectedResourceMetadata struct {
	Resource               string   `json:"resource"`
	AuthorizationServers   []string `json:"authorization_servers"`
	ScopesSupported        []string `json:"scopes_supported,omitempty"`
	BearerMethodsSupported []string `json:"bearer_methods_supported"`
	ResourceName           string   `json:"resource_name,omitempty"`
}

// InsertedPath returns the path of the well-known document for identifier
// (an issuer or a resource URL): suffix, followed by the identifier's path
// when it has one (RFC 8414 §3.1, RFC 9728 §3.1).
func InsertedPath(identifier, suffix string) (string, error) {
	return resourceid.WellKnownPath(identifier, suffix)
}

// JSON returns a handler that serves doc as JSON. Discovery documents are
// public and read by browser-based clients, so any origin may read them.
func JSON(doc any) http.Handler {
	body, err := json.Marshal(doc)
	if err != nil {
		panic("wellknown: document does not marshal: " + err.Error())
	}
	return Bytes(func() ([]byte, error) { return body, nil }, "public, max-age=300")
}

// Bytes returns a handler that serves the JSON document produced by get on
// each request (the JWK Set changes when keys rotate).
func Bytes(get func() ([]byte, error), cacheControl string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		if r.Method == http.MethodOptions {
			h.Set("Access-Control-Allow-Methods", "GET, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, MCP-Protocol-Version")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD, OPTIONS")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		body, err := get()
		if err != nil {
			h.Set("Retry-After", "5")
			http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
			return
		}
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", cacheControl)
		_, _ = w.Write(body)
	})
}
