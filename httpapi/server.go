package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/dashboard"
	"github.com/meetsync/meetsync/internal/storelog"
	"github.com/meetsync/meetsync/internal/storetimeout"
	"github.com/meetsync/meetsync/session"
)

// Ingester is the write path the API posts events to (ingest.Service).
type Ingester interface {
	Append(ctx context.Context, req *meetsync.AppendRequest) error
	// Changes returns a channel closed at the next commit.
	Changes() <-chan struct{}
}

// Config configures a Server.
type Config struct {
	Store    meetsync.Store
	Ingester Ingester
	Logger   *slog.Logger // default slog.Default()
	// Registry receives the HTTP metrics; Gatherer serves /metrics. If
	// nil, a new registry is used for both.
	Registry *prometheus.Registry
	// KeyCacheTTL is how long a valid API key is remembered. Default 10 s.
	KeyCacheTTL time.Duration
	// StreamHeartbeat is the interval of SSE keep-alive comments. Default 15 s.
	StreamHeartbeat time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Types keeps the apps' custom event types (PUT and GET
	// /v1/event-types) and validates custom events on ingest
	// (schema.Registry). Without it any well-formed custom type is
	// accepted unchecked, GET /v1/event-types lists the built-ins only and
	// PUT answers 503.
	Types TypeRegistry
	// URLPolicy is the SSRF guard for endpoint URLs.
	URLPolicy meetsync.URLPolicy
	// Sessions runs logins, logouts, client reports, commands and platform
	// callbacks; SessionStore is its store. Without them those routes
	// answer 503.
	Sessions        *session.Service
	SessionStore    meetsync.SessionStore
	InvitationStore meetsync.InvitationStore
	// Sealer encrypts secrets at rest: endpoint signing secrets and the
	// meeting platform's app secret (PATCH /v1/app).
	Sealer *meetsync.Sealer
	// Delivery, when set, is woken when deliveries become due through the
	// API (replay, recover, an endpoint enabled again); one that is also an
	// EndpointTester sends POST /v1/endpoints/{id}/test's webhooks.
	Delivery interface{ Wake() }
	// StoreTimeout bounds each call of a request to the store (Store,
	// SessionStore, InvitationStore, Types) and how long an ingest request
	// waits for its commit (Ingester): a database that does not answer in
	// time (stopped, or behind a network partition) gets the request a 503
	// unavailable with Retry-After: 1 instead of no answer. The streams are
	// not cut: each of their reads is bounded alone. Default 10 s.
	StoreTimeout time.Duration
	// KeyRateLimit limits the requests of each API key, ClientRateLimit
	// those of each device's client token: a caller over its limit is
	// answered 429 rate_limited with Retry-After. A long-lived stream
	// counts once. Zero: no limit.
	KeyRateLimit, ClientRateLimit RateLimit
	// CORSOrigins are the web origins (https://app.example.com, or "*"
	// for any; see ValidCORSOrigin) whose pages may call the device routes
	// (/v1/client/…) from a browser. Default none.
	CORSOrigins []string
}

func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
	if c.KeyCacheTTL <= 0 {
		c.KeyCacheTTL = 10 * time.Second
	}
	if c.StreamHeartbeat <= 0 {
		c.StreamHeartbeat = 15 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.StoreTimeout <= 0 {
		c.StoreTimeout = DefaultStoreTimeout
	}
	return c
}

// withStoreTimeout returns c with its stores and its ingester bounded by
// c.StoreTimeout (internal/storetimeout): the handlers use them as they
// are.
func (c Config) withStoreTimeout() Config {
	t := storetimeout.New(c.StoreTimeout)
	c.Store = storetimeout.Store(c.Store, t)
	c.SessionStore = storetimeout.SessionStore(c.SessionStore, t)
	c.InvitationStore = storetimeout.InvitationStore(c.InvitationStore, t)
	if c.Ingester != nil {
		c.Ingester = boundedIngester{c.Ingester, t}
	}
	if c.Types != nil {
		c.Types = boundedTypes{c.Types, t}
	}
	return c
}

