package provider

import (
	"errors"
	"net/http"
	"time"

	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/store"
)

type appRow struct {
	ID, ClientID, ClientName, Granted, LastUsed string
	Scopes, Resources                           []string
}

type appsPage struct {
	pageData
	Username, CSRF, Action, LogoutAction string
	Grants                               []appRow
}

// handleApps lists the signed-in user's grants (one per device or install)
// and revokes one on POST; revoking ends every token of that grant.
func (s *Server) handleApps(w http.ResponseWriter, r *http.Request) {
	user, ok, err := s.currentUser(r)
	if err != nil {
		s.pageError(w, r, "connected apps: session lookup failed", err)
		return
	}
	if !ok {
		http.Redirect(w, r, s.loginURL(s.issuerPath+PathApps), http.StatusSeeOther)
		return
	}
	if r.Method == http.MethodPost {
		if err := r.ParseForm(); err != nil || !s.checkCSRF(r, r.PostForm) {
			s.renderError(w, http.StatusBadRequest, "Form expired", "Reload the page and try again.", oauth.CodeInvalidRequest)
			return
		}
		if err := s.revokeUserGrant(r, user, r.PostForm.Get("grant_id")); err != nil {
			s.pageError(w, r, "connected apps: revoke failed", err)
			return
		}
		http.Redirect(w, r, s.issuerPath+PathApps, http.StatusSeeOther)
		return
	}
	grants, err := s.store.ListUserGrants(r.Context(), user.ID, s.opts.Now())
	if err != nil {
		s.pageError(w, r, "connected apps: listing grants failed", err)
		return
	}
	csrf, err := s.csrfToken(w, r)
	if err != nil {
		s.pageError(w, r, "connected apps: CSRF token", err)
		return
	}
	page := appsPage{
		pageData: pageData{Title: "Connected apps", Wide: true}, Username: user.Username, CSRF: csrf,
		Action: s.issuerPath + PathApps, LogoutAction: s.issuerPath + PathLogout,
	}
	names := map[string]string{}
	for _, g := range grants {
		name, ok := names[g.ClientID]
		if !ok {
			name = g.ClientID
			if c, err := s.store.GetClient(r.Context(), g.ClientID); err == nil {
				name = clientDisplayName(c)
			}
			names[g.ClientID] = name
		}
		page.Grants = append(page.Grants, appRow{
			ID: g.ID, ClientID: g.ClientID, ClientName: name, Scopes: g.Scopes, Resources: g.Resources,
			Granted: g.CreatedAt.UTC().Format(time.DateTime + " UTC"), LastUsed: g.LastUsedAt.UTC().Format(time.DateTime + " UTC"),
		})
	}
	s.render(w, http.StatusOK, "apps", page)
}

// revokeUserGrant revokes a grant if it belongs to user, and forgets the
// user's consent to its client, so the next authorization asks again
// (revoking an app means "stop trusting it"). Another user's grant id is
// ignored, as is an unknown one. The owner check, the revocation and the
// forgetting are one store operation (house rule 11): no revocation can
// slip between a check and a write, and no consent survives a revocation.
func (s *Server) revokeUserGrant(r *http.Request, user store.User, grantID string) error {
	if grantID == "" {
		return nil
	}
	g, err := s.store.RevokeUserGrant(r.Context(), user.ID, grantID, s.opts.Now())
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	s.audit(r.Context(), store.AuditEvent{Name: EventGrantRevoked, Actor: ActorUser, Subject: user.ID, ClientID: g.ClientID,
		Details: map[string]string{"grant_id": g.ID, "reason": "user"}})
	return nil
}
