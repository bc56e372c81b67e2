package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/authzd/authz/provider/dcr"
	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/store"
)

// Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document;
// MCP authorization, "Client ID Metadata Documents"): a client_id that is
// an https URL names a JSON document, published by the client, that is its
// registration. The document is fetched through the outbound fetcher (public
// addresses only, no redirects), checked, and kept as a client row with
// trust metadata-document, so grants keep their foreign keys, until its
// HTTP cache lifetime (bounded to [minDocumentTTL, maxDocumentTTL]) ends.

const (
	maxDocumentBytes = 5 << 10
	minDocumentTTL   = 5 * time.Minute
	maxDocumentTTL   = 24 * time.Hour
)

// documentError is a metadata document that cannot be used; the message
// says which rule it broke. It is shown on the authorization page and is
// invalid_client at the token endpoint.
type documentError struct{ rule string }

func (e *documentError) Error() string { return "client metadata document: " + e.rule }

func docErr(format string, args ...any) *documentError {
	return &documentError{fmt.Sprintf(format, args...)}
}

// isDocumentClientID reports whether client_id is meant as a metadata
// document URL (https). checkDocumentURL then says whether it is a valid one.
func isDocumentClientID(id string) bool {
	return len(id) > len("https://") && strings.EqualFold(id[:len("https://")], "https://")
}

// checkDocumentURL applies the draft's rules for the client_id URL (§3): https,
// a path, no fragment, no user information, no "." or ".." segments.
func checkDocumentURL(id string) error {
	if strings.Contains(id, "#") {
		return docErr("the client_id URL must not have a fragment")
	}
	u, err := url.Parse(id)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.Opaque != "" {
		return docErr("the client_id must be an https URL")
	}
	if u.User != nil {
		return docErr("the client_id URL must not carry user information")
	}
	if u.Path == "" || u.Path == "/" {
		return docErr("the client_id URL must have a path")
	}
	for _, seg := range strings.Split(u.EscapedPath(), "/") {
		if seg == "." || seg == ".." || strings.EqualFold(seg, "%2e") || strings.EqualFold(seg, "%2e%2e") ||
			strings.EqualFold(seg, ".%2e") || strings.EqualFold(seg, "%2e.") {
			return docErr("the client_id URL must not have . or .. path segments")
		}
	}
	return nil
}

// lookupClient finds the client a request names: a metadata-document
// client for an https client_id (when enabled), else a stored client.
func (s *Server) lookupClient(ctx context.Context, id string) (store.Client, error) {
	if s.opts.DisableClientMetadataDocuments || !isDocumentClientID(id) {
		return s.store.GetClient(ctx, id)
	}
	if err := checkDocumentURL(id); err != nil {
		return store.Client{}, err
	}
	now := s.opts.Now()
	c, err := s.store.GetClient(ctx, id)
	switch {
	case err == nil && (c.Trust != store.TrustMetadataDocument || now.Before(c.DocumentExpiresAt)):
		return c, nil
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return store.Client{}, err
	}
	known := err == nil
	if !known {
		// A new document makes a client row, as a registration does: it
		// counts against the client IP's registration limit, so nobody
		// can fill the database by publishing documents.
		if ri := infoFrom(ctx); ri != nil {
			if err := s.registrationAllowedFrom(ctx, ri.ip); err != nil {
				return store.Client{}, err
			}
		}
	}
	// A row at most staleIfError past its lifetime is used as
	// revalidate.go says: at once while a refresh runs or its host is known
	// to fail (RFC 5861 §3 stale-while-revalidate; the refresh then runs in
	// the background), or after a refresh, made only
	// if a fetch slot is free at once, failed for a reason that is not the
	// document's: no free slot (others' fetches hold them), or the
	// document's host unreachable or saying "not now" (RFC 5861 §4
	// stale-if-error; RFC 9111 §4.2.4 lets a cache serve stale when it
	// cannot reach the origin). A bad answer (404, an invalid document) is
	// the document's: the row does not serve again.
	if known && now.Before(c.DocumentExpiresAt.Add(staleIfError)) && s.revalidate.usable(id) {
		var fresh store.Client
		useCopy, err := s.useStale(ctx, id, now, func(ctx context.Context, background bool) (err error) {
			get, at := s.fetch.tryGet, now
			if background {
				get, at = s.fetch.get, s.opts.Now()
			}
			fresh, err = s.fetchDocumentClient(ctx, id, at, get)
			s.documentRefreshed(ctx, fresh, err)
			return err
		}, "client metadata document unreachable, using the stored copy",
			"client_id", id, "expired", c.DocumentExpiresAt)
		if useCopy {
			return c, nil
		}
		return fresh, err
	}
	fresh, err := s.fetchDocumentClient(ctx, id, now, s.fetch.get)
	s.documentRegistered(ctx, fresh, known, err)
	if err == nil {
		s.revalidate.succeeded(id)
	}
	return fresh, err
}

