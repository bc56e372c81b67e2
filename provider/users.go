package provider

import (
	"errors"
	"io"
	"time"

	"github.com/google/uuid"

	"github.com/authzd/authz/provider/store"
)

// UserProfile is what a user says about themselves beyond the user name:
// the OpenID Connect standard claims name, email and email_verified (OIDC
// Core §5.1). email_verified without an email means nothing and is dropped.
type UserProfile struct {
	Name, Email   string
	EmailVerified bool
}

// NewUser makes a user ready to store: a fresh ID from r and the argon2id
// hash of password, which itself is never kept (house rule 6). `authz user
// create`, `serve --dev` and the tests all make users with it.
func NewUser(username, password string, p UserProfile, now time.Time, r io.Reader) (store.User, error) {
	if username == "" {
		return store.User{}, errors.New("the user name must not be empty")
	}
	hash, err := HashPassword(password, r)
	if err != nil {
		return store.User{}, err
	}
	id, err := uuid.NewRandomFromReader(r)
	if err != nil {
		return store.User{}, err
	}
	return store.User{ID: id.String(), Username: username, PasswordHash: hash, CreatedAt: now,
		Name: p.Name, Email: p.Email, EmailVerified: p.EmailVerified && p.Email != ""}, nil
}
