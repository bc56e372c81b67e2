package middleware

import (
	"sync"
	"time"
)

// cache is a bounded map from a token (or its digest) to what validating
// it found. Entries expire; when the map is full, expired entries go first
// and then arbitrary ones, so an attacker sending many distinct tokens can
// slow the cache down but never grow it.
type cache[K comparable] struct {
	mu  sync.RWMutex
	m   map[K]cacheEntry
	max int
}

type cacheEntry struct {
	tok   *Token // nil: the token is not valid (negative entry)
	kid   string // signing key; the entry dies with the key
	until time.Time
}

func (c *cache[K]) init(max int) {
	c.max = max
	if max > 0 {
		c.m = make(map[K]cacheEntry, min(max, 1024))
	}
}

func (c *cache[K]) get(k K, now time.Time) (cacheEntry, bool) {
	if c.max <= 0 {
		return cacheEntry{}, false
	}
	c.mu.RLock()
	e, ok := c.m[k]
	c.mu.RUnlock()
	if !ok || !now.Before(e.until) {
		return cacheEntry{}, false
	}
	return e, true
}

func (c *cache[K]) put(k K, e cacheEntry, now time.Time) {
	if c.max <= 0 || !now.Before(e.until) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		for key, old := range c.m {
			if !now.Before(old.until) {
				delete(c.m, key)
			}
		}
		for key := range c.m {
			if len(c.m) < c.max*3/4 {
				break
			}
			delete(c.m, key)
		}
	}
	c.m[k] = e
}

func (c *cache[K]) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
