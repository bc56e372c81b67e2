package dcr

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/authzd/authz/provider/oauth"
)

// asError asserts err is an *oauth.Error with the given code whose Description
// starts with field.
func asError(t *testing.T, err error, code, field string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got nil error, want %s on %s", code, field)
	}
	var e *oauth.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a *oauth.Error", err, err)
	}
	if e.Code != code {
		t.Errorf("Code = %q, want %q (description %q)", e.Code, code, e.Description)
	}
	if !strings.HasPrefix(e.Description, field+":") {
		t.Errorf("Description = %q, want it to start with %q", e.Description, field+":")
	}
	if e.Error() != e.Code+": "+e.Description {
		t.Errorf("Error() = %q, want code: description", e.Error())
	}
}

func TestNormalizeDefaults(t *testing.T) {
	m := Metadata{RedirectURIs: []string{"https://app.example.com/cb"}}
	if err := m.Normalize(); err != nil {
		t.Fatalf("Normalize: %v", err)
	}
	if m.TokenEndpointAuthMethod != oauth.AuthClientSecretBasic {
		t.Errorf("TokenEndpointAuthMethod = %q, want %q", m.TokenEndpointAuthMethod, oauth.AuthClientSecretBasic)
	}
	if !slices.Equal(m.GrantTypes, []string{oauth.GrantAuthorizationCode}) {
		t.Errorf("GrantTypes = %v, want [authorization_code]", m.GrantTypes)
	}
	if !slices.Equal(m.ResponseTypes, []string{oauth.ResponseCode}) {
		t.Errorf("ResponseTypes = %v, want [code]", m.ResponseTypes)
	}
	if m.ApplicationType != AppWeb {
		t.Errorf("ApplicationType = %q, want %q", m.ApplicationType, AppWeb)
	}
}

