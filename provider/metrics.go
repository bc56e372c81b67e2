package provider

import (
	"context"
	"errors"
	"net/http"
	"net/http/pprof"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/authzd/authz/provider/oauth"
	"github.com/authzd/authz/provider/store"
)

// Causes of a 503 (authz_unavailable_total{cause}).
const (
	causeStore   = "store"   // the store is unreachable or failed transiently
	causeTimeout = "timeout" // a deadline ran out
	// causeBusy: this process's own bounded capacity (the password-hashing
	// or outbound-fetch slots) was full, as during a sign-in or fetch
	// flood; the database is not the place to look.
	causeBusy = "busy"
	// causeClientHost: a client's own host (its metadata document or
	// jwks_uri) could not be reached or said "not now", and no stored copy
	// could serve; neither the database nor this process is at fault.
	// Not "upstream": that is the sign-in identity provider here.
	causeClientHost = "client_host"
	causeOther      = "other"
)

// metrics are the Prometheus collectors of one Server, on a registry of its
// own (several servers in one process, as in tests, never collide). Every
// name is listed in README, "Operating authz".
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	tokens   *prometheus.CounterVec
	refresh  *prometheus.CounterVec
	logins   *prometheus.CounterVec
	// upstreamLogins: sign-ins through an upstream provider, by provider
	// (configured names only, so the cardinality is bounded) and outcome.
	upstreamLogins *prometheus.CounterVec
	registrations  *prometheus.CounterVec
	storeLatency   *prometheus.HistogramVec
	storeErrors    *prometheus.CounterVec
	unavailable    *prometheus.CounterVec
	audit          *prometheus.CounterVec
	clients        prometheus.Gauge
	liveGrants     prometheus.Gauge
}

func newMetrics(keyAges func() map[string]float64) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authz_http_requests_total", Help: "HTTP requests by route pattern, method and status.",
		}, []string{"route", "method", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "authz_http_request_duration_seconds", Help: "HTTP request latency by route pattern and method.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route", "method"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authz_token_requests_total", Help: "Token endpoint requests by grant type and outcome (ok or the OAuth error code).",
		}, []string{"grant_type", "outcome"}),
		refresh: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authz_refresh_rotations_total", Help: "Refresh-token exchanges by outcome: rotated, grace (a concurrent refresh inside the grace window), reuse_detected (the grant was revoked).",
		}, []string{"outcome"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authz_logins_total", Help: "Sign-in attempts by outcome: ok, failed, throttled.",
		}, []string{"outcome"}),
		upstreamLogins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authz_upstream_logins_total", Help: "Sign-ins through an upstream provider by provider and outcome: ok, failed.",
		}, []string{"provider", "outcome"}),
		registrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authz_client_registrations_total", Help: "Client registrations by path (dcr, metadata_document) and outcome (ok or the error code).",
		}, []string{"path", "outcome"}),
		storeLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "authz_store_operation_duration_seconds", Help: "Store call latency by operation.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"operation"}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authz_store_errors_total", Help: "Store calls that failed (not a domain answer such as not found) by operation and kind: unavailable or other.",
		}, []string{"operation", "kind"}),
		unavailable: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authz_unavailable_total", Help: "Responses answered 503 by Cause: store, timeout, busy, other.",
		}, []string{"cause"}),
		audit: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authz_audit_events_total", Help: "Audit events by event name.",
		}, []string{"event"}),
		clients: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "authz_clients", Help: "Registered clients, counted by the janitor at each tick.",
		}),
		liveGrants: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "authz_live_grants", Help: "Redeemed, unrevoked, unexpired grants, counted by the janitor at each tick.",
		}),
	}
	m.reg.MustRegister(m.requests, m.latency, m.tokens, m.refresh, m.logins, m.upstreamLogins, m.registrations,
		m.storeLatency, m.storeErrors, m.unavailable, m.audit, m.clients, m.liveGrants,
		keyAgeCollector{ages: keyAges, desc: prometheus.NewDesc("authz_signing_key_age_seconds",
			"Age of the key signing now, since it started signing, by purpose: access_token, or id_token:ALG for ID tokens of ALG.",
			[]string{"purpose"}, nil)},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

func (m *metrics) request(route, method string, status int, d time.Duration) {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodOptions, http.MethodPatch:
	default:
		method = "other" // bounded labels whatever clients send
	}
	m.requests.WithLabelValues(route, method, statusLabel(status)).Inc()
	m.latency.WithLabelValues(route, method).Observe(d.Seconds())
}

// outcome is "ok" for nil, else the OAuth error code err becomes.
func outcome(err error) string {
	if err == nil {
		return "ok"
	}
	oe, _ := asOAuthError(err)
	return oe.Code
}

