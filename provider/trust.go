package provider

import (
	"context"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/authzd/authz/internal/resourceid"
	"github.com/authzd/authz/provider/dcr"
	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/store"
)

// Trust (issue 11, STYLE rule 13): open registration makes anyone on the
// internet a client, so a client is trusted beyond what RFC 7591 lets
// anybody claim only when an administrator created it. Every rule below
// treats a client whose Trust is not store.TrustAdmin, an empty Trust
// included, as untrusted.

// trusted reports whether an administrator vouches for c.
func trusted(c store.Client) bool { return c.Trust == store.TrustAdmin }

// usedResolution is how stale a client's UsedAt may get before a use
// writes it again: the janitor's TTLs are a day and more, so one write a
// day per client is enough and keeps writes off the token path.
const usedResolution = 24 * time.Hour

// markUsed records that an untrusted client completed an authorization or
// used its grant, so the janitor keeps it (deleteStaleRegistrations). A
// failure is logged, never returned: the tokens are already issued.
func (s *Server) markUsed(ctx context.Context, c store.Client, now time.Time) {
	if trusted(c) || (!c.UsedAt.IsZero() && now.Sub(c.UsedAt) < usedResolution) {
		return
	}
	if err := s.store.MarkClientUsed(ctx, c.ID, now); err != nil {
		s.log.Warn("recording a client's use failed", "client_id", c.ID, "cause", err)
		return
	}
	// The cached copy is what the next requests see: without this, every
	// request of a busy client within ClientCacheTTL wrote again.
	s.clients.used(c.ID, now)
}

// deleteStaleRegistrations is the janitor's job that removes self-registered
// and metadata-document clients (store.SweptTrusts) that never completed an
// authorization within Options.RegistrationUnusedTTL, or have had no live
// grant for Options.RegistrationIdleTTL (issue 11: abandoned registrations
// must not pile up; anyone can publish documents at new URLs just as
// anyone can register). A swept document client is fetched again on its
// next request.
func (s *Server) deleteStaleRegistrations(ctx context.Context, now time.Time) error {
	deleted, err := s.store.DeleteStaleClients(ctx, now, s.opts.RegistrationUnusedTTL, s.opts.RegistrationIdleTTL)
	if err != nil {
		return err
	}
	for _, c := range deleted {
		// Gone on this replica at once, as after an RFC 7592 delete; other
		// replicas see it within ClientCacheTTL.
		s.clients.forget(c.ID)
		e := ClientEvent(EventClientDeleted, ActorSystem, c)
		e.Details["reason"] = "stale_registration"
		s.audit(ctx, e)
	}
	if len(deleted) > 0 {
		s.log.Info("deleted unused or idle self-registered and metadata-document clients", "count", len(deleted))
	}
	return nil
}

// allowedScopes is the set of scopes c may ask for, nil meaning every
// offered scope. An untrusted client without its own list is held to
// Options.RegistrationScopes, so an admin-only scope is never the default
// of a client anyone could have registered.
func (s *Server) allowedScopes(c store.Client) []string {
	if len(c.Metadata.Scopes) > 0 {
		return c.Metadata.Scopes
	}
	if trusted(c) {
		return nil
	}
	return s.opts.RegistrationScopes
}

// registrationPolicy is what an initial access token lets a registration
// have beyond the anonymous rules; the zero value is an anonymous one.
type registrationPolicy struct {
	allowGrants, scopes, resources []string
}

func policyOf(t store.InitialAccessToken) registrationPolicy {
	return registrationPolicy{allowGrants: t.AllowGrants, scopes: t.Scopes, resources: t.Resources}
}

// checkRegistration applies the rules for a client nobody vouches for to
// metadata that passed the RFC 7591 checks (CheckClientMetadata), and sets
// the administrator's allowances from the policy. Errors are *oauth.Error naming
// the field (RFC 7591 §3.2.2); the returned note says which requested
// scopes were not registered, for the response's notice.
func (s *Server) checkRegistration(m *store.ClientMetadata, p registrationPolicy) (note string, err error) {
	if err := s.checkRegisteredRedirects(m); err != nil {
		return "", err
	}
	// client_credentials makes tokens without any user's consent, so only
	// an administrator can hand it out (RFC 6749 §4.4, RFC 9700 §2.5).
	if slices.Contains(m.GrantTypes, oauth.GrantClientCredentials) && !slices.Contains(p.allowGrants, oauth.GrantClientCredentials) {
		return "", oauth.New(oauth.CodeInvalidClientMetadata, "grant_types: client_credentials needs an initial access token from an administrator that allows it")
	}
	if len(p.scopes) > 0 {
		if len(m.Scopes) == 0 {
			m.Scopes = slices.Clone(p.scopes)
		} else if extra := without(m.Scopes, p.scopes); len(extra) > 0 {
			return "", oauth.New(oauth.CodeInvalidClientMetadata, "scope: not allowed by the initial access token: "+strings.Join(extra, " "))
		}
	} else if note, err = s.narrowRegistrationScopes(m); err != nil {
		return "", err
	}
	m.Resources = nil
	for _, r := range p.resources {
		n, err := resourceid.Canonical(r)
		if err != nil {
			return "", oauth.New(oauth.CodeInvalidClientMetadata, "resources: the initial access token's policy names a bad resource: "+err.Error())
		}
		m.Resources = append(m.Resources, n)
	}
	m.Introspect = false
	return note, nil
}