func TestNormalizeErrors(t *testing.T) {
	web := []string{"https://app.example.com/cb"}
	tooMany := make([]string, maxList+1)
	for i := range tooMany {
		tooMany[i] = fmt.Sprintf("https://app.example.com/cb%d", i)
	}
	tests := []struct {
		name  string
		m     Metadata
		code  string
		field string
	}{
		{"unknown auth method", Metadata{RedirectURIs: web, TokenEndpointAuthMethod: "client_secret_jwt"},
			oauth.CodeInvalidClientMetadata, "token_endpoint_auth_method"},
		{"only unsupported grant types", Metadata{RedirectURIs: web, GrantTypes: []string{"implicit", "password"}},
			oauth.CodeInvalidClientMetadata, "grant_types"},
		{"client_credentials with none", Metadata{GrantTypes: []string{oauth.GrantClientCredentials}, TokenEndpointAuthMethod: oauth.AuthNone},
			oauth.CodeInvalidClientMetadata, "grant_types"},
		{"refresh_token without authorization_code", Metadata{GrantTypes: []string{oauth.GrantClientCredentials, oauth.GrantRefreshToken}},
			oauth.CodeInvalidClientMetadata, "grant_types"},
		{"response type token", Metadata{RedirectURIs: web, ResponseTypes: []string{"token"}},
			oauth.CodeInvalidClientMetadata, "response_types"},
		{"response type code without authorization_code", Metadata{GrantTypes: []string{oauth.GrantClientCredentials}, ResponseTypes: []string{oauth.ResponseCode}},
			oauth.CodeInvalidClientMetadata, "response_types"},
		{"bad application_type", Metadata{RedirectURIs: web, ApplicationType: "browser"},
			oauth.CodeInvalidClientMetadata, "application_type"},
		{"missing redirect_uris for code", Metadata{},
			oauth.CodeInvalidRedirectURI, "redirect_uris"},
		{"redirect_uris for client_credentials only", Metadata{RedirectURIs: web, GrantTypes: []string{oauth.GrantClientCredentials}},
			oauth.CodeInvalidRedirectURI, "redirect_uris"},
		{"invalid redirect uri", Metadata{RedirectURIs: []string{"javascript:alert(1)"}},
			oauth.CodeInvalidRedirectURI, "redirect_uris"},
		{"redirect uri with control char", Metadata{RedirectURIs: []string{"https://app.example.com/\x01cb"}},
			oauth.CodeInvalidRedirectURI, "redirect_uris"},
		{"logo_uri javascript", Metadata{RedirectURIs: web, LogoURI: "javascript:alert(1)"},
			oauth.CodeInvalidClientMetadata, "logo_uri"},
		{"client_uri relative", Metadata{RedirectURIs: web, ClientURI: "/about"},
			oauth.CodeInvalidClientMetadata, "client_uri"},
		{"tos_uri with userinfo", Metadata{RedirectURIs: web, TOSURI: "https://u:p@example.com/tos"},
			oauth.CodeInvalidClientMetadata, "tos_uri"},
		{"jwks and jwks_uri", Metadata{RedirectURIs: web, JWKSURI: "https://app.example.com/jwks", JWKS: json.RawMessage(`{"keys":[{"kty":"OKP"}]}`)},
			oauth.CodeInvalidClientMetadata, "jwks"},
		{"jwks_uri http", Metadata{RedirectURIs: web, JWKSURI: "http://app.example.com/jwks"},
			oauth.CodeInvalidClientMetadata, "jwks_uri"},
		{"private_key_jwt without keys", Metadata{RedirectURIs: web, TokenEndpointAuthMethod: oauth.AuthPrivateKeyJWT},
			oauth.CodeInvalidClientMetadata, "jwks"},
		{"jwks not a key set", Metadata{RedirectURIs: web, JWKS: json.RawMessage(`{"kty":"EC","crv":"P-256"}`)},
			oauth.CodeInvalidClientMetadata, "jwks"},
		{"jwks empty key set", Metadata{RedirectURIs: web, JWKS: json.RawMessage(`{"keys":[]}`)},
			oauth.CodeInvalidClientMetadata, "jwks"},
		{"jwks an array", Metadata{RedirectURIs: web, JWKS: json.RawMessage(`[1,2]`)},
			oauth.CodeInvalidClientMetadata, "jwks"},
		{"scope with quote", Metadata{RedirectURIs: web, Scope: `read "write`},
			oauth.CodeInvalidClientMetadata, "scope"},
		{"scope with backslash", Metadata{RedirectURIs: web, Scope: `read wr\ite`},
			oauth.CodeInvalidClientMetadata, "scope"},
		{"client_name with control char", Metadata{RedirectURIs: web, ClientName: "My\x07App"},
			oauth.CodeInvalidClientMetadata, "client_name"},
		{"client_name invalid utf-8", Metadata{RedirectURIs: web, ClientName: "My\xffApp"},
			oauth.CodeInvalidClientMetadata, "client_name"},
		{"client_name too long", Metadata{RedirectURIs: web, ClientName: strings.Repeat("a", maxString+1)},
			oauth.CodeInvalidClientMetadata, "client_name"},
		{"more than 20 redirect uris", Metadata{RedirectURIs: tooMany},
			oauth.CodeInvalidClientMetadata, "redirect_uris"},
		{"empty contact", Metadata{RedirectURIs: web, Contacts: []string{""}},
			oauth.CodeInvalidClientMetadata, "contacts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tt.m
			asError(t, m.Normalize(), tt.code, tt.field)
		})
	}
}

