package provider

import (
	"context"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"time"
)

// Request ids, the access log and the HTTP metrics (README, "Operating
// authz"). Every request passes through observe once, outermost, so each
// of them is decided in one place.

type requestInfoKey struct{}

// requestInfo is what the layers of one request tell the access log and
// the metrics. Only the request's own goroutine writes it.
type requestInfo struct {
	id       string
	ip       netip.Addr // the client IP (README, "Scaling out"); formatted only where used
	route    string     // the route's pattern, never the raw path (bounded labels)
	clientID string     // set once the client is known
	cause    string     // why the request was answered 503
}

func infoFrom(ctx context.Context) *requestInfo {
	ri, _ := ctx.Value(requestInfoKey{}).(*requestInfo)
	return ri
}

// requestID returns the id of the request ctx belongs to, or "".
func requestID(ctx context.Context) string {
	if ri := infoFrom(ctx); ri != nil {
		return ri.id
	}
	return ""
}

// setClientID records the client a request acts for, for the access log.
func setClientID(ctx context.Context, id string) {
	if ri := infoFrom(ctx); ri != nil {
		ri.clientID = id
	}
}

// setCause records why a request is answered 503 (authz_unavailable_total).
func setCause(ctx context.Context, cause string) {
	if ri := infoFrom(ctx); ri != nil && ri.cause == "" {
		ri.cause = cause
	}
}

// HeaderRequestID carries the request id in both directions.
const HeaderRequestID = "X-Request-ID"

// validRequestID accepts what a proxy would reasonably send: 1 to 128
// characters of [A-Za-z0-9._:-]. Anything else is replaced, so a client
// cannot inject text into the logs.
func validRequestID(v string) bool {
	if v == "" || len(v) > 128 {
		return false
	}
	for _, c := range []byte(v) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-' || c == ':') {
			return false
		}
	}
	return true
}

// trustedPeer reports whether the request comes straight from a configured
// proxy, whose X-Request-ID is then kept.
func (s *Server) trustedPeer(r *http.Request) bool {
	peer, ok := parseHop(r.RemoteAddr)
	return ok && s.trustedProxy(peer)
}

func (s *Server) newRequestID() string {
	var b [16]byte
	if _, err := io.ReadFull(s.opts.Rand, b[:]); err != nil {
		return "unavailable"
	}
	return hex.EncodeToString(b[:])
}

// statusWriter remembers the status a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// observe gives the request its id (kept from a trusted proxy, else new),
// returns it in X-Request-ID, and after the handler writes one access-log
// line and the HTTP metrics. Latency is measured with the process's
// monotonic clock, not Options.Now: it is an observation, not a decision.
func (s *Server) observe(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get(HeaderRequestID)
		if !validRequestID(id) || !s.trustedPeer(r) {
			id = s.newRequestID()
		}
		// One allocation for both: they live exactly as long as the request.
		st := &struct {
			info requestInfo
			w    statusWriter
		}{info: requestInfo{id: id, route: "unmatched", ip: s.clientIP(r)}, w: statusWriter{ResponseWriter: w}}
		ri, sw := &st.info, &st.w
		w.Header().Set(HeaderRequestID, id)
		r = r.WithContext(context.WithValue(r.Context(), requestInfoKey{}, ri))
		defer func() {
			status := sw.status
			if status == 0 {
				status = http.StatusOK
			}
			d := time.Since(start)
			s.metrics.request(ri.route, r.Method, status, d)
			if status == http.StatusServiceUnavailable {
				cause := ri.cause
				if cause == "" {
					cause = causeOther
				}
				s.metrics.unavailable.WithLabelValues(cause).Inc()
			}
			if !s.opts.DisableAccessLog {
				attrs := []slog.Attr{
					slog.String("method", r.Method), slog.String("route", ri.route),
					slog.Int("status", status), slog.Float64("duration_ms", float64(d.Microseconds())/1000),
				}
				if ri.clientID != "" {
					attrs = append(attrs, slog.String("client_id", ri.clientID))
				}
				s.log.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
			}
		}()
		h.ServeHTTP(sw, r)
	})
}

// routeName records the route's pattern for the access log and the
// metrics. Handler wraps each route's handler once, at startup, with the
// pattern the route is registered under: what mux.CurrentRoute's
// GetPathTemplate returned per request, when this was a mux middleware
// that gorilla/mux re-applied (one closure) on every request. As then, a
// request that matches no route, or none for its method, stays
// "unmatched".
func routeName(pattern string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ri := infoFrom(r.Context()); ri != nil {
			ri.route = pattern
		}
		h.ServeHTTP(w, r)
	})
}

// requestIDHandler adds the request id of the record's context to every
// log line, so a response's X-Request-ID finds all its lines.
type requestIDHandler struct{ slog.Handler }

func (h requestIDHandler) Handle(ctx context.Context, rec slog.Record) error {
	if id := requestID(ctx); id != "" {
		rec.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, rec)
}

func (h requestIDHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return requestIDHandler{h.Handler.WithAttrs(as)}
}

func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{h.Handler.WithGroup(name)}
}

func statusLabel(code int) string { return strconv.Itoa(code) }