// documentRefreshed records the refresh of a stored document client; a
// transient failure (the stored copy serves on) is not a registration's
// outcome.
func (s *Server) documentRefreshed(ctx context.Context, fresh store.Client, err error) {
	if retryableFetch(err) || ctx.Err() != nil {
		return
	}
	s.documentRegistered(ctx, fresh, true, err)
}

// fetchDocumentClient fetches (with get), checks and stores the document
// at id. A failure is never stored; the fetcher remembers it briefly. No
// free fetch slot (errFetchBusy) and a host that could not be reached or
// said "not now" (errFetchUnreachable) are 503s, never a documentError:
// only a bad answer is the document's fault.
func (s *Server) fetchDocumentClient(ctx context.Context, id string, now time.Time,
	get func(context.Context, string, int64) (fetched, error)) (store.Client, error) {
	f, err := get(ctx, id, maxDocumentBytes)
	if err != nil {
		var de *documentError
		if errors.As(err, &de) {
			return store.Client{}, de
		}
		if retryableFetch(err) {
			return store.Client{}, err
		}
		return store.Client{}, docErr("it could not be fetched: %s", fetchRefusal(err))
	}
	m, err := parseDocument(id, f.body)
	if err == nil {
		// Anyone can publish a document, so it is held to exactly the
		// rules of an anonymous RFC 7591 registration: registration
		// scopes (admin-only ones dropped, by the same code), private-use
		// schemes in reverse-DNS form or from the operator's list, no
		// allowances.
		if _, rerr := s.checkRegistration(&m, registrationPolicy{}); rerr != nil {
			err = docErr("%s", dcrDescription(rerr))
		}
	}
	if err != nil {
		s.fetch.remember(id, err)
		return store.Client{}, err
	}
	c := store.Client{
		ID: id, Trust: store.TrustMetadataDocument, Metadata: m,
		DocumentExpiresAt: now.Add(documentTTL(f.header, now)), CreatedAt: now, UpdatedAt: now,
	}
	if err := s.store.SaveMetadataDocumentClient(ctx, c); err != nil {
		if errors.Is(err, store.ErrAlreadyExists) {
			return store.Client{}, docErr("the client_id is already taken by another client")
		}
		return store.Client{}, err
	}
	s.log.Info("client metadata document fetched", "client_id", id, "expires", c.DocumentExpiresAt)
	return c, nil
}

// fetchRefusal says why a fetch failed for good, in words fit for anyone:
// the description reaches whoever named the URL (a page, invalid_client).
// The fetcher's own messages say only what the URL's server answered (a
// status, a redirect, the size); a refused address or a name that does not
// exist is said without the address it resolved to or the resolver asked,
// which would otherwise tell anyone this server's view of internal names.
func fetchRefusal(err error) string {
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, errRefusedAddress):
		return "its host is not a public internet address"
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		return "its host name does not exist"
	case errors.As(err, &dnsErr):
		return "its host name could not be resolved"
	}
	return strings.TrimPrefix(err.Error(), errFetch.Error()+": ")
}