func TestNormalizeValid(t *testing.T) {
	tests := []struct {
		name  string
		m     Metadata
		check func(t *testing.T, m Metadata)
	}{
		{
			name: "native client with custom schemes and loopback",
			m: Metadata{
				ApplicationType:         AppNative,
				TokenEndpointAuthMethod: oauth.AuthNone,
				GrantTypes:              []string{oauth.GrantAuthorizationCode, oauth.GrantRefreshToken},
				RedirectURIs:            []string{"jetbrains://idea/oauth/callback", "vscode://publisher.ext/cb", "http://127.0.0.1/cb"},
			},
			check: func(t *testing.T, m Metadata) {
				if len(m.RedirectURIs) != 3 {
					t.Errorf("RedirectURIs = %v, want 3 entries", m.RedirectURIs)
				}
				if m.ApplicationType != AppNative || m.TokenEndpointAuthMethod != oauth.AuthNone {
					t.Errorf("ApplicationType/auth = %q/%q", m.ApplicationType, m.TokenEndpointAuthMethod)
				}
				if !slices.Equal(m.ResponseTypes, []string{oauth.ResponseCode}) {
					t.Errorf("ResponseTypes = %v, want [code]", m.ResponseTypes)
				}
			},
		},
		{
			name: "web client with https and localhost, duplicates removed",
			m: Metadata{
				RedirectURIs: []string{"https://app.example.com/cb", "http://localhost:3000/cb", "https://app.example.com/cb"},
				GrantTypes:   []string{oauth.GrantAuthorizationCode, oauth.GrantAuthorizationCode},
				ClientURI:    "https://app.example.com",
				LogoURI:      "https://app.example.com/logo.png",
				Scope:        "read  write read",
			},
			check: func(t *testing.T, m Metadata) {
				if !slices.Equal(m.RedirectURIs, []string{"https://app.example.com/cb", "http://localhost:3000/cb"}) {
					t.Errorf("RedirectURIs = %v", m.RedirectURIs)
				}
				if !slices.Equal(m.GrantTypes, []string{oauth.GrantAuthorizationCode}) {
					t.Errorf("GrantTypes = %v", m.GrantTypes)
				}
				if m.Scope != "read write" {
					t.Errorf("Scope = %q, want %q", m.Scope, "read write")
				}
			},
		},
		{
			name: "client_credentials only confidential client",
			m: Metadata{
				GrantTypes:              []string{oauth.GrantClientCredentials},
				TokenEndpointAuthMethod: oauth.AuthClientSecretPost,
			},
			check: func(t *testing.T, m Metadata) {
				if len(m.ResponseTypes) != 0 {
					t.Errorf("ResponseTypes = %v, want empty", m.ResponseTypes)
				}
				if len(m.RedirectURIs) != 0 {
					t.Errorf("RedirectURIs = %v, want empty", m.RedirectURIs)
				}
				if !slices.Equal(m.GrantTypes, []string{oauth.GrantClientCredentials}) {
					t.Errorf("GrantTypes = %v", m.GrantTypes)
				}
			},
		},
		{
			name: "private_key_jwt with jwks",
			m: Metadata{
				GrantTypes:              []string{oauth.GrantClientCredentials},
				TokenEndpointAuthMethod: oauth.AuthPrivateKeyJWT,
				JWKS:                    json.RawMessage("{\n  \"keys\": [ {\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"} ]\n}"),
			},
			check: func(t *testing.T, m Metadata) {
				want := `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`
				if string(m.JWKS) != want {
					t.Errorf("JWKS = %s, want compacted %s", m.JWKS, want)
				}
			},
		},
		{
			name: "private_key_jwt with jwks_uri",
			m: Metadata{
				RedirectURIs:            []string{"https://app.example.com/cb"},
				TokenEndpointAuthMethod: oauth.AuthPrivateKeyJWT,
				JWKSURI:                 "https://app.example.com/.well-known/jwks.json",
			},
			check: func(t *testing.T, m Metadata) {
				if m.JWKSURI != "https://app.example.com/.well-known/jwks.json" {
					t.Errorf("JWKSURI = %q", m.JWKSURI)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tt.m
			if err := m.Normalize(); err != nil {
				t.Fatalf("Normalize: %v", err)
			}
			tt.check(t, m)
		})
	}
}

