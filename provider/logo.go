package provider

import (
	"context"
	"encoding/base64"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// Client logos on the consent page. The logo_uri is the client's choice, so
// the browser never loads it: the server fetches it through the outbound
// client (public addresses only, short timeouts), accepts only a small
// raster image (PNG, JPEG, GIF, WebP, sniffed from the bytes, never SVG,
// which can carry script), and inlines it as a data: URI, so the page
// keeps its CSP (img-src 'self' data:) and the user's browser tells the
// client's host nothing. A logo that cannot be had is simply not shown.

const (
	maxLogoBytes   = 64 << 10
	logoTimeout    = 3 * time.Second
	logoCacheTTL   = 10 * time.Minute // failures too, so a slow host costs one wait
	maxLogoEntries = 512
)

type logoEntry struct {
	data template.URL // "" when the logo could not be used
	at   time.Time
}

type logoCache struct {
	mu sync.Mutex
	m  map[string]logoEntry
}

var logoTypes = map[string]bool{"image/png": true, "image/jpeg": true, "image/gif": true, "image/webp": true}

// clientLogo returns the client's logo as a data: URI, or "".
func (s *Server) clientLogo(ctx context.Context, uri string) template.URL {
	if u, err := url.Parse(uri); err != nil || u.Scheme != "https" || u.Host == "" {
		return ""
	}
	now := s.opts.Now()
	s.logos.mu.Lock()
	if e, ok := s.logos.m[uri]; ok && now.Sub(e.at) < logoCacheTTL {
		s.logos.mu.Unlock()
		return e.data
	}
	s.logos.mu.Unlock()

	data, keep := s.fetchLogo(ctx, uri)
	if !keep {
		return data
	}
	s.logos.mu.Lock()
	if s.logos.m == nil || len(s.logos.m) >= maxLogoEntries {
		s.logos.m = map[string]logoEntry{}
	}
	s.logos.m[uri] = logoEntry{data: data, at: now}
	s.logos.mu.Unlock()
	return data
}

// fetchLogo fetches the logo at uri; keep is false when no fetch slot came
// free: that is this server's condition, not the logo's, so the empty
// answer is not cached and the next page tries again.
func (s *Server) fetchLogo(ctx context.Context, uri string) (data template.URL, keep bool) {
	ctx, cancel := context.WithTimeout(ctx, logoTimeout)
	defer cancel()
	got, err := s.fetch.get(ctx, uri, maxLogoBytes)
	if err != nil {
		s.log.DebugContext(ctx, "client logo not fetched", "logo_uri", uri, "cause", err)
		return "", !errors.Is(err, errFetchBusy)
	}
	ct := http.DetectContentType(got.body)
	if !logoTypes[ct] {
		return "", true
	}
	// template.URL: a data: URI we built from sniffed raster bytes.
	return template.URL("data:" + ct + ";base64," + base64.StdEncoding.EncodeToString(got.body)), true
}