// parseDocument checks a fetched document (draft §4) and applies the
// registration rules and interop profile (provider/dcr), as for RFC 7591.
func parseDocument(id string, body []byte) (store.ClientMetadata, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil || raw == nil {
		return store.ClientMetadata{}, docErr("it is not a JSON object")
	}
	var docID string
	if err := json.Unmarshal(raw["client_id"], &docID); err != nil || docID == "" {
		return store.ClientMetadata{}, docErr("client_id is missing")
	}
	// Simple string comparison (draft §4.1; RFC 3986 §6.2.1): no
	// normalisation, so one document cannot speak for another URL.
	if docID != id {
		return store.ClientMetadata{}, docErr("client_id in the document (%q) is not the URL it was fetched from", docID)
	}
	for _, f := range []string{"client_secret", "client_secret_expires_at"} {
		if _, ok := raw[f]; ok {
			return store.ClientMetadata{}, docErr("%s must not appear: a published document cannot hold a shared secret", f)
		}
	}
	d, err := dcr.Decode(bytes.NewReader(body))
	if err != nil {
		return store.ClientMetadata{}, docErr("%s", dcrDescription(err))
	}
	switch d.TokenEndpointAuthMethod {
	case oauth.AuthClientSecretBasic, oauth.AuthClientSecretPost, "client_secret_jwt":
		return store.ClientMetadata{}, docErr("token_endpoint_auth_method %s uses a shared secret, which a published document cannot hold", d.TokenEndpointAuthMethod)
	case "":
		if len(d.TokenEndpointAuthMethodsSupported) == 0 {
			d.TokenEndpointAuthMethod = oauth.AuthNone
		}
	}
	if d.ClientName == "" {
		return store.ClientMetadata{}, docErr("client_name is missing")
	}
	if len(d.RedirectURIs) == 0 {
		return store.ClientMetadata{}, docErr("redirect_uris is missing")
	}
	// A document client acts for users only; client_credentials needs an
	// administrator's trust.
	d.GrantTypes = slices.DeleteFunc(d.GrantTypes, func(g string) bool { return g == oauth.GrantClientCredentials })
	if err := d.Normalize(); err != nil {
		return store.ClientMetadata{}, docErr("%s", dcrDescription(err))
	}
	var m store.ClientMetadata
	fromDCR(&m, d)
	return m, nil
}

func dcrDescription(err error) string {
	var de *oauth.Error
	if errors.As(err, &de) {
		return de.Description
	}
	return err.Error()
}

// documentTTL is how long a fetched document is used: its HTTP cache
// lifetime (RFC 9111 §4.2.1: max-age, else Expires − Date), bounded to
// [minDocumentTTL, maxDocumentTTL]. no-store and no-cache get the minimum:
// the row must exist for the grant's sake, and is re-fetched soon.
func documentTTL(h http.Header, now time.Time) time.Duration {
	ttl := time.Duration(0)
	found := false
	for _, dir := range strings.Split(h.Get("Cache-Control"), ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(strings.ToLower(dir)), "=")
		switch k {
		case "no-store", "no-cache":
			return minDocumentTTL
		case "max-age":
			if n, err := strconv.ParseInt(strings.Trim(v, `"`), 10, 64); err == nil && n >= 0 {
				ttl, found = time.Duration(min(n, int64(maxDocumentTTL/time.Second)))*time.Second, true
			}
		}
	}
	if !found {
		if exp, err := http.ParseTime(h.Get("Expires")); err == nil {
			base := now
			if d, err := http.ParseTime(h.Get("Date")); err == nil {
				base = d
			}
			ttl = exp.Sub(base)
		}
	}
	return min(max(ttl, minDocumentTTL), maxDocumentTTL)
}
