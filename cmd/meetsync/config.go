package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/httpapi"
	"github.com/meetsync/meetsync/internal/gctune"
	"github.com/meetsync/meetsync/postgres"
	"github.com/meetsync/meetsync/sqlite"
)

// Config is the configuration of `meetsync serve`. Every field is a flag
// and an environment variable (MEETSYNC_ + the flag in upper snake case).
type Config struct {
	Addr            string        // --addr: listen address. Default 127.0.0.1:8080.
	Data            string        // --data: data directory (SQLite file, bootstrap key). Default ./meetsync-data.
	DatabaseURL     string        // --database-url: postgres://… to use PostgreSQL instead of SQLite (several replicas may share it).
	NoMigrate       bool          // --no-migrate: do not apply database migrations at start (PostgreSQL; run "meetsync migrate" instead).
	LogLevel        string        // --log-level: debug, info, warn, error. Default info.
	LogFormat       string        // --log-format: text or json. Default text.
	ShutdownTimeout time.Duration // --shutdown-timeout: how long in-flight requests get on SIGTERM. Default 30s.
	Synchronous     string        // --sqlite-synchronous: FULL (default: durable across power loss), NORMAL or EXTRA.
	SyncMethod      string        // --sqlite-sync-method: how FULL reaches the disk: auto (default: io_uring where available), io_uring or fdatasync.
	TLSCert         string        // --tls-cert: serve HTTPS with this certificate (PEM)…
	TLSKey          string        // --tls-key: …and this key.
	MaxBatchEvents  int           // --max-batch-events: events per group-commit transaction. Default 5000.
	SecretKeyFile   string        // --secret-key-file: the key that encrypts secrets at rest. Default DATA/secret.key (created on a store's first start).
	GCPercent       int           // --gc-percent: the Go garbage collector's target (GOGC). Default 400; GOGC in the environment wins.

	AllowPrivateEndpoints bool                   // --allow-private-endpoints: webhook URLs may be plain http and private/loopback (SSRF guard off).
	RetrySchedule         meetsync.RetrySchedule // --retry-schedule: delays before each delivery attempt. Default 0s,5s,5m,30m,2h,5h,10h,10h.
	DeliveryWorkers       int                    // --delivery-workers: webhooks in flight at once. Default 256.
	DeliveryTimeout       time.Duration          // --delivery-timeout: one webhook request's timeout. Default 15s.
	DeliveryLease         time.Duration          // --delivery-lease: how long a claimed delivery stays with its replica before another may take it. Default 60s.
	DisableAfter          time.Duration          // --endpoint-disable-after: disable an endpoint failing continuously this long. Default 120h.
	StoreTimeout          time.Duration          // --store-timeout: how long a request waits for one answer of the store (and an ingest request for its commit) before 503 unavailable; also bounds each group commit. Default 10s.

	KeyRateLimit    float64 // --rate-limit-key: requests a second per API key (bursts of twice as many); 0 is no limit. Default 0.
	ClientRateLimit float64 // --rate-limit-client: requests a second per device (client token; bursts of twice as many); 0 is no limit. Default 50.
	CORSOrigins     string  // --cors-origins: web origins (comma separated, or *) whose pages may call the device routes /v1/client/… from a browser. Default none.

	fromEnv map[string]bool // the flags whose value came from their MEETSYNC_* variable (ParseFlags), for messages
}

func defaultConfig() Config {
	return Config{
		Addr: "127.0.0.1:8080", Data: "./meetsync-data", LogLevel: "info", LogFormat: "text",
		ShutdownTimeout: 30 * time.Second, Synchronous: "FULL", SyncMethod: "auto", MaxBatchEvents: 5000,
		RetrySchedule: meetsync.DefaultRetrySchedule, DeliveryWorkers: 256, DeliveryTimeout: 15 * time.Second, DeliveryLease: 60 * time.Second,
		DisableAfter: 5 * 24 * time.Hour, GCPercent: gctune.DefaultPercent, StoreTimeout: 10 * time.Second,
		ClientRateLimit: 50,
	}
}