func TestValidateRedirectURI(t *testing.T) {
	tests := []struct {
		name    string
		uri     string
		appType string
		ok      bool
	}{
		{"javascript", "javascript:alert(1)", AppNative, false},
		{"data", "data:text/html,<script>alert(1)</script>", AppNative, false},
		{"file", "file:///etc/passwd", AppNative, false},
		{"vbscript", "vbscript:msgbox(1)", AppNative, false},
		{"mailto", "mailto:a@example.com", AppNative, false},
		{"tel", "tel:+15551234", AppNative, false},
		{"ftp", "ftp://files.example.com/cb", AppNative, false},
		{"wss", "wss://x.example.com/cb", AppNative, false},
		{"JavaScript mixed case", "JavaScript:alert(1)", AppNative, false},
		{"fragment", "https://app.example.com/cb#frag", AppWeb, false},
		{"empty fragment", "https://app.example.com/cb#", AppWeb, false},
		{"userinfo", "https://user:pass@app.example.com/cb", AppWeb, false},
		{"whitespace", "https://app.example.com/c b", AppWeb, false},
		{"newline", "https://app.example.com/cb\n", AppWeb, false},
		{"backslash", `https://app.example.com\@evil.example/cb`, AppWeb, false},
		{"relative", "/cb", AppWeb, false},
		{"https without host", "https:///cb", AppWeb, false},
		{"http non-loopback", "http://app.example.com/cb", AppWeb, false},
		{"http non-loopback native", "http://192.168.1.10/cb", AppNative, false},
		{"custom scheme for web", "vscode://publisher.ext/cb", AppWeb, false},
		{"custom scheme with nothing after it", "jetbrains:", AppNative, false},
		{"custom scheme for native", "vscode://publisher.ext/cb", AppNative, true},
		{"reverse-domain scheme for native", "com.example.app:/oauth2redirect", AppNative, true},
		{"https", "https://app.example.com/cb?x=1", AppWeb, true},
		{"http ipv4 loopback", "http://127.0.0.1:8080/cb", AppWeb, true},
		{"http ipv6 loopback", "http://[::1]:8080/cb", AppNative, true},
		{"http localhost", "http://localhost:3000/cb", AppWeb, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateRedirectURI(tt.uri, tt.appType)
			if tt.ok {
				if err != nil {
					t.Fatalf("ValidateRedirectURI(%q, %q) = %v, want nil", tt.uri, tt.appType, err)
				}
				return
			}
			asError(t, err, oauth.CodeInvalidRedirectURI, "redirect_uris")
		})
	}
}

func TestIsLoopback(t *testing.T) {
	tests := []struct {
		host string
		want bool
	}{
		{"localhost", true},
		{"LocalHost", true},
		{"127.0.0.1", true},
		{"127.1.2.3", true},
		{"::1", true},
		{"[::1]", false},
		{"localhost.evil.example", false},
		{"10.0.0.1", false},
		{"", false},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			if got := IsLoopback(tt.host); got != tt.want {
				t.Errorf("IsLoopback(%q) = %v, want %v", tt.host, got, tt.want)
			}
		})
	}
}

