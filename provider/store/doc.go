// Package store defines the persistence contract of the authorization server:
// the model types, the Store interface named by domain operations, and the
// sentinel errors every implementation returns.
//
// Operations that must be atomic (single-use codes, refresh rotation, grant
// revocation) are single methods that carry their own transaction; callers
// never manage transactions. Every method that depends on the current time
// takes it as an argument: implementations never read a clock.
package store
