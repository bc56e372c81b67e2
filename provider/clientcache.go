package provider

import (
	"bytes"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/authzd/authz/provider/store"
)

// ClientCacheTTL bounds how stale a client seen by the token and
// authorization endpoints may be on a replica that did not make the
// change: a client deleted, updated or given a new secret elsewhere
// (another replica, `authz client …`) is seen within this long. The
// replica that makes an RFC 7592 change, or whose janitor deletes a stale
// registration, drops its entry at once. Issue 13:
// a client lookup was one round trip of every token request and of every
// authorization request.
const ClientCacheTTL = 2 * time.Second

// clientCacheMax bounds the memory an open registration endpoint can make
// the cache hold.
const clientCacheMax = 4096

// clientCache is a per-process, short-lived cache of client records for
// the token endpoint and the authorization endpoint (its GET, the consent
// POST, and the sign-in page's naming of the app). Only found clients are kept: a client registered on
// another replica is usable here at once. load is Server.lookupClient, so
// a metadata-document client is fetched as it would be without the cache.
type clientCache struct {
	load func(ctx context.Context, id string) (store.Client, error)
	now  func() time.Time

	mu sync.Mutex
	m  map[string]cachedClient
}

type cachedClient struct {
	c       store.Client
	fetched time.Time
}

func newClientCache(load func(context.Context, string) (store.Client, error), now func() time.Time) *clientCache {
	return &clientCache{load: load, now: now, m: map[string]cachedClient{}}
}

// get returns the client from the cache while fresh (cached true), else
// from the store.
func (cc *clientCache) get(ctx context.Context, id string) (c store.Client, cached bool, err error) {
	now := cc.now()
	cc.mu.Lock()
	e, ok := cc.m[id]
	cc.mu.Unlock()
	if ok && now.Sub(e.fetched) < ClientCacheTTL && !now.Before(e.fetched) {
		return cloneClient(e.c), true, nil
	}
	c, err = cc.load(ctx, id)
	if err != nil {
		cc.forget(id)
		return store.Client{}, false, err
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if len(cc.m) >= clientCacheMax {
		for k, v := range cc.m {
			if now.Sub(v.fetched) >= ClientCacheTTL {
				delete(cc.m, k)
			}
		}
		if len(cc.m) >= clientCacheMax {
			clear(cc.m)
		}
	}
	cc.m[id] = cachedClient{c: cloneClient(c), fetched: now}
	return c, false, nil
}

// cloneClient copies what a caller could change in place, so no request
// shares its client's slices with the cache or another request.
func cloneClient(c store.Client) store.Client {
	c.SecretHash, c.RegistrationTokenHash = bytes.Clone(c.SecretHash), bytes.Clone(c.RegistrationTokenHash)
	m := &c.Metadata
	m.RedirectURIs, m.GrantTypes, m.ResponseTypes = slices.Clone(m.RedirectURIs), slices.Clone(m.GrantTypes), slices.Clone(m.ResponseTypes)
	m.Scopes, m.Resources, m.Contacts = slices.Clone(m.Scopes), slices.Clone(m.Resources), slices.Clone(m.Contacts)
	m.PostLogoutRedirectURIs = slices.Clone(m.PostLogoutRedirectURIs)
	m.JWKS = bytes.Clone(m.JWKS)
	return c
}

// used records in the cached entry (if any) that this process wrote id's
// use at at, so the entry's next hits do not write it again.
func (cc *clientCache) used(id string, at time.Time) {
	cc.mu.Lock()
	if e, ok := cc.m[id]; ok {
		e.c.UsedAt = at
		cc.m[id] = e
	}
	cc.mu.Unlock()
}

// forget drops id, after this process changed or deleted it.
func (cc *clientCache) forget(id string) {
	cc.mu.Lock()
	delete(cc.m, id)
	cc.mu.Unlock()
}
