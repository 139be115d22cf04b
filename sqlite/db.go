package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/meetsync/meetsync"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Config configures a DB. The zero value is usable.
type Config struct {
	// Readers is the size of the read-only connection pool. Default 4.
	Readers int
	// Synchronous is SQLite's synchronous pragma. Default "FULL": a commit
	// is on disk (fsync of the WAL) before it returns. "NORMAL" survives a
	// process crash but not a power loss.
	Synchronous string
	// BusyTimeout is how long a connection waits for a lock. Default 10 s.
	BusyTimeout time.Duration
	// UserCacheSize is how many users' states are kept in memory for the
	// write path. Default 100,000.
	UserCacheSize int
	// CheckpointInterval is how often a background goroutine checkpoints
	// the WAL (the writer never does, so commits do not pay for it).
	// Default 200 ms.
	CheckpointInterval time.Duration
}

func (c Config) withDefaults() Config {
	if c.Readers <= 0 {
		c.Readers = 4
	}
	if c.Synchronous == "" {
		c.Synchronous = "FULL"
	}
	if c.BusyTimeout <= 0 {
		c.BusyTimeout = 10 * time.Second
	}
	if c.UserCacheSize <= 0 {
		c.UserCacheSize = 100000
	}
	if c.CheckpointInterval <= 0 {
		c.CheckpointInterval = 200 * time.Millisecond
	}
	return c
}

func (c Config) validate() error {
	switch strings.ToUpper(c.Synchronous) {
	case "FULL", "NORMAL", "EXTRA":
		return nil
	}
	return fmt.Errorf("sqlite: synchronous must be FULL, NORMAL or EXTRA, not %q", c.Synchronous)
}

// DB is the SQLite Store.
type DB struct {
	path   string
	writer *sql.DB // exactly one connection: SQLite has one writer anyway
	reader *sql.DB
	ckpt   *sql.DB // the background checkpointer's connection
	cache  stmtCache

	// writeMu serialises the transactions that write users rows,
	// endpoints or event types, so the caches below change only with
	// their commits.
	writeMu   sync.Mutex
	userCache userCache
	endpoints map[string][]*meetsync.Endpoint // enabled endpoints per app
	debounced map[string]map[string]bool      // custom types registered with debounce, per app

	stopCkpt chan struct{}
	ckptDone chan struct{}
}

var _ meetsync.Store = (*DB)(nil)

// Open opens (creating if needed) the SQLite database at path and applies
// the embedded migrations.
func Open(path string, cfg Config) (*DB, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	dsn := func(extra string) string {
		v := url.Values{}
		v.Add("_pragma", "busy_timeout("+strconv.Itoa(int(cfg.BusyTimeout.Milliseconds()))+")")
		v.Add("_pragma", "journal_mode(WAL)")
		v.Add("_pragma", "synchronous("+strings.ToUpper(cfg.Synchronous)+")")
		v.Add("_pragma", "foreign_keys(ON)")
		v.Add("_pragma", "cache_size(-65536)")
		v.Add("_pragma", "temp_store(MEMORY)")
		if extra != "" {
			v.Add("_pragma", extra)
		}
		return "file:" + path + "?" + v.Encode() + "&_txlock=immediate"
	}
	db := &DB{path: path, userCache: userCache{max: cfg.UserCacheSize}, endpoints: map[string][]*meetsync.Endpoint{},
		debounced: map[string]map[string]bool{}}
	var err error
	if db.writer, err = sql.Open("sqlite", dsn("wal_autocheckpoint(0)")); err != nil {
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	db.writer.SetMaxOpenConns(1)
	db.writer.SetMaxIdleConns(1)
	db.writer.SetConnMaxLifetime(0)
	db.writer.SetConnMaxIdleTime(0)
	if err := db.migrate(context.Background()); err != nil {
		db.writer.Close()
		return nil, err
	}
	if db.reader, err = sql.Open("sqlite", dsn("query_only(1)")); err != nil {
		db.writer.Close()
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	db.reader.SetMaxOpenConns(cfg.Readers)
	db.reader.SetMaxIdleConns(cfg.Readers)
	if db.ckpt, err = sql.Open("sqlite", dsn("")); err != nil {
		db.Close()
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	db.ckpt.SetMaxOpenConns(1)
	db.stopCkpt, db.ckptDone = make(chan struct{}), make(chan struct{})
	go db.checkpointLoop(cfg.CheckpointInterval)
	return db, nil
}

// checkpointLoop copies the WAL back into the database file in the
// background (PASSIVE: it never blocks the writer or readers).
func (db *DB) checkpointLoop(every time.Duration) {
	defer close(db.ckptDone)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-db.stopCkpt:
			return
		case <-t.C:
			_, _ = db.ckpt.Exec("PRAGMA wal_checkpoint(PASSIVE)")
		}
	}
}

// Path returns the database file's path.
func (db *DB) Path() string { return db.path }

// Close closes the database.
func (db *DB) Close() error {
	var errs []error
	if db.stopCkpt != nil {
		close(db.stopCkpt)
		<-db.ckptDone
	}
	db.cache.close()
	if db.ckpt != nil {
		_, _ = db.ckpt.Exec("PRAGMA wal_checkpoint(TRUNCATE)")
		errs = append(errs, db.ckpt.Close())
	}
	if db.reader != nil {
		errs = append(errs, db.reader.Close())
	}
	if db.writer != nil {
		errs = append(errs, db.writer.Close())
	}
	return errors.Join(errs...)
}

// Ping checks both pools.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.reader.PingContext(ctx); err != nil {
		return fmt.Errorf("ping sqlite: %w", err)
	}
	var one int
	if err := db.reader.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("ping sqlite: %w", err)
	}
	return nil
}

// Migrations returns the embedded migrations in order (name, SQL).
func Migrations() ([]string, error) {
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	return names, nil
}

func (db *DB) migrate(ctx context.Context) error {
	if _, err := db.writer.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	names, err := Migrations()
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for _, name := range names {
		version := strings.TrimSuffix(strings.TrimPrefix(name, "migrations/"), ".sql")
		if err := db.apply(ctx, name, version); err != nil {
			return fmt.Errorf("migrate %s: %w", version, err)
		}
	}
	return nil
}

func (db *DB) apply(ctx context.Context, name, version string) error {
	tx, err := db.writer.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM schema_migrations WHERE version = ?", version).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	body, err := migrationFS.ReadFile(name)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, string(body)); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)", version, time.Now().UnixMicro()); err != nil {
		return err
	}
	return tx.Commit()
}

// interpretError translates driver errors by code, never by text.
func interpretError(err error, what string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return meetsync.Errorf(meetsync.ENOTFOUND, "%s not found", what)
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return meetsync.Errorf(meetsync.ECONFLICT, "%s already exists", what)
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			return meetsync.Errorf(meetsync.ENOTFOUND, "%s refers to something that does not exist", what)
		}
	}
	return err
}

func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func fromMicros(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMicro(v).UTC()
}
