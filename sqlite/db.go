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
	"sync/atomic"
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
	// Synchronous is how durable a write is when it returns. Default
	// "FULL": its WAL frames are on disk (fdatasync), done by a group
	// fsync outside the write lock (see walSyncer), so the next
	// transaction does not wait for the disk. "NORMAL" survives a process
	// crash but not a power loss. "EXTRA" is SQLite's own synchronous=EXTRA
	// (it syncs inside every commit, and the directory too).
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
	// Materialize tunes how user state and the per-user event index are
	// written behind the events (see backlog.go).
	Materialize MaterializeConfig
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
	c.Materialize = c.Materialize.withDefaults()
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
	rstmts readerStmts
	sync   *walSyncer

	// writeMu serialises the transactions that write events, users rows,
	// endpoints or event types, so the caches and the backlog below
	// change only with their commits.
	writeMu   sync.Mutex
	nextPos   int64 // the feed position of the next event
	backlog   *backlog
	meta      map[string]int64 // store_meta as read at start
	feedPos   atomic.Int64     // app_events holds every event up to here
	mat       MaterializeConfig
	userCache userCache
	endpoints map[string][]*meetsync.Endpoint // enabled endpoints per app
	debounced map[string]map[string]bool      // custom types registered with debounce, per app

	stopCkpt chan struct{}
	ckptDone chan struct{}

	matStop, matDone chan struct{}
	matKick          chan struct{}
	matMu            sync.Mutex
	matLastErr       error // of the last materializing round, if it failed
}

var _ meetsync.Store = (*DB)(nil)