// bindFlags registers cfg's fields on fs.
func bindFlags(fs *flag.FlagSet, cfg *Config) {
	fs.StringVar(&cfg.Addr, "addr", cfg.Addr, "listen address")
	fs.StringVar(&cfg.Data, "data", cfg.Data, "data directory for the embedded SQLite store and the bootstrap key")
	fs.StringVar(&cfg.DatabaseURL, "database-url", cfg.DatabaseURL, "PostgreSQL URL (postgres://user:password@host:5432/db) to use instead of SQLite; several replicas may share it")
	fs.BoolVar(&cfg.NoMigrate, "no-migrate", cfg.NoMigrate, "do not apply PostgreSQL migrations at start (apply them with \"meetsync migrate\")")
	fs.StringVar(&cfg.SecretKeyFile, "secret-key-file", cfg.SecretKeyFile,
		"file with the 32-byte key that encrypts secrets at rest (default DATA/secret.key, created on the store's first start; replicas must share one)")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "log level: debug, info, warn, error")
	fs.StringVar(&cfg.LogFormat, "log-format", cfg.LogFormat, "log format: text or json")
	fs.StringVar(&cfg.Synchronous, "sqlite-synchronous", cfg.Synchronous, "SQLite durability: FULL (an ack survives power loss), NORMAL (a process crash) or EXTRA (SQLite syncs inside every commit)")
	fs.StringVar(&cfg.SyncMethod, "sqlite-sync-method", cfg.SyncMethod,
		"how the FULL group fsync reaches the disk: auto (io_uring where the kernel allows it, else fdatasync), io_uring or fdatasync; the durability is the same")
	fs.StringVar(&cfg.TLSCert, "tls-cert", cfg.TLSCert, "TLS certificate file (PEM); serve HTTPS when set with --tls-key")
	fs.StringVar(&cfg.TLSKey, "tls-key", cfg.TLSKey, "TLS private key file (PEM)")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", cfg.ShutdownTimeout, "how long in-flight requests may take after SIGINT/SIGTERM")
	fs.IntVar(&cfg.MaxBatchEvents, "max-batch-events", cfg.MaxBatchEvents, "most events in one group-commit transaction")
	fs.IntVar(&cfg.GCPercent, "gc-percent", cfg.GCPercent,
		"Go garbage collector target: the heap may grow to (1 + N/100) × the live heap between collections; lower trades CPU for memory, -1 is off (needs GOMEMLIMIT); GOGC in the environment wins")
	fs.BoolVar(&cfg.AllowPrivateEndpoints, "allow-private-endpoints", cfg.AllowPrivateEndpoints,
		"let webhook URLs use plain http and loopback/private addresses (turns the SSRF guard off: tests and demos only)")
	fs.Var((*scheduleValue)(&cfg.RetrySchedule), "retry-schedule", "delays before each delivery attempt, comma separated")
	fs.IntVar(&cfg.DeliveryWorkers, "delivery-workers", cfg.DeliveryWorkers, "webhooks in flight at once")
	fs.DurationVar(&cfg.DeliveryTimeout, "delivery-timeout", cfg.DeliveryTimeout, "timeout of one webhook request")
	fs.DurationVar(&cfg.DeliveryLease, "delivery-lease", cfg.DeliveryLease, "how long a replica holds a claimed delivery; a crashed replica's claims are retried after it")
	fs.DurationVar(&cfg.DisableAfter, "endpoint-disable-after", cfg.DisableAfter, "disable an endpoint that has failed continuously for this long")
	fs.StringVar(&cfg.CORSOrigins, "cors-origins", cfg.CORSOrigins,
		"web origins whose pages may call the device routes (/v1/client/…) from a browser, comma separated (https://app.example.com), or * for any; the app-key routes never answer cross-origin")
	fs.Float64Var(&cfg.KeyRateLimit, "rate-limit-key", cfg.KeyRateLimit,
		"requests a second each API key may send (bursts of twice as many; more are answered 429 with Retry-After); 0 is no limit")
	fs.Float64Var(&cfg.ClientRateLimit, "rate-limit-client", cfg.ClientRateLimit,
		"requests a second each device (client token) may send (bursts of twice as many; more are answered 429 with Retry-After); 0 is no limit")
	fs.DurationVar(&cfg.StoreTimeout, "store-timeout", cfg.StoreTimeout,
		"how long a request waits for an answer of the database (each read or write; an ingest request for its commit) before it is answered 503 unavailable; also bounds each group commit")
}

type scheduleValue meetsync.RetrySchedule

func (v *scheduleValue) String() string { return meetsync.RetrySchedule(*v).String() }
func (v *scheduleValue) Set(s string) error {
	r, err := meetsync.ParseRetrySchedule(s)
	if err != nil {
		return err
	}
	*v = scheduleValue(r)
	return nil
}

// parseFlags parses args, then gives every flag not on the command line
// the value of its environment variable MEETSYNC_<NAME>, if set.
func parseFlags(fs *flag.FlagSet, args []string) error {
	fs.VisitAll(func(f *flag.Flag) { f.Usage += " (" + envName(f.Name) + ")" })
	if err := fs.Parse(args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if v, ok := os.LookupEnv(envName(f.Name)); ok && !set[f.Name] {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("invalid value %q for %s (--%s): %w", v, envName(f.Name), f.Name, err))
			}
		}
	})
	return errors.Join(errs...)
}

func envName(flagName string) string {
	return "MEETSYNC_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// envSet returns the flags of fs (parsed by parseFlags) whose value came
// from their environment variable: set there, and not on the command line.
func envSet(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	env := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) {
		if _, ok := os.LookupEnv(envName(f.Name)); ok && !set[f.Name] {
			env[f.Name] = true
		}
	})
	return env
}