// unavailableCause classifies a failure answered 503.
func unavailableCause(err error) string {
	switch {
	case errors.Is(err, errHashBusy), errors.Is(err, errFetchBusy):
		return causeBusy
	case errors.Is(err, errFetchUnreachable):
		// Before timeout: a fetch that timed out is the client's host.
		return causeClientHost
	case errors.Is(err, context.DeadlineExceeded):
		return causeTimeout
	case errors.Is(err, store.ErrUnavailable):
		return causeStore
	}
	return causeOther
}

// AdminHandler serves the operator's endpoints: Prometheus metrics at
// /metrics and the Go profiler at /debug/pprof/. It belongs on the admin
// listener (AUTHZ_ADMIN_ADDR, loopback by default), never on the public one:
// profiles and counters tell an attacker too much.
func (s *Server) AdminHandler() http.Handler {
	m := http.NewServeMux()
	m.Handle("/metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	m.HandleFunc("/debug/pprof/", pprof.Index)
	m.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	m.HandleFunc("/debug/pprof/profile", pprof.Profile)
	m.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	m.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return m
}

// updateCounts is the janitor job behind the authz_clients and
// authz_live_grants gauges: one cheap count per tick, not one per scrape.
func (s *Server) updateCounts(ctx context.Context, now time.Time) error {
	c, err := s.store.CountLive(ctx, now)
	if err != nil {
		return err
	}
	s.metrics.clients.Set(float64(c.Clients))
	s.metrics.liveGrants.Set(float64(c.LiveGrants))
	return nil
}

// keyAgeCollector is authz_signing_key_age_seconds: one series per key
// purpose, labelled as the key.rotated event's purpose detail and `authz
// keys list` name it. One metric with a label rather than a second one for
// ID tokens, so an existing alert on the metric's name covers the ID-token
// keys too, which are rotated by the same command and age the same way.
type keyAgeCollector struct {
	desc *prometheus.Desc
	ages func() map[string]float64
}

func (c keyAgeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c keyAgeCollector) Collect(ch chan<- prometheus.Metric) {
	for purpose, age := range c.ages() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, age, purpose)
	}
}

// signingKeyAges are authz_signing_key_age_seconds's values: how long the
// key signing now of each purpose (access tokens; ID tokens per algorithm
// in use) has been signing, from the keys this replica has loaded (a
// scrape never reads the store). A key never rotated grows old: alert on
// it. An ID-token algorithm no token has used yet has no key, and no
// series.
func (s *Server) signingKeyAges() map[string]float64 {
	out := map[string]float64{}
	if s.keys == nil {
		return out
	}
	st := s.keys.cur.Load()
	if st == nil {
		return out
	}
	now := s.opts.Now()
	out[store.PurposeAccessToken] = keyAge(st.signers, now)
	for alg, l := range st.idSigners {
		out[store.IDTokenPurpose(alg)] = keyAge(l, now)
	}
	return out
}

// keyAge is how long the newest key of list active at now has signed; 0
// when none is active yet.
func keyAge[S any](list []timed[S], now time.Time) float64 {
	for _, sg := range list {
		if !now.Before(sg.from) {
			return now.Sub(sg.from).Seconds()
		}
	}
	return 0
}

// countTokens counts token requests by grant type and outcome. The grant
// type is read back from the form the handler parsed, as a label only, and
// bounded to the types the server knows.
func (s *Server) countTokens(h func(http.ResponseWriter, *http.Request) error) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		err := h(w, r)
		gt := r.PostForm.Get("grant_type")
		if !slices.Contains(oauth.GrantTypes, gt) {
			gt = "other"
		}
		s.metrics.tokens.WithLabelValues(gt, outcome(err)).Inc()
		return err
	}
}

// Registration paths (authz_client_registrations_total{path}).
const (
	registrationDCR              = "dcr"               // RFC 7591 POST /oauth2/register
	registrationMetadataDocument = "metadata_document" // a client_id that is an https URL
)

// countRegistrations counts registrations through path by outcome.
func (s *Server) countRegistrations(path string, h func(http.ResponseWriter, *http.Request) error) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		err := h(w, r)
		s.metrics.registrations.WithLabelValues(path, outcome(err)).Inc()
		return err
	}
}

// documentRegistered counts a fetch of a client ID metadata document as a
// registration (path metadata_document) and records a good one as
// client.registered, or client.updated when it refreshed a known client.
func (s *Server) documentRegistered(ctx context.Context, c store.Client, known bool, err error) {
	result := "ok"
	var de *documentError
	switch {
	case errors.As(err, &de):
		result = oauth.CodeInvalidClientMetadata
	case err != nil:
		result = outcome(err)
	}
	s.metrics.registrations.WithLabelValues(registrationMetadataDocument, result).Inc()
	if err != nil {
		return
	}
	name := EventClientRegistered
	if known {
		name = EventClientUpdated
	}
	s.audit(ctx, ClientEvent(name, ActorClient, c))
}