// Open opens (creating if needed) the SQLite database at path and applies
// the embedded migrations.
func Open(path string, cfg Config) (*DB, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	mode := strings.ToUpper(cfg.Synchronous)
	groupSync := mode == "FULL"
	if groupSync {
		mode = "NORMAL" // and the walSyncer syncs after every commit
	}
	dsn := func(extra string) string {
		v := url.Values{}
		v.Add("_pragma", "busy_timeout("+strconv.Itoa(int(cfg.BusyTimeout.Milliseconds()))+")")
		v.Add("_pragma", "journal_mode(WAL)")
		v.Add("_pragma", "synchronous("+mode+")")
		v.Add("_pragma", "foreign_keys(ON)")
		v.Add("_pragma", "cache_size(-65536)")
		v.Add("_pragma", "temp_store(MEMORY)")
		if extra != "" {
			v.Add("_pragma", extra)
		}
		return "file:" + path + "?" + v.Encode() + "&_txlock=immediate"
	}
	db := &DB{path: path, userCache: userCache{max: cfg.UserCacheSize}, endpoints: map[string][]*meetsync.Endpoint{},
		debounced: map[string]map[string]bool{}, backlog: newBacklog(), mat: cfg.Materialize}
	var err error
	if db.writer, err = sql.Open("sqlite", dsn("wal_autocheckpoint(0)")); err != nil {
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	db.writer.SetMaxOpenConns(1)
	db.writer.SetMaxIdleConns(1)
	db.writer.SetConnMaxLifetime(0)
	db.writer.SetConnMaxIdleTime(0)
	if err := db.writer.PingContext(context.Background()); err != nil {
		db.writer.Close()
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	if db.sync, err = newWALSyncer(path, groupSync); err != nil {
		db.writer.Close()
		return nil, err
	}
	if err := db.migrate(context.Background()); err != nil {
		db.writer.Close()
		db.sync.close()
		return nil, err
	}
	if err := db.start(context.Background()); err != nil {
		db.writer.Close()
		db.sync.close()
		return nil, fmt.Errorf("open sqlite: %w", err)
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
	db.matStop, db.matDone, db.matKick = make(chan struct{}), make(chan struct{}), make(chan struct{}, 1)
	go db.materializeLoop()
	return db, nil
}

// start reads the feed's positions and replays the backlog a crash left
// (see backlog.go).
func (db *DB) start(ctx context.Context) error {
	db.meta = map[string]int64{}
	rows, err := db.writer.QueryContext(ctx, "SELECT key, value FROM store_meta")
	if err != nil {
		return err
	}
	for rows.Next() {
		var k string
		var v int64
		if err := rows.Scan(&k, &v); err != nil {
			rows.Close()
			return err
		}
		db.meta[k] = v
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	var head sql.NullInt64
	if err := db.writer.QueryRowContext(ctx, "SELECT max(pos) FROM events").Scan(&head); err != nil {
		return err
	}
	// next_pos keeps a position from being given twice when the newest
	// events were purged.
	db.nextPos = max(head.Int64+1, db.meta["next_pos"])
	db.sync.committedPos.Store(head.Int64)
	db.feedPos.Store(db.meta["feed_pos"])
	if err := db.replay(ctx); err != nil {
		return err
	}
	return db.durable()
}

// checkpointLoop copies the WAL back into the database file in the
// background (PASSIVE: it never blocks the writer or readers).
//
// Under a steady load a background checkpoint never quite catches up (the
// writer appends while it copies), and SQLite starts the WAL over from its
// beginning only when a write transaction finds every frame copied. The
// WAL would then grow for as long as the load lasts, and every commit
// would extend the file, making its fdatasync journal the new size too.
// So once the WAL holds more than walRestartFrames, the loop copies the
// rest while holding the write lock, between two transactions: only what
// was written since the background pass, a few milliseconds. The next
// transaction then starts the WAL over, overwriting blocks it has.
func (db *DB) checkpointLoop(every time.Duration) {
	defer close(db.ckptDone)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-db.stopCkpt:
			return
		case <-t.C:
		}
		frames, done, err := db.checkpoint()
		if err != nil || frames <= walRestartFrames || done < frames/2 {
			continue
		}
		db.writeMu.Lock()
		_, _, _ = db.checkpoint()
		db.writeMu.Unlock()
	}
}

// walRestartFrames is the WAL size (in frames, of 4 KiB pages) above
// which the checkpointer makes SQLite start the WAL over (32 MiB).
const walRestartFrames = 8192

// checkpoint runs a PASSIVE checkpoint and returns the WAL's frames and
// how many of them are in the database file now.
func (db *DB) checkpoint() (frames, done int, err error) {
	var busy int
	err = db.ckpt.QueryRow("PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &done)
	return frames, done, err
}

// Path returns the database file's path.
func (db *DB) Path() string { return db.path }

// Close closes the database.
func (db *DB) Close() error { return db.close(true) }

// close closes the database; with materialize false it leaves the backlog
// unwritten, as a crash would (for tests of the replay).
func (db *DB) close(materialize bool) error {
	var errs []error
	if db.matStop != nil {
		close(db.matStop)
		<-db.matDone
	}
	if db.matStop != nil && materialize {
		// A clean shutdown leaves no backlog, so the next start replays nothing.
		db.writeMu.Lock()
		err := db.materializeAll(context.Background())
		db.writeMu.Unlock()
		if err == nil {
			err = db.durable()
		}
		errs = append(errs, err)
	}
	if db.stopCkpt != nil {
		close(db.stopCkpt)
		<-db.ckptDone
	}
	db.cache.close()
	db.rstmts.close()
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
	if db.sync != nil {
		errs = append(errs, db.sync.close())
	}
	return errors.Join(errs...)
}

// durable returns once every write committed so far is durable (see
// walSyncer). Every write calls it after its commit, before it returns.
func (db *DB) durable() error {
	if err := db.sync.commitDone(); err != nil {
		return fmt.Errorf("sqlite: %w", err)
	}
	return nil
}

// commit commits a write transaction and returns once it is durable.
func (db *DB) commit(tx *sql.Tx) error {
	if err := tx.Commit(); err != nil {
		return err
	}
	return db.durable()
}

// exec runs one statement on the writer (its own transaction) and returns
// once it is durable.
func (db *DB) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	res, err := db.writer.ExecContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return res, db.durable()
}

// Ping checks both pools, and that writing the backlog has not failed
// last time it was tried.
func (db *DB) Ping(ctx context.Context) error {
	db.matMu.Lock()
	err := db.matLastErr
	db.matMu.Unlock()
	if err != nil {
		return fmt.Errorf("ping sqlite: %w", err)
	}
	if err := db.reader.PingContext(ctx); err != nil {
		return fmt.Errorf("ping sqlite: %w", err)
	}
	var one int
	if err := db.queryRow(ctx, "SELECT 1").Scan(&one); err != nil {
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
