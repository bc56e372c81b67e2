package memory

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"time"

	"github.com/authzd/authz/provider/store"
)

// SignInUpstream holds the mutex for the whole decision, as the PostgreSQL
// store holds a per-identity advisory lock.
func (s *Store) SignInUpstream(_ context.Context, in store.UpstreamSignIn, now time.Time) (store.User, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := identityKey{in.Provider, in.Subject}
	if id, ok := s.identities[key]; ok {
		u := s.users[id.UserID]
		copyProfile(&u, in.Profile)
		s.users[u.ID] = u
		return u, false, nil
	}
	if in.LinkVerifiedEmail && in.Profile.Email != "" {
		var match []string
		for _, u := range s.users {
			if u.EmailVerified && strings.EqualFold(u.Email, in.Profile.Email) {
				match = append(match, u.ID)
			}
		}
		if len(match) == 1 {
			u := s.users[match[0]]
			copyProfile(&u, in.Profile)
			s.users[u.ID] = u
			s.identities[key] = store.Identity{Provider: in.Provider, Subject: in.Subject, UserID: u.ID, CreatedAt: norm(now)}
			return u, false, nil
		}
	}
	u := in.Profile
	if _, ok := s.users[u.ID]; ok {
		return store.User{}, false, store.ErrAlreadyExists
	}
	if _, ok := s.userByName[u.Username]; ok {
		return store.User{}, false, store.ErrAlreadyExists
	}
	u.CreatedAt = norm(u.CreatedAt)
	s.users[u.ID] = u
	s.userByName[u.Username] = u.ID
	s.identities[key] = store.Identity{Provider: in.Provider, Subject: in.Subject, UserID: u.ID, CreatedAt: norm(now)}
	return u, true, nil
}

// copyProfile writes the copied fields (those the provider layer filled).
func copyProfile(u *store.User, p store.User) {
	if p.Name != "" {
		u.Name = p.Name
	}
	if p.Email != "" {
		u.Email, u.EmailVerified = p.Email, p.EmailVerified
	}
}

func (s *Store) ListIdentities(_ context.Context, userID string) ([]store.Identity, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []store.Identity
	for _, in := range s.identities {
		if in.UserID == userID {
			out = append(out, in)
		}
	}
	slices.SortFunc(out, func(a, b store.Identity) int {
		return cmp.Or(cmp.Compare(a.Provider, b.Provider), cmp.Compare(a.Subject, b.Subject))
	})
	return out, nil
}

func (s *Store) SetUserProfile(_ context.Context, id, name, email string, emailVerified bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[id]
	if !ok {
		return store.ErrNotFound
	}
	u.Name, u.Email, u.EmailVerified = name, email, emailVerified
	s.users[id] = u
	return nil
}