// Server is the HTTP API. Its zero value is not usable; call New.
type Server struct {
	cfg    Config
	store  meetsync.Store
	ingest Ingester
	log    *slog.Logger
	keys   keyCache
	now    func() time.Time
	mux    *http.ServeMux

	patterns []string // the routes, "METHOD /path"

	closing  chan struct{}
	shutdown atomic.Bool

	// keyLimits and clientLimits are the callers' rate limits (nil: none).
	keyLimits, clientLimits *limiters

	// storeLog logs the 503s caused by the store (logUnavailable).
	storeLog *storelog.Log

	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// New returns a Server.
func New(cfg Config) *Server {
	cfg = cfg.withDefaults().withStoreTimeout()
	s := &Server{
		cfg: cfg, store: cfg.Store, ingest: cfg.Ingester, log: cfg.Logger, now: cfg.Now, storeLog: storelog.New(cfg.Logger),
		keys:      keyCache{ttl: cfg.KeyCacheTTL, m: map[string]cachedKey{}},
		keyLimits: newLimiters(cfg.KeyRateLimit), clientLimits: newLimiters(cfg.ClientRateLimit),
		mux:     http.NewServeMux(),
		closing: make(chan struct{}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meetsync_http_requests_total", Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "meetsync_http_request_seconds", Help: "HTTP request latency by route (streams excluded).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"route"}),
	}
	cfg.Registry.MustRegister(s.requests, s.latency)
	s.routes()
	return s
}

func (s *Server) routes() {
	m := routeRecorder{s}
	m.HandleFunc("GET /healthz", s.handleHealthz)
	m.HandleFunc("GET /readyz", s.handleReadyz)
	m.HandleFunc("GET /v1/openapi.json", handleOpenAPI)
	m.Handle("GET /metrics", promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{}))

	m.HandleFunc("GET /v1/app", s.withApp(s.handleAppGet))
	m.HandleFunc("GET /v1/keys", s.withApp(s.handleKeyList))
	m.HandleFunc("POST /v1/keys", s.withApp(s.handleKeyCreate))
	m.HandleFunc("DELETE /v1/keys/{id}", s.withApp(s.handleKeyRevoke))

	m.HandleFunc("POST /v1/events", s.withApp(s.handleIngest))
	m.HandleFunc("GET /v1/events", s.withApp(s.handleEventList))
	m.HandleFunc("GET /v1/events/stream", s.withApp(s.handleEventStream))
	m.HandleFunc("GET /v1/event-types", s.withApp(s.handleEventTypeList))
	m.HandleFunc("GET /v1/event-types/{name}", s.withApp(s.handleEventTypeGet))
	m.HandleFunc("PUT /v1/event-types/{name}", s.withApp(s.handleEventTypePut))

	m.HandleFunc("POST /v1/endpoints", s.withApp(s.handleEndpointCreate))
	m.HandleFunc("GET /v1/endpoints", s.withApp(s.handleEndpointList))
	m.HandleFunc("GET /v1/endpoints/{id}", s.withApp(s.handleEndpointGet))
	m.HandleFunc("PATCH /v1/endpoints/{id}", s.withApp(s.handleEndpointPatch))
	m.HandleFunc("DELETE /v1/endpoints/{id}", s.withApp(s.handleEndpointDelete))
	m.HandleFunc("POST /v1/endpoints/{id}/secrets/rotate", s.withApp(s.handleSecretRotate))
	m.HandleFunc("GET /v1/endpoints/{id}/deliveries", s.withApp(s.handleDeliveryList))
	m.HandleFunc("POST /v1/endpoints/{id}/recover", s.withApp(s.handleEndpointRecover))
	m.HandleFunc("POST /v1/endpoints/{id}/test", s.withApp(s.handleEndpointTest))
	m.HandleFunc("GET /v1/deliveries/{id}", s.withApp(s.handleDeliveryGet))
	m.HandleFunc("POST /v1/deliveries/{id}/replay", s.withApp(s.handleDeliveryReplay))

	m.HandleFunc("GET /v1/users", s.withApp(s.handleUserList))
	m.HandleFunc("GET /v1/users/{id}", s.withApp(s.handleUserGet))
	m.HandleFunc("POST /v1/users/{id}/login", s.withApp(s.handleLogin))
	m.HandleFunc("POST /v1/users/{id}/logout", s.withApp(s.handleLogout))
	m.HandleFunc("PATCH /v1/app", s.withApp(s.handleAppPatch))

	m.HandleFunc("POST /v1/client/init", s.withClient(s.handleClientInit))
	m.HandleFunc("POST /v1/client/login", s.withClient(s.handleClientLogin))
	m.HandleFunc("POST /v1/client/credentials", s.withClient(s.handleClientCredentials))
	m.HandleFunc("POST /v1/client/events", s.withClient(s.handleClientEvents))
	m.HandleFunc("GET /v1/client/commands", s.withClientEnded(s.handleCommands))
	m.HandleFunc("POST /v1/client/commands/{id}/ack", s.withClientEnded(s.handleCommandAck))

	m.HandleFunc("POST /v1/providers/{kind}/callback/{app_id}", s.handleProviderCallback)

	m.HandleFunc("POST /v1/invitations", s.withApp(s.handleInvite))
	m.HandleFunc("GET /v1/invitations", s.withApp(s.handleInvitationList))
	m.HandleFunc("GET /v1/invitations/{id}", s.withApp(s.handleInvitationGet))
	m.HandleFunc("POST /v1/invitations/{id}/{action}", s.withApp(s.invitationAction(s.appActor)))
	m.HandleFunc("GET /v1/client/invitations", s.withClient(s.handleClientInvitationList))
	m.HandleFunc("POST /v1/client/invitations/{id}/{action}", s.withClient(s.invitationAction(s.clientActor)))

	// The dashboard is static files over this API (not part of it, so
	// not in openapi.json); / leads to it.
	s.mux.Handle("GET /dashboard/", dashboard.Handler("/dashboard/"))
	s.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/dashboard/", http.StatusFound)
	})

	s.mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, meetsync.Errorf(meetsync.ENOTFOUND, "no route %s %s", r.Method, r.URL.Path))
	})
}