// setting names a flag in a message as the user gave it: MEETSYNC_NAME
// when its value came from the environment, else --name.
func (c *Config) setting(flagName string) string {
	if c.fromEnv[flagName] {
		return envName(flagName)
	}
	return "--" + flagName
}

func (c *Config) validate() error {
	if c.Addr == "" {
		return errors.New("--addr is empty")
	}
	if c.DatabaseURL == "" && c.Data == "" {
		return errors.New("--data is empty")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	switch strings.ToLower(c.LogFormat) {
	case "text", "json":
	default:
		return fmt.Errorf("--log-format must be text or json, not %q", c.LogFormat)
	}
	if err := sqlite.CheckSynchronous(c.Synchronous); err != nil {
		return fmt.Errorf("--sqlite-synchronous %w", err)
	}
	if err := sqlite.CheckSyncMethod(c.SyncMethod); err != nil {
		return fmt.Errorf("--sqlite-sync-method %w", err)
	}
	if c.SyncMethod != sqlite.SyncAuto && !strings.EqualFold(c.Synchronous, "FULL") {
		return fmt.Errorf("--sqlite-sync-method %s applies to --sqlite-synchronous FULL only (NORMAL does not sync commits; EXTRA lets SQLite sync inside each one)", c.SyncMethod)
	}
	if c.ShutdownTimeout < 0 {
		return fmt.Errorf("--shutdown-timeout must not be negative, got %s", c.ShutdownTimeout)
	}
	if c.DisableAfter <= 0 {
		return fmt.Errorf("--endpoint-disable-after must be positive, got %s", c.DisableAfter)
	}
	if !(c.KeyRateLimit >= 0) || !(c.ClientRateLimit >= 0) || math.IsInf(c.KeyRateLimit, 0) || math.IsInf(c.ClientRateLimit, 0) {
		return fmt.Errorf("--rate-limit-key and --rate-limit-client are requests a second, 0 (no limit) or more; got %g and %g", c.KeyRateLimit, c.ClientRateLimit)
	}
	for _, o := range c.corsOrigins() {
		if err := httpapi.ValidCORSOrigin(o); err != nil {
			return fmt.Errorf("--cors-origins: %w", err)
		}
	}
	if c.StoreTimeout <= 0 {
		return fmt.Errorf("--store-timeout must be positive, got %s", c.StoreTimeout)
	}
	if c.DeliveryWorkers <= 0 || c.MaxBatchEvents <= 0 {
		return errors.New("--delivery-workers and --max-batch-events must be positive")
	}
	if c.DeliveryTimeout <= 0 || c.DeliveryTimeout >= 60*time.Second {
		return fmt.Errorf("--delivery-timeout must be more than 0s and less than 60s, got %s", c.DeliveryTimeout)
	}
	if c.DeliveryLease <= c.DeliveryTimeout {
		return fmt.Errorf("--delivery-lease (%s) must be longer than --delivery-timeout (%s)", c.DeliveryLease, c.DeliveryTimeout)
	}
	if err := checkDatabaseURL(c.DatabaseURL, c.setting("database-url")); err != nil {
		return err
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return err
	}
	return gctune.Check(c.GCPercent)
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("--log-level must be debug, info, warn or error, not %q", s)
	}
	return l, nil
}

func newLogger(cfg Config, w io.Writer) *slog.Logger {
	level, _ := parseLevel(cfg.LogLevel)
	opts := &slog.HandlerOptions{Level: level}
	if strings.ToLower(cfg.LogFormat) == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// checkDatabaseURL accepts "" (SQLite), a postgres:// URL or a libpq
// keyword/value string ("host=db user=meetsync dbname=meetsync") that pgx
// can parse; opening the store checks the rest. setting names where u
// came from (--database-url or MEETSYNC_DATABASE_URL); the error never
// shows u, which may hold a password.
func checkDatabaseURL(u, setting string) error {
	if u == "" {
		return nil
	}
	if !strings.HasPrefix(u, "postgres://") && !strings.HasPrefix(u, "postgresql://") && !keywordDSN.MatchString(u) {
		return fmt.Errorf("%s must be a PostgreSQL URL (postgres://user:password@host:5432/database) or keyword/value string (host=… user=… dbname=…)", setting)
	}
	if err := postgres.CheckURL(u); err != nil {
		return fmt.Errorf("%s is not valid: %v (postgres://user:password@host:port/database?… or host=… user=… dbname=…)", setting, err)
	}
	return nil
}

// keywordDSN matches the start of a libpq keyword/value string.
var keywordDSN = regexp.MustCompile(`^\s*[a-z_]+\s*=`)

// corsOrigins is --cors-origins as a list.
func (c *Config) corsOrigins() []string {
	var out []string
	for _, o := range strings.Split(c.CORSOrigins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			out = append(out, o)
		}
	}
	return out
}