// narrowRegistrationScopes drops the admin-only scopes from the scope list
// of a client nobody vouches for, instead of refusing the registration:
// RFC 7591 §3.2.1 lets the server replace requested values, and the
// response carries the registered scope. MCP clients register with every
// scope a resource's RFC 9728 document lists, and refusing them means
// they never connect. Registering fewer scopes is always safe; a request
// of nothing but admin-only scopes is still refused, since nothing it
// asked for could be registered.
func (s *Server) narrowRegistrationScopes(m *store.ClientMetadata) (string, error) {
	dropped := s.adminOnly(m.Scopes)
	if len(dropped) == 0 {
		return "", nil
	}
	m.Scopes = without(m.Scopes, dropped)
	if len(m.Scopes) == 0 {
		return "", oauth.New(oauth.CodeInvalidClientMetadata, "scope: reserved for clients an administrator creates: "+strings.Join(dropped, " "))
	}
	return "not registered, reserved for clients an administrator creates: " + strings.Join(dropped, " "), nil
}

// registrableScopes are the offered scopes a self-registered client can
// obtain, by the one rule registration applies (adminOnly): what authz's
// own RFC 9728 documents list, so a client asking for everything listed
// gets everything it asked for.
func (s *Server) registrableScopes() []string {
	return without(s.opts.Scopes, s.adminOnly(s.opts.Scopes))
}

// checkRegisteredRedirects holds a self-registered client's private-use
// redirect schemes to the reverse-DNS form or the operator's list
// (RFC 8252 §7.1): a made-up single-word scheme may belong to any
// application on the user's machine.
func (s *Server) checkRegisteredRedirects(m *store.ClientMetadata) error {
	for _, u := range m.RedirectURIs {
		if err := dcr.CheckRegisteredRedirectURI(u, s.opts.RedirectSchemes); err != nil {
			return err
		}
	}
	return nil
}

// adminOnly returns the scopes among requested that the server offers but
// does not let self-registered clients ask for. Scopes the server does not
// offer at all are left to the authorization request to refuse.
func (s *Server) adminOnly(requested []string) []string {
	var out []string
	for _, sc := range requested {
		if sc == ScopeOfflineAccess {
			continue // about the grant, not a permission (see scope.go)
		}
		if slices.Contains(s.opts.Scopes, sc) && !slices.Contains(s.opts.RegistrationScopes, sc) {
			out = append(out, sc)
		}
	}
	return out
}

// keepAllowances applies RFC 7592 §2.2's "the server MAY replace values" to
// an update of client old: the administrator's allowances (resources, the
// introspection right, the scope list and client_credentials) are never the
// client's to widen. A requested scope list is intersected with the current
// one; none requested keeps it. The returned note says what was kept, for
// the response.
func (s *Server) keepAllowances(old store.Client, m *store.ClientMetadata) (string, error) {
	if err := s.checkRegisteredRedirects(m); err != nil {
		return "", err
	}
	m.Resources, m.Introspect = old.Metadata.Resources, old.Metadata.Introspect
	if slices.Contains(m.GrantTypes, oauth.GrantClientCredentials) && !slices.Contains(old.Metadata.GrantTypes, oauth.GrantClientCredentials) {
		return "", oauth.New(oauth.CodeInvalidClientMetadata, "grant_types: client_credentials cannot be added by an update; ask an administrator")
	}
	note := "scope and resource allowances are set by the administrator: an update can narrow scope, never widen it"
	switch {
	case len(m.Scopes) == 0:
		m.Scopes = old.Metadata.Scopes
	case len(old.Metadata.Scopes) > 0:
		if dropped := without(m.Scopes, old.Metadata.Scopes); len(dropped) > 0 {
			note += "; not granted: " + strings.Join(dropped, " ")
		}
		m.Scopes = intersect(m.Scopes, old.Metadata.Scopes)
		if len(m.Scopes) == 0 {
			return "", oauth.New(oauth.CodeInvalidClientMetadata, "scope: none of the requested scopes is allowed for this client")
		}
	default:
		// No list yet: the client is held to the registration scopes,
		// narrowed exactly as at registration.
		narrowed, err := s.narrowRegistrationScopes(m)
		if err != nil {
			return "", err
		}
		if narrowed != "" {
			note += "; " + narrowed
		}
	}
	return note, nil
}

// refusedRedirect reports whether a registered redirect URI uses a scheme
// no client may use any longer (one registered before the denylist grew).
func refusedRedirect(uri string) bool {
	u, err := url.Parse(uri)
	return err != nil || dcr.DeniedScheme(u.Scheme)
}

// without returns the elements of a not in b.
func without(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// intersect returns the elements of a also in b, in a's order.
func intersect(a, b []string) []string {
	var out []string
	for _, x := range a {
		if slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}
