package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"
)

// Config is the configuration of `meetsync serve`. Every field is a flag
// and an environment variable (MEETSYNC_ + the flag in upper snake case).
type Config struct {
	Addr            string        // --addr: listen address. Default 127.0.0.1:8080.
	Data            string        // --data: data directory (SQLite file, bootstrap key). Default ./meetsync-data.
	DatabaseURL     string        // --database-url: postgres://… to use PostgreSQL instead of SQLite.
	LogLevel        string        // --log-level: debug, info, warn, error. Default info.
	LogFormat       string        // --log-format: text or json. Default text.
	ShutdownTimeout time.Duration // --shutdown-timeout: how long in-flight requests get on SIGTERM. Default 30s.
	Synchronous     string        // --sqlite-synchronous: FULL (default: durable across power loss) or NORMAL.
	TLSCert         string        // --tls-cert: serve HTTPS with this certificate (PEM)…
	TLSKey          string        // --tls-key: …and this key.
	MaxBatchEvents  int           // --max-batch-events: events per group-commit transaction. Default 5000.
}

func defaultConfig() Config {
	return Config{
		Addr: "127.0.0.1:8080", Data: "./meetsync-data", LogLevel: "info", LogFormat: "text",
		ShutdownTimeout: 30 * time.Second, Synchronous: "FULL", MaxBatchEvents: 5000,
	}
}

// bindFlags registers cfg's fields on fs.
func bindFlags(fs *flag.FlagSet, cfg *Config) {
	fs.StringVar(&cfg.Addr, "addr", cfg.Addr, "listen address")
	fs.StringVar(&cfg.Data, "data", cfg.Data, "data directory for the embedded SQLite store and the bootstrap key")
	fs.StringVar(&cfg.DatabaseURL, "database-url", cfg.DatabaseURL, "PostgreSQL URL (postgres://…) to use instead of SQLite")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "log level: debug, info, warn, error")
	fs.StringVar(&cfg.LogFormat, "log-format", cfg.LogFormat, "log format: text or json")
	fs.StringVar(&cfg.Synchronous, "sqlite-synchronous", cfg.Synchronous, "SQLite synchronous mode: FULL (durable across power loss) or NORMAL (across process crashes)")
	fs.StringVar(&cfg.TLSCert, "tls-cert", cfg.TLSCert, "TLS certificate file (PEM); serve HTTPS when set with --tls-key")
	fs.StringVar(&cfg.TLSKey, "tls-key", cfg.TLSKey, "TLS private key file (PEM)")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", cfg.ShutdownTimeout, "how long in-flight requests may take after SIGINT/SIGTERM")
	fs.IntVar(&cfg.MaxBatchEvents, "max-batch-events", cfg.MaxBatchEvents, "most events in one group-commit transaction")
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
				errs = append(errs, fmt.Errorf("%s=%q: %w", envName(f.Name), v, err))
			}
		}
	})
	return errors.Join(errs...)
}

func envName(flagName string) string {
	return "MEETSYNC_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
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
	if _, err := parseLevel(c.LogLevel); err != nil {
		return err
	}
	return nil
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
