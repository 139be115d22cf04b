package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/delivery"
	"github.com/meetsync/meetsync/httpapi"
	"github.com/meetsync/meetsync/ingest"
	"github.com/meetsync/meetsync/sqlite"
)

// storeKind is one store meetsync can run on: how to open a fresh one and
// how to measure its raw commit rate.
type storeKind struct {
	// Describe names the store and its durability settings for the report.
	Describe string
	// Open opens a fresh, empty store in dir.
	Open func(dir string) (meetsync.Store, error)
	// RawCommit measures the store's raw commit rate in dir, from
	// RawCommitClients writers: SQLite has one writer; PostgreSQL is
	// measured with as many clients as the load (its group commit).
	RawCommit        func(ctx context.Context, dir string, rowsPerTxn int, w window, m *meter) (rawCommitResult, error)
	RawCommitClients int
	// RawCommitSerial, when set, measures 1-row commits from one writer
	// (the commit rate a client without group commit gets; PostgreSQL).
	RawCommitSerial func(ctx context.Context, dir string, w window, m *meter) (rawCommitResult, error)
}

// storeKindNames are the values of --store.
var storeKindNames = []string{"postgres", "sqlite"}

// storeKindFor returns the store the options name: SQLite, or PostgreSQL
// at --database-url.
func storeKindFor(ctx context.Context, o *commonOptions) (storeKind, error) {
	if o.Store == "postgres" {
		return newPostgresKind(ctx, o.DatabaseURL, o.Clients)
	}
	return storeKind{
		Describe: "SQLite, journal_mode=WAL, acks after an fdatasync of the WAL (meetsync's default, --sqlite-synchronous FULL)",
		Open: func(dir string) (meetsync.Store, error) {
			return sqlite.Open(filepath.Join(dir, "meetsync.db"), sqlite.Config{})
		},
		RawCommit:        sqliteRawCommit,
		RawCommitClients: 1,
	}, nil
}

// serverConfig is what a benchmark may vary in the server it starts.
type serverConfig struct {
	Logger *slog.Logger
	Ingest ingest.Config
	// NoDispatcher leaves out the delivery dispatcher, which meetsync
	// serve always runs (to measure what it costs the ingest path).
	NoDispatcher bool
	// Delivery configures the dispatcher. Private (loopback) endpoint URLs
	// are always allowed: the benchmark's receivers are on 127.0.0.1.
	Delivery delivery.Config
	// DeferDispatcher creates the dispatcher but leaves it stopped until
	// StartDelivery, so that a backlog can be loaded first.
	DeferDispatcher bool
}

// benchServer is a real meetsync (ingest.Service, delivery.Dispatcher and
// httpapi.Server behind a net/http server) on 127.0.0.1, wired the way
// cmd/meetsync/serve.go does, with an app and an API key to drive it with.
type benchServer struct {
	URL      string // http://127.0.0.1:PORT
	Key      string // API key of the "bench" app
	AppID    string
	Registry *prometheus.Registry
	Store    meetsync.Store
	Ingest   *ingest.Service
	Delivery *delivery.Dispatcher // nil with NoDispatcher
	API      *httpapi.Server

	http *http.Server
	ln   net.Listener
	done chan error
}

// startServer starts meetsync on store (which the caller opened and closes
// after Close). It creates the app "bench" and an API key for it.
func startServer(ctx context.Context, store meetsync.Store, cfg serverConfig) (*benchServer, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	now := time.Now().UTC()
	app := &meetsync.App{ID: meetsync.NewID("app"), Name: "bench", CreatedAt: now}
	key, secret := meetsync.NewAPIKey(app.ID, now)
	if err := store.AppCreate(ctx, app, key); err != nil {
		return nil, fmt.Errorf("create bench app: %w", err)
	}
	s := &benchServer{Key: secret, AppID: app.ID, Store: store, Registry: prometheus.NewRegistry(), done: make(chan error, 1)}
	if sdb, ok := store.(*sqlite.DB); ok {
		s.Registry.MustRegister(sdb.Collectors()...)
	}
	s.Ingest = ingest.New(store, s.Registry, cfg.Ingest)
	policy := meetsync.URLPolicy{AllowPrivate: true}
	apiCfg := httpapi.Config{Store: store, Ingester: s.Ingest, Logger: cfg.Logger, Registry: s.Registry, URLPolicy: policy}
	if !cfg.NoDispatcher {
		dc := cfg.Delivery
		dc.URLPolicy, dc.ReleaseOnStart = policy, true
		dc.Changes, dc.Notify = s.Ingest.DeliveryChanges, s.Ingest.Notify
		var err error
		if s.Delivery, err = delivery.New(store, cfg.Logger, s.Registry, dc); err == nil && !cfg.DeferDispatcher {
			err = s.Delivery.Start(ctx)
		}
		if err != nil {
			s.Ingest.Close()
			return nil, fmt.Errorf("start delivery: %w", err)
		}
		apiCfg.Delivery = s.Delivery
	}
	s.API = httpapi.New(apiCfg)
	s.http = &http.Server{
		Handler:           s.API,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	var err error
	if s.ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		if s.Delivery != nil {
			s.Delivery.Close(time.Second)
		}
		s.Ingest.Close()
		return nil, fmt.Errorf("listen: %w", err)
	}
	s.URL = "http://" + s.ln.Addr().String()
	go func() { s.done <- s.http.Serve(s.ln) }()
	return s, nil
}

// StartDelivery starts a dispatcher created with DeferDispatcher.
func (s *benchServer) StartDelivery(ctx context.Context) error {
	if s.Delivery == nil {
		return errors.New("the server runs no dispatcher")
	}
	return s.Delivery.Start(ctx)
}

// Close stops the HTTP server (finishing in-flight requests), the
// dispatcher and the committer, in serve's order. It does not close the store.
func (s *benchServer) Close() error {
	s.API.BeginShutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.http.Shutdown(ctx)
	if err != nil {
		s.http.Close()
	}
	if serr := <-s.done; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	if s.Delivery != nil {
		s.Delivery.Close(10 * time.Second)
	}
	s.Ingest.Close()
	return err
}

// trivialResponse is about the size of meetsync's ack for one event.
var trivialResponse = []byte(`{"events":[{"id":"evt_0123456789abcdefghijklmnop","seq":1,"duplicate":false,"stale":false}]}` + "\n")

// startTrivial starts the baseline: a net/http server on 127.0.0.1 whose
// handler reads the body and writes a small JSON response.
func startTrivial() (url string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, err := io.ReadAll(r.Body); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.Write(trivialResponse)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	return "http://" + ln.Addr().String(), func() { srv.Close(); <-done }, nil
}
