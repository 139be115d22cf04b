package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/delivery"
	"github.com/meetsync/meetsync/httpapi"
	"github.com/meetsync/meetsync/ingest"
	"github.com/meetsync/meetsync/internal/gctune"
	"github.com/meetsync/meetsync/internal/storetimeout"
	"github.com/meetsync/meetsync/postgres"
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
	sealer   *meetsync.Sealer
	Sim      *sim.Platform
	API      *httpapi.Server
	HTTP     *http.Server
	Listener net.Listener

	unlock   func()
	served   chan error
	started  bool   // Run got as far as serving
	madeData string // the directory Run created for --data (its topmost new one), "" if it existed

	pg         *postgres.DB       // the store, when it is PostgreSQL
	background context.Context    // ends at Close: the listener and singletons
	stopBg     context.CancelFunc // …
	bg         sync.WaitGroup
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
			return errHelp
		}
		return err
	}
	m.Config.fromEnv = envSet(fs)
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
	gc, gcSource := gctune.Apply(cfg.GCPercent)
	log.Info("garbage collector", "gc_percent", gc, "from", gcSource)
	// Whatever can fail for a reason outside the store (the certificate,
	// the address) fails before the store is opened or created.
	var tlsCfg *tls.Config
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	var err error
	if m.Listener, err = net.Listen("tcp", cfg.Addr); err != nil {
		return fmt.Errorf("listen on %s %s: %w", cfg.setting("addr"), cfg.Addr, err)
	}
	m.background, m.stopBg = context.WithCancel(context.Background())
	if err := m.openStore(ctx); err != nil {
		return err
	}
	db := m.Store

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if sdb, ok := db.(*sqlite.DB); ok {
		reg.MustRegister(sdb.Collectors()...)
	}
	m.Ingest = ingest.New(db, reg, ingest.Config{MaxBatchEvents: cfg.MaxBatchEvents, CommitTimeout: cfg.StoreTimeout})
	policy := meetsync.URLPolicy{AllowPrivate: cfg.AllowPrivateEndpoints}
	if cfg.AllowPrivateEndpoints {
		log.Warn("private webhook endpoints allowed: the SSRF guard is off (--allow-private-endpoints)")
	}
	dc := delivery.Config{
		Sealer:  m.sealer,
		Workers: cfg.DeliveryWorkers, Timeout: cfg.DeliveryTimeout, Lease: cfg.DeliveryLease, Schedule: cfg.RetrySchedule,
		DisableAfter: cfg.DisableAfter, URLPolicy: policy, Changes: m.Ingest.DeliveryChanges, Notify: m.Ingest.Notify,
		UserAgent: "meetsync-webhooks/" + Version,
		// SQLite: this process alone uses the store (the data directory is
		// locked), so claims left by a crashed run are released at once.
		// PostgreSQL: other replicas hold live claims; a crashed replica's
		// claims are taken over when their lease ends.
		ReleaseOnStart: m.pg == nil,
	}
	dstore := db
	if m.pg != nil {
		dc.Owner = m.pg.Node()
		// Each of the dispatcher's store calls is bounded by
		// --store-timeout as the API's are: a claim or an outcome stuck on
		// a connection that went silent (a failover, a partition) fails in
		// time, and the next call gets a new connection, instead of the
		// deliveries stopping until TCP gives up. (SQLite's calls read a
		// local file; they are left without a deadline, which would make
		// the driver watch every statement.)
		dstore = storetimeout.Store(db, storetimeout.New(cfg.StoreTimeout))
	}
	if m.Delivery, err = delivery.New(dstore, log, reg, dc); err != nil {
		return err
	}
	if err := m.Delivery.Start(ctx); err != nil {
		return fmt.Errorf("start delivery: %w", err)
	}
	apiCfg := httpapi.Config{Store: db, Ingester: m.Ingest, Logger: log, Registry: reg, URLPolicy: policy, Delivery: m.Delivery, Sealer: m.sealer,
		StoreTimeout: cfg.StoreTimeout,
		KeyRateLimit: httpapi.RateLimit{PerSecond: cfg.KeyRateLimit}, ClientRateLimit: httpapi.RateLimit{PerSecond: cfg.ClientRateLimit},
		CORSOrigins: cfg.corsOrigins()}
	if err := m.startSessions(db, log, &apiCfg); err != nil {
		return err
	}
	if m.pg != nil {
		// Commits of the other replicas: the feed moved (SSE streams read
		// on), deliveries became due (the dispatcher claims), or device
		// commands were created (command streams read on).
		sessions := m.Sessions
		m.bg.Add(1)
		go func() {
			defer m.bg.Done()
			m.pg.Listen(m.background, func(kind string) {
				switch kind {
				case postgres.NotifyEvents:
					m.Ingest.NotifyFeed()
				case postgres.NotifyDeliveries:
					m.Delivery.Wake()
				case postgres.NotifyCommands:
					if sessions != nil {
						sessions.Commands.Notify()
					}
				}
			})
		}()
	}
	m.API = httpapi.New(apiCfg)
	m.HTTP = &http.Server{
		Handler:           m.API,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		TLSConfig:         tlsCfg,
	}
	m.served = make(chan error, 1)
	scheme := "http"
	if tlsCfg != nil {
		scheme = "https"
	}
	m.started = true
	go func() {
		var err error
		if tlsCfg != nil {
			err = m.HTTP.ServeTLS(m.Listener, "", "")
		} else {
			err = m.HTTP.Serve(m.Listener)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			m.served <- err
		}
	}()
	url := scheme + "://" + m.Listener.Addr().String()
	log.Info("meetsync listening", "url", url, "dashboard", url+"/dashboard/", "version", Version)
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
	} else if m.Listener != nil {
		m.Listener.Close() // Run failed before serving
	}
	// Singleton jobs and the listener stop while ingest and delivery still
	// run, so that a job finishing its work can still append events.
	if m.stopBg != nil {
		m.stopBg()
		m.bg.Wait()
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
	if m.madeData != "" && m.unlock != nil && !m.started {
		// Run failed on a SQLite store it had just created: remove the
		// directory it made (while still holding its lock), and only that.
		if err := os.RemoveAll(m.madeData); err != nil {
			errs = append(errs, fmt.Errorf("remove the data directory this start created: %w", err))
		}
	}
	if m.unlock != nil {
		m.unlock()
	}
	if m.Logger != nil && m.started {
		m.Logger.Info("stopped")
	}
	return errors.Join(errs...)
}