func TestMatchRedirectURI(t *testing.T) {
	tests := []struct {
		name       string
		registered []string
		requested  string
		ok         bool
	}{
		{"exact https", []string{"https://app.example.com/cb"}, "https://app.example.com/cb", true},
		{"exact among several", []string{"https://a.example/cb", "https://b.example/cb"}, "https://b.example/cb", true},
		{"loopback ipv4 any port", []string{"http://127.0.0.1/cb"}, "http://127.0.0.1:53121/cb", true},
		{"loopback ipv4 registered port ignored", []string{"http://127.0.0.1:8080/cb"}, "http://127.0.0.1:9090/cb", true},
		{"loopback ipv6 any port", []string{"http://[::1]/cb"}, "http://[::1]:53121/cb", true},
		{"loopback localhost any port", []string{"http://localhost/cb"}, "http://localhost:4000/cb", true},
		{"loopback same query", []string{"http://127.0.0.1/cb?a=1"}, "http://127.0.0.1:1234/cb?a=1", true},
		{"loopback different path", []string{"http://127.0.0.1/cb"}, "http://127.0.0.1:53121/other", false},
		{"loopback different query", []string{"http://127.0.0.1/cb?a=1"}, "http://127.0.0.1:1234/cb?a=2", false},
		{"loopback localhost for 127.0.0.1", []string{"http://127.0.0.1/cb"}, "http://localhost:53121/cb", true},
		{"claude code: localhost published, 127.0.0.1 sent", []string{"http://localhost/callback"}, "http://127.0.0.1:52163/callback", true},
		{"loopback [::1] for localhost", []string{"http://localhost/callback"}, "http://[::1]:52163/callback", true},
		{"loopback any port, different path", []string{"http://localhost/callback"}, "http://127.0.0.1:52163/callback/", false},
		{"vs code: no path published, / sent", []string{"http://127.0.0.1:33418"}, "http://127.0.0.1:52163/", true},
		{"loopback / published, no path sent", []string{"http://127.0.0.1/"}, "http://127.0.0.1:52163", true},
		{"loopback no path published, other path sent", []string{"http://127.0.0.1:33418"}, "http://127.0.0.1:52163/cb", false},
		{"https no path published, / sent", []string{"https://app.example.com"}, "https://app.example.com/", false},
		{"loopback https is not loopback http", []string{"http://localhost/cb"}, "https://127.0.0.1:52163/cb", false},
		{"loopback with userinfo", []string{"http://127.0.0.1/cb"}, "http://u@127.0.0.1:53121/cb", false},
		{"loopback with fragment", []string{"http://127.0.0.1/cb"}, "http://127.0.0.1:53121/cb#x", false},
		{"loopback with empty fragment", []string{"http://127.0.0.1/cb"}, "http://127.0.0.1:53121/cb#", false},
		{"https different port", []string{"https://app.example.com/cb"}, "https://app.example.com:8443/cb", false},
		{"https different path", []string{"https://app.example.com/cb"}, "https://app.example.com/cb/", false},
		{"http non-loopback different port", []string{"http://app.example.com/cb"}, "http://app.example.com:81/cb", false},
		{"custom scheme exact", []string{"vscode://publisher.ext/cb"}, "vscode://publisher.ext/cb", true},
		{"custom scheme different path", []string{"vscode://publisher.ext/cb"}, "vscode://publisher.ext/cb2", false},
		{"custom scheme with port", []string{"vscode://publisher.ext/cb"}, "vscode://publisher.ext:1/cb", false},
		{"https with fragment", []string{"https://app.example.com/cb"}, "https://app.example.com/cb#x", false},
		{"nothing registered", nil, "http://127.0.0.1:1/cb", false},
		{"empty requested", []string{"https://app.example.com/cb"}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := MatchRedirectURI(tt.registered, tt.requested)
			if ok != tt.ok {
				t.Fatalf("MatchRedirectURI(%v, %q) ok = %v, want %v", tt.registered, tt.requested, ok, tt.ok)
			}
			want := ""
			if tt.ok {
				want = tt.requested
			}
			if got != want {
				t.Errorf("MatchRedirectURI returned %q, want %q", got, want)
			}
		})
	}
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		code  string // "" means success
		field string
		check func(t *testing.T, m Metadata)
	}{
		{name: "not JSON", body: "redirect_uris=https://x", code: oauth.CodeInvalidClientMetadata, field: "body"},
		{name: "JSON array", body: `["https://x"]`, code: oauth.CodeInvalidClientMetadata, field: "body"},
		{name: "truncated object", body: `{"redirect_uris":[`, code: oauth.CodeInvalidClientMetadata, field: "body"},
		{name: "trailing object", body: `{} {}`, code: oauth.CodeInvalidClientMetadata, field: "body"},
		{name: "trailing brace", body: `{}}`, code: oauth.CodeInvalidClientMetadata, field: "body"},
		{name: "null", body: `null`, code: oauth.CodeInvalidClientMetadata, field: "body"},
		{name: "array", body: `[]`, code: oauth.CodeInvalidClientMetadata, field: "body"},
		{name: "redirect_uris as string", body: `{"redirect_uris":"https://app.example.com/cb"}`, code: oauth.CodeInvalidClientMetadata, field: "redirect_uris"},
		{name: "client_name as number", body: `{"client_name":42}`, code: oauth.CodeInvalidClientMetadata, field: "client_name"},
		{
			name: "unknown fields ignored",
			body: `{"redirect_uris":["https://app.example.com/cb"],"client_name":"App","x_vendor":{"a":[1,2]},"frontchannel_logout_uri":"https://x"}`,
			check: func(t *testing.T, m Metadata) {
				if !slices.Equal(m.RedirectURIs, []string{"https://app.example.com/cb"}) || m.ClientName != "App" {
					t.Errorf("decoded %+v", m)
				}
			},
		},
		{
			name: "jwks kept raw",
			body: `{"jwks":{"keys":[{"kty":"OKP"}]},"token_endpoint_auth_method":"private_key_jwt"}`,
			check: func(t *testing.T, m Metadata) {
				if string(m.JWKS) != `{"keys":[{"kty":"OKP"}]}` || m.TokenEndpointAuthMethod != oauth.AuthPrivateKeyJWT {
					t.Errorf("decoded %+v (jwks %s)", m, m.JWKS)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Decode(strings.NewReader(tt.body))
			if tt.code != "" {
				asError(t, err, tt.code, tt.field)
				if tt.field == "redirect_uris" {
					var e *oauth.Error
					errors.As(err, &e)
					if !strings.Contains(e.Description, "array") {
						t.Errorf("Description = %q, want it to say an array is expected", e.Description)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			tt.check(t, m)
		})
	}
}

// TestInteropProfile pins what shipping clients send (issue "MCP clients as
// they ship"): each row is a real client's habit that must not fail.
func TestInteropProfile(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		body      string
		app, auth string
		grants    []string
	}{
		{"claude code: no application_type, loopback only", `{"client_name":"Claude Code","redirect_uris":["http://localhost/callback"],"token_endpoint_auth_method":"none","grant_types":["authorization_code","refresh_token"]}`,
			AppNative, oauth.AuthNone, []string{oauth.GrantAuthorizationCode, oauth.GrantRefreshToken}},
		{"claude.ai: jwt-bearer grant ignored", `{"client_name":"Claude","redirect_uris":["https://claude.ai/api/mcp/auth_callback"],"token_endpoint_auth_method":"none","grant_types":["authorization_code","refresh_token","urn:ietf:params:oauth:grant-type:jwt-bearer"]}`,
			AppWeb, oauth.AuthNone, []string{oauth.GrantAuthorizationCode, oauth.GrantRefreshToken}},
		{"chatgpt: methods list with none, unknown fields", `{"client_name":"ChatGPT","redirect_uris":["https://chatgpt.com/connector_platform_oauth_redirect"],"token_endpoint_auth_methods_supported":["none","private_key_jwt"],"x_openai_thing":{"a":1},"grant_types":["authorization_code","refresh_token"]}`,
			AppWeb, oauth.AuthNone, []string{oauth.GrantAuthorizationCode, oauth.GrantRefreshToken}},
		{"methods list without none", `{"client_name":"K","redirect_uris":["https://k.example/cb"],"token_endpoint_auth_methods_supported":["private_key_jwt","client_secret_basic"],"jwks_uri":"https://k.example/jwks"}`,
			AppWeb, oauth.AuthPrivateKeyJWT, []string{oauth.GrantAuthorizationCode}},
		{"vs code: loopback and https", `{"client_name":"Visual Studio Code","redirect_uris":["http://127.0.0.1:33418","https://vscode.dev/redirect"],"token_endpoint_auth_method":"none"}`,
			AppWeb, oauth.AuthNone, []string{oauth.GrantAuthorizationCode}},
		{"private-use scheme only", `{"client_name":"IDE","redirect_uris":["com.example.ide:/cb","http://[::1]/cb"],"token_endpoint_auth_method":"none"}`,
			AppNative, oauth.AuthNone, []string{oauth.GrantAuthorizationCode}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Decode(strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Normalize(); err != nil {
				t.Fatalf("Normalize: %v", err)
			}
			if m.ApplicationType != tc.app || m.TokenEndpointAuthMethod != tc.auth || !slices.Equal(m.GrantTypes, tc.grants) || m.TokenEndpointAuthMethodsSupported != nil {
				t.Fatalf("got application_type %q, auth %q, grants %v, methods %v; want %q, %q, %v",
					m.ApplicationType, m.TokenEndpointAuthMethod, m.GrantTypes, m.TokenEndpointAuthMethodsSupported, tc.app, tc.auth, tc.grants)
			}
		})
	}
}

func TestCheckRegisteredRedirectURI(t *testing.T) {
	t.Parallel()
	tests := []struct {
		uri string
		ok  bool
	}{
		{"https://app.example.com/cb", true},
		{"http://127.0.0.1/cb", true},
		{"com.example.app:/cb", true},
		{"io.github.someone.tool://cb", true},
		{"jetbrains://gateway/cb", true},
		{"VSCode://cb", true},
		{"myapp:/cb", false},
		{"com:/cb", false},
		{"com.:/cb", false},
		{".com.example:/cb", false},
		{"1com.example:/cb", false},
		{"com.-example:/cb", false},
		{"foo+bar.example:/cb", false},
		{"::", false},
	}
	for _, tt := range tests {
		t.Run(tt.uri, func(t *testing.T) {
			t.Parallel()
			err := CheckRegisteredRedirectURI(tt.uri, DefaultRedirectSchemes)
			if tt.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tt.ok {
				asError(t, err, oauth.CodeInvalidRedirectURI, "redirect_uris")
			}
		})
	}
}

func TestDeniedScheme(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"ms-officecmd", "MS-WORD", "ms-msdt", "search-ms", "search", "shell", "intent", "chrome", "jar",
		"x-safari-https", "file", "javascript", "data", "vbscript", "microsoft-edge", "itms-services", "x-apple-health"} {
		if !DeniedScheme(s) {
			t.Errorf("%s is not denied", s)
		}
		// Denied for an administrator's native client too.
		if err := ValidateRedirectURI(s+":x", AppNative); err == nil {
			t.Errorf("%s: accepted by ValidateRedirectURI", s)
		}
	}
	for _, s := range []string{"https", "http", "jetbrains", "vscode", "com.example.app", "myapp", "msapp", "com.microsoft.app"} {
		if DeniedScheme(s) {
			t.Errorf("%s is denied", s)
		}
	}
}

func TestInvisibleCharacters(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"a\u202eb", "a\u2066b", "a\u200bb", "a\u200db", "a\u00adb", "a\u2028b", "a\u2029b", "a\ufeffb", "a\u0085b", "a\u061cb"} {
		m := Metadata{ClientName: name, RedirectURIs: []string{"https://app.example.com/cb"}}
		asError(t, m.Normalize(), oauth.CodeInvalidClientMetadata, "client_name")
	}
	m := Metadata{ClientName: "Café 東京 🙂", RedirectURIs: []string{"https://app.example.com/cb"}}
	if err := m.Normalize(); err != nil {
		t.Fatal(err)
	}
}