// ServeHTTP implements http.Handler with metrics.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	if s.cors(rw, r) {
		r.Pattern = "OPTIONS " + clientRoutes // a preflight, answered by cors
	} else {
		s.mux.ServeHTTP(rw, r)
	}
	route := r.Pattern
	if route == "" {
		route = "unmatched"
	}
	s.requests.WithLabelValues(route, strconv.Itoa(rw.status)).Inc()
	if !rw.stream {
		s.latency.WithLabelValues(route).Observe(time.Since(start).Seconds())
	}
}

// BeginShutdown makes /readyz fail and ends every open stream, so that
// http.Server.Shutdown can finish the remaining in-flight requests.
func (s *Server) BeginShutdown() {
	if s.shutdown.CompareAndSwap(false, true) {
		close(s.closing)
	}
}

type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
	stream bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	if s.shutdown.Load() {
		s.writeError(w, r, meetsync.Errorf(meetsync.EUNAVAILABLE, "shutting down"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		s.log.Warn("readiness check failed", "err", err)
		s.writeError(w, r, meetsync.Errorf(meetsync.EUNAVAILABLE, "store is not reachable"))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// routeRecorder registers routes on the server's mux and remembers their
// patterns (Routes), which the OpenAPI test compares with openapi.json.
type routeRecorder struct{ s *Server }

func (r routeRecorder) HandleFunc(pattern string, h http.HandlerFunc) {
	r.s.patterns = append(r.s.patterns, pattern)
	r.s.mux.HandleFunc(pattern, h)
}

func (r routeRecorder) Handle(pattern string, h http.Handler) {
	r.s.patterns = append(r.s.patterns, pattern)
	r.s.mux.Handle(pattern, h)
}

// Routes returns the server's routes as "METHOD /path" patterns.
func (s *Server) Routes() []string { return slices.Clone(s.patterns) }