// openStore opens the store the configuration names and bootstraps an
// empty one: PostgreSQL (migrated unless --no-migrate) or SQLite in the
// data directory, which it locks.
func (m *Main) openStore(ctx context.Context) error {
	cfg, log := m.Config, m.Logger
	if cfg.DatabaseURL != "" {
		db, err := postgres.Open(ctx, cfg.DatabaseURL, postgres.Config{})
		if err != nil {
			return fmt.Errorf("open store: %w", err)
		}
		m.Store, m.pg = db, db
		if cfg.NoMigrate {
			err = db.CheckSchema(ctx)
		} else {
			var applied []string
			if applied, err = db.Migrate(ctx); len(applied) > 0 {
				log.Info("database migrated", "applied", applied)
			}
		}
		if err != nil {
			return err
		}
		log.Info("store opened", "kind", "postgres", "database", db.Where(), "node", db.Node())
		// Replicas starting together bootstrap once: the first creates the
		// app and writes its key to its data directory, the others find it.
		return db.WithLock(ctx, "bootstrap", func(ctx context.Context, _ *pgx.Conn) error {
			return m.prepareStore(ctx)
		})
	}
	if err := m.makeData(); err != nil {
		return err
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
	db, err := sqlite.Open(dbPath, sqlite.Config{Synchronous: cfg.Synchronous, SyncMethod: cfg.SyncMethod})
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	m.Store = db
	method := db.SyncMethod()
	if method == "" {
		method = "none" // NORMAL: commits are not synced; EXTRA: SQLite syncs inside each one
	}
	log.Info("store opened", "kind", "sqlite", "path", dbPath, "synchronous", cfg.Synchronous, "sync_method", method)
	return m.prepareStore(ctx)
}

// prepareStore opens the key that encrypts secrets at rest (made with the
// store: on a store without apps) and bootstraps an empty store.
func (m *Main) prepareStore(ctx context.Context) error {
	apps, err := m.Store.AppList(ctx)
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	if m.sealer, err = m.openSealer(ctx, m.Logger, apps); err != nil {
		return err
	}
	if err := m.checkSecretKey(ctx, apps); err != nil {
		return err
	}
	if len(apps) > 0 {
		return nil
	}
	if err := m.makeData(); err != nil {
		return err
	}
	return bootstrap(ctx, m.Store, m.Config.Data, m.Logger)
}

// RunSingleton runs fn in the background until Close, on one server of
// the cluster at a time: with PostgreSQL, on the replica holding the
// leader lock name (another takes over when it stops or dies, and fn's
// context ends if this replica loses the lock: fn's work must stand being
// redone); with SQLite, here (the data directory is locked to one
// process). Use it for background jobs that must run once per cluster.
func (m *Main) RunSingleton(name string, fn func(ctx context.Context)) {
	m.bg.Add(1)
	go func() {
		defer m.bg.Done()
		if m.pg != nil {
			m.pg.RunLeader(m.background, name, postgres.LeaderConfig{Logger: m.Logger}, fn)
			return
		}
		fn(m.background)
	}()
}

// makeData creates the data directory (0700) if it does not exist. Run
// calls it only once it needs the directory (SQLite: to open the store;
// PostgreSQL: to write a file there, the secret key, the bootstrap key or
// the sim platform's state), so a start that fails before creates none.
// It remembers the topmost directory it created: Close removes it if Run
// failed on SQLite (the store in it is new and empty of anything served).
// On PostgreSQL what was written there belongs to the database (its
// secret key, its bootstrap key), so it stays.
func (m *Main) makeData() error {
	dir := filepath.Clean(m.Config.Data)
	top := ""
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); !errors.Is(err, os.ErrNotExist) {
			break
		}
		top = d
		if filepath.Dir(d) == d {
			break
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	if top != "" && m.madeData == "" {
		m.madeData = top
	}
	return nil
}

// bootstrap creates the app "default" on an empty store (the caller
// checked) and writes its first key to DATA/bootstrap-key (0600). The key
// itself is never logged.
func bootstrap(ctx context.Context, store meetsync.Store, dataDir string, log *slog.Logger) error {
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
