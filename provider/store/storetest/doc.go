// Package storetest is the conformance suite every store.Store
// implementation must pass: CRUD, expiry at the exact boundary, cascades,
// single-use codes, refresh-token rotation with its grace window, and
// concurrent redemption. The memory and postgres stores both run it, so the
// development default cannot drift from production (house rule 4).
package storetest
