package middleware

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

type ctxKey struct{}

// TokenFromContext returns the token Require validated for this request.
func TokenFromContext(ctx context.Context) (*Token, bool) {
	t, ok := ctx.Value(ctxKey{}).(*Token)
	return t, ok
}

// errRequest is a malformed request (RFC 6750 §3.1 invalid_request).
type errRequest string

func (e errRequest) Error() string { return string(e) }

var errNoToken = errors.New("no bearer token")

// bearerToken extracts the token from the Authorization header, the one
// place we accept it (RFC 6750 §2.1; OAuth 2.1 drops the query and form
// methods). A token in the query string or a form body is ignored, unless
// a header token is sent too: more than one method is invalid_request
// (§3.1).
func bearerToken(r *http.Request) (string, error) {
	hs := r.Header["Authorization"]
	if len(hs) == 0 {
		return "", errNoToken
	}
	if len(hs) > 1 {
		return "", errRequest("more than one Authorization header")
	}
	h := hs[0]
	if len(h) < 6 || !strings.EqualFold(h[:6], "bearer") || (len(h) > 6 && h[6] != ' ') {
		return "", errNoToken // another scheme is not a bearer token
	}
	if queryHasToken(r) || formHasToken(r) {
		return "", errRequest("the token was sent in more than one way; send it only in the Authorization header")
	}
	tok := strings.TrimLeft(h[6:], " ")
	if tok == "" {
		return "", errRequest("the Authorization header has an empty bearer token")
	}
	if !isToken68(tok) {
		return "", invalid("the token is malformed")
	}
	return tok, nil
}

func queryHasToken(r *http.Request) bool {
	return r.URL.RawQuery != "" && strings.Contains(r.URL.RawQuery, "access_token") && r.URL.Query().Has("access_token")
}

// maxPeek bounds how much of a form body is read to look for a second
// token; a larger body is passed on untouched.
const maxPeek = 64 << 10

// formHasToken reports whether a form-encoded body carries access_token
// (RFC 6750 §2.2). The bytes read are put back, so the handler sees the
// body as sent.
func formHasToken(r *http.Request) bool {
	if r.Body == nil || r.Body == http.NoBody {
		return false
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct != "application/x-www-form-urlencoded" {
		return false
	}
	buf, err := io.ReadAll(io.LimitReader(r.Body, maxPeek+1))
	r.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(buf), r.Body), r.Body}
	if err != nil || len(buf) > maxPeek || !bytes.Contains(buf, []byte("access_token")) {
		return false
	}
	vals, err := url.ParseQuery(string(buf))
	return err == nil && vals.Has("access_token")
}

// isToken68 checks RFC 6750 §2.1's b64token syntax.
func isToken68(s string) bool {
	i := 0
	for ; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/') {
			break
		}
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}

// Require returns middleware that lets a request through only with a valid
// token for this resource carrying every scope in scopes, directly or
// through Config.ScopeImplies. The token is then available through
// TokenFromContext. A token that lacks any of them gets one 403
// insufficient_scope challenge naming all of them in one scope value (RFC
// 6750 §3.1), so a client re-authorizes once, not once per missing scope.
func (v *Validator) Require(scopes ...string) func(http.Handler) http.Handler {
	scopes = withoutOfflineAccess(scopes)
	scope := strings.Join(scopes, " ")
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			raw, err := bearerToken(r)
			if err != nil {
				v.fail(w, err, scope)
				return
			}
			tok, err := v.Validate(r.Context(), raw)
			if err != nil {
				v.fail(w, err, scope)
				return
			}
			for _, s := range scopes {
				if !v.grants(tok, s) {
					v.challenge(w, http.StatusForbidden, "insufficient_scope", "the token lacks a scope this resource needs", scope)
					return
				}
			}
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, tok)))
		})
	}
}

// grants reports whether tok carries scope s or a scope that implies it.
func (v *Validator) grants(tok *Token, s string) bool {
	if tok.HasScope(s) {
		return true
	}
	if len(v.cfg.ScopeImplies) == 0 {
		return false
	}
	seen := map[string]bool{}
	todo := append([]string(nil), tok.Scopes...)
	for len(todo) > 0 {
		have := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if seen[have] {
			continue
		}
		seen[have] = true
		for _, implied := range v.cfg.ScopeImplies[have] {
			if implied == s {
				return true
			}
			todo = append(todo, implied)
		}
	}
	return false
}

func (v *Validator) fail(w http.ResponseWriter, err error, scope string) {
	var req errRequest
	switch {
	case errors.Is(err, errNoToken):
		// RFC 6750 §3.1: no error code when the request had no credentials.
		v.challenge(w, http.StatusUnauthorized, "", "", scope)
	case errors.As(err, &req):
		v.challenge(w, http.StatusBadRequest, "invalid_request", string(req), "")
	case errors.Is(err, ErrUnavailable):
		// Not the token's fault: a client must retry, not throw it away.
		w.Header().Set("Retry-After", "5")
		writeJSONError(w, http.StatusServiceUnavailable, "temporarily_unavailable", err.Error())
	default:
		v.challenge(w, http.StatusUnauthorized, "invalid_token", err.Error(), "")
	}
}

// challenge writes an RFC 6750 §3 / RFC 9728 §5.1 challenge. Descriptions
// are our own fixed strings, never the token, so they need no escaping
// beyond dropping quotes and backslashes.
func (v *Validator) challenge(w http.ResponseWriter, status int, code, desc, scope string) {
	var b strings.Builder
	b.WriteString("Bearer ")
	sep := ""
	param := func(k, val string) {
		b.WriteString(sep)
		b.WriteString(k)
		b.WriteString(`="`)
		b.WriteString(strings.NewReplacer(`"`, "", `\`, "").Replace(val))
		b.WriteString(`"`)
		sep = ", "
	}
	if code != "" {
		param("error", code)
	}
	if desc != "" {
		param("error_description", desc)
	}
	if scope != "" {
		param("scope", scope)
	}
	param("resource_metadata", v.metadataURL)
	w.Header().Set("WWW-Authenticate", b.String())
	if code == "" {
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(status)
		return
	}
	writeJSONError(w, status, code, desc)
}

func writeJSONError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

// MetadataURL is the URL of this resource's RFC 9728 metadata, the one
// sent in resource_metadata: the path-inserted form for a resource URL
// with a path.
func (v *Validator) MetadataURL() string { return v.metadataURL }

// MetadataPaths are the paths to mount ProtectedResourceMetadata at: the
// path-inserted location (for a resource with a path) and the root one.
func (v *Validator) MetadataPaths() []string { return append([]string(nil), v.metaPaths...) }

// ProtectedResourceMetadata serves the RFC 9728 §2 document. CORS is open
// so browser-based clients can read it.
func (v *Validator) ProtectedResourceMetadata() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		switch r.Method {
		case http.MethodGet, http.MethodHead:
		case http.MethodOptions:
			w.Header().Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
			w.WriteHeader(http.StatusNoContent)
			return
		default:
			w.Header().Set("Allow", "GET, HEAD, OPTIONS")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=3600")
		_, _ = w.Write(v.metadataJSON)
	})
}
