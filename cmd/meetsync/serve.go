package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/delivery"
	"github.com/meetsync/meetsync/httpapi"
	"github.com/meetsync/meetsync/ingest"
	"github.com/meetsync/meetsync/schema"
	"github.com/meetsync/meetsync/session"
	"github.com/meetsync/meetsync/sim"
	"github.com/meetsync/meetsync/sqlite"
)

// Main is the server program: ParseFlags, then Run (start) and Close
// (graceful stop), or Serve for both around a context.
type Main struct {
	Config Config
	Logger *slog.Logger

	Store    meetsync.Store
	Ingest   *ingest.Service
	Delivery *delivery.Dispatcher
	Sessions *session.Service
	Sim      *sim.Platform
	API      *httpapi.Server
	HTTP     *http.Server
	Listener net.Listener

	unlock func()
	served chan error
}

// NewMain returns a Main with the default configuration.
func NewMain() *Main { return &Main{Config: defaultConfig()} }

// ParseFlags reads the serve flags and environment.
func (m *Main) ParseFlags(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("meetsync serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bindFlags(fs, &m.Config)
	if err := parseFlags(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errUsage
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve takes no arguments, got %q", fs.Args())
	}
	return m.Config.validate()
}

// Serve runs the server until ctx ends, then shuts down gracefully.
func (m *Main) Serve(ctx context.Context) error {
	if err := m.Run(ctx); err != nil {
		m.Close()
		return err
	}
	select {
	case <-ctx.Done():
		m.Logger.Info("shutting down", "grace", m.Config.ShutdownTimeout)
	case err := <-m.served:
		m.Close()
		return err
	}
	return m.Close()
}

// Run opens the store, bootstraps an empty one and starts listening.
func (m *Main) Run(ctx context.Context) error {
	cfg := m.Config
	if m.Logger == nil {
		m.Logger = newLogger(cfg, os.Stderr)
	}
	log := m.Logger
	if cfg.DatabaseURL != "" {
		return errors.New("--database-url: the PostgreSQL store is not built into this version yet; use the embedded SQLite store (--data)")
	}
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	unlock, err := lockDir(cfg.Data)
	if err != nil {
		return err
	}
	m.unlock = unlock
	dbPath := filepath.Join(cfg.Data, "meetsync.db")
	// SQLite would create the file 0644 (less the umask), and its -wal and
	// -shm files copy the database's mode: create it 0600 first.
	f, err := os.OpenFile(dbPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("create store file: %w", err)
	}
	f.Close()
	db, err := sqlite.Open(dbPath, sqlite.Config{Synchronous: cfg.Synchronous})
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	m.Store = db
	log.Info("store opened", "kind", "sqlite", "path", dbPath, "synchronous", cfg.Synchronous)
	if err := bootstrap(ctx, db, cfg.Data, log); err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.Ingest = ingest.New(db, reg, ingest.Config{MaxBatchEvents: cfg.MaxBatchEvents})
	policy := meetsync.URLPolicy{AllowPrivate: cfg.AllowPrivateEndpoints}
	if cfg.AllowPrivateEndpoints {
		log.Warn("private webhook endpoints allowed: the SSRF guard is off (--allow-private-endpoints)")
	}
	m.Delivery, err = delivery.New(db, log, reg, delivery.Config{
		Workers: cfg.DeliveryWorkers, Timeout: cfg.DeliveryTimeout, Schedule: cfg.RetrySchedule, DisableAfter: cfg.DisableAfter,
		URLPolicy: policy, ReleaseOnStart: true, Changes: m.Ingest.Changes, Notify: m.Ingest.Notify,
		UserAgent: "meetsync-webhooks/" + Version,
	})
	if err != nil {
		return err
	}
	if err := m.Delivery.Start(ctx); err != nil {
		return fmt.Errorf("start delivery: %w", err)
	}
	if err := m.startSessions(db, db, db, db, log); err != nil {
		return err
	}
	m.API = httpapi.New(httpapi.Config{Store: db, Ingester: m.Ingest, Logger: log, Registry: reg, URLPolicy: policy, Delivery: m.Delivery,
		Sessions: m.Sessions, SessionStore: db, InvitationStore: db, Types: schema.New(db, db, schema.Config{Logger: log})})
	m.HTTP = &http.Server{
		Handler:           m.API,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if m.Listener, err = net.Listen("tcp", cfg.Addr); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	m.served = make(chan error, 1)
	scheme := "http"
	if cfg.TLSCert != "" {
		scheme = "https"
	}
	go func() {
		var err error
		if cfg.TLSCert != "" {
			err = m.HTTP.ServeTLS(m.Listener, cfg.TLSCert, cfg.TLSKey)
		} else {
			err = m.HTTP.Serve(m.Listener)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			m.served <- err
		}
	}()
	log.Info("meetsync listening", "url", scheme+"://"+m.Listener.Addr().String(), "version", Version)
	return nil
}

// Close stops taking requests, lets in-flight ones finish (up to the
// shutdown timeout), commits what was queued and closes the store.
func (m *Main) Close() error {
	var errs []error
	if m.API != nil {
		m.API.BeginShutdown()
	}
	if m.HTTP != nil {
		ctx, cancel := context.WithTimeout(context.Background(), m.Config.ShutdownTimeout)
		if err := m.HTTP.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("http shutdown: %w", err))
			m.HTTP.Close()
		}
		cancel()
	}
	if m.Delivery != nil {
		m.Delivery.Close(m.Config.ShutdownTimeout)
	}
	m.stopSessions()
	if m.Ingest != nil {
		m.Ingest.Close()
	}
	if m.Store != nil {
		errs = append(errs, m.Store.Close())
	}
	if m.unlock != nil {
		m.unlock()
	}
	if m.Logger != nil {
		m.Logger.Info("stopped")
	}
	return errors.Join(errs...)
}

// bootstrap creates the app "default" on an empty store and writes its
// first key to DATA/bootstrap-key (0600). The key itself is never logged.
func bootstrap(ctx context.Context, store meetsync.Store, dataDir string, log *slog.Logger) error {
	apps, err := store.AppList(ctx)
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	if len(apps) > 0 {
		return nil
	}
	now := time.Now().UTC()
	app := &meetsync.App{ID: meetsync.NewID("app"), Name: "default", CreatedAt: now}
	key, secret := meetsync.NewAPIKey(app.ID, now)
	path := filepath.Join(dataDir, "bootstrap-key")
	// Write the key before committing the app: a crash in between leaves a
	// key file for no app (recreated on the next start), never an app whose
	// only key was lost.
	if err := writeSecretFile(path, secret+"\n"); err != nil {
		return fmt.Errorf("bootstrap: write key: %w", err)
	}
	if err := store.AppCreate(ctx, app, key); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	log.Info("created app \"default\"; its API key is in the bootstrap key file (mode 0600)", "app_id", app.ID, "key_file", path, "key_id", key.ID)
	return nil
}

func writeSecretFile(path, content string) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
