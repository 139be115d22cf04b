package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"slices"
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
	// SyncMethod is how the FULL group fsync reaches the disk: SyncAuto
	// (the default) uses io_uring where the kernel allows it, so no Go
	// thread blocks in fdatasync while it holds a scheduler slot, and
	// fdatasync elsewhere; SyncIOURing requires io_uring (Open fails
	// without it); SyncFdatasync always calls fdatasync. The durability
	// is the same.
	SyncMethod string
	// BusyTimeout is how long a connection waits for a lock. Default 10 s.
	BusyTimeout time.Duration
	// UserCacheSize is how many users' states are kept in memory for the
	// write path. Default 100,000.
	UserCacheSize int
	// CheckpointInterval is how often a background goroutine checkpoints
	// the WAL (the writer never does, so commits do not pay for it).
	// Default 200 ms.
	CheckpointInterval time.Duration
	// NoMigrate opens the store without changing its schema (for tools
	// that run beside a server, which may be of another version): Open
	// fails if a migration this version knows is missing.
	NoMigrate bool
	// Beside opens the store beside the server that owns it, for the
	// admin commands (apps, keys, backup) that run next to a live server:
	// it rebuilds no backlog and writes none, and runs no checkpointer. The
	// server alone writes users' states behind their events; a second
	// writer of them could put back an older state it had just replaced.
	// Appending events through such a store is not meant.
	Beside bool
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
	if c.SyncMethod == "" {
		c.SyncMethod = SyncAuto
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

// The values of Config.SyncMethod.
const (
	SyncAuto      = "auto"
	SyncIOURing   = "io_uring"
	SyncFdatasync = "fdatasync"
)

func (c Config) validate() error {
	if err := CheckSyncMethod(c.SyncMethod); err != nil {
		return fmt.Errorf("sqlite: sync method %w", err)
	}
	if err := CheckSynchronous(c.Synchronous); err != nil {
		return fmt.Errorf("sqlite: synchronous %w", err)
	}
	return nil
}

// CheckSynchronous checks a Config.Synchronous value (any case); the error
// says what is accepted, for the caller to prefix with the setting's name.
func CheckSynchronous(s string) error {
	switch strings.ToUpper(s) {
	case "FULL", "NORMAL", "EXTRA":
		return nil
	}
	return fmt.Errorf("must be FULL, NORMAL or EXTRA, not %q", s)
}

// CheckSyncMethod checks a Config.SyncMethod value, as CheckSynchronous.
func CheckSyncMethod(m string) error {
	switch m {
	case SyncAuto, SyncIOURing, SyncFdatasync:
		return nil
	}
	return fmt.Errorf("must be %s, %s or %s, not %q", SyncAuto, SyncIOURing, SyncFdatasync, m)
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
	feedPos   atomic.Int64 // feed_runs covers every event up to here
	lastRun   *feedRun     // the run that ends at feedPos, if known
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
	if db.sync, err = newWALSyncer(path, groupSync, cfg.SyncMethod); err != nil {
		db.writer.Close()
		return nil, err
	}
	migrate := db.migrate
	if cfg.NoMigrate {
		migrate = db.checkSchema
	}
	if err := migrate(context.Background()); err != nil {
		db.writer.Close()
		db.sync.close()
		return nil, err
	}
	if err := db.start(context.Background(), !cfg.Beside); err != nil {
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
	if cfg.Beside {
		return db, nil
	}
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

// start reads the feed's positions and, with replay, rebuilds the backlog
// a crash left (see backlog.go).
func (db *DB) start(ctx context.Context, replay bool) error {
	meta := map[string]int64{}
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
		meta[k] = v
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
	db.nextPos = max(head.Int64+1, meta["next_pos"])
	db.sync.committedPos.Store(head.Int64)
	db.feedPos.Store(meta["feed_pos"])
	// The run the next feed entries may continue: the one ending at
	// feed_pos (if that event is still there).
	var app string
	err = db.writer.QueryRowContext(ctx, "SELECT app_id FROM events WHERE pos = ?", meta["feed_pos"]).Scan(&app)
	if err == nil {
		r := feedRun{app: app}
		err = db.writer.QueryRowContext(ctx, "SELECT first_pos, last_pos FROM feed_runs WHERE app_id = ? AND first_pos <= ? ORDER BY first_pos DESC LIMIT 1",
			app, meta["feed_pos"]).Scan(&r.first, &r.last)
		if err == nil && r.last == meta["feed_pos"] {
			db.lastRun = &r
		}
	}
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	if !replay {
		return nil
	}
	if err := db.replay(ctx, meta["materialized_pos"], meta["feed_pos"]); err != nil {
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

// Migrations returns the names of the migrations in order: the embedded
// SQL files (migrations/NNNN_name.sql) and the steps written in Go
// (goMigrations), by version.
func Migrations() ([]string, error) {
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	for version := range goMigrations {
		names = append(names, version)
	}
	slices.SortFunc(names, func(a, b string) int { return strings.Compare(migrationVersion(a), migrationVersion(b)) })
	return names, nil
}

func migrationVersion(name string) string {
	return strings.TrimSuffix(strings.TrimPrefix(name, "migrations/"), ".sql")
}

// goMigrations are the migration steps SQL alone cannot do, by version.
var goMigrations = map[string]func(context.Context, *sql.Tx) error{
	"0008_fill_runs": fillRuns,
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
		version := migrationVersion(name)
		if err := db.apply(ctx, name, version); err != nil {
			return fmt.Errorf("migrate %s: %w", version, err)
		}
	}
	return nil
}

// checkSchema fails unless every migration this version knows has been
// applied.
func (db *DB) checkSchema(ctx context.Context) error {
	have := map[string]bool{}
	var tables int
	if err := db.writer.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'").Scan(&tables); err != nil {
		return fmt.Errorf("check schema: %w", err)
	}
	if tables > 0 {
		rows, err := db.writer.QueryContext(ctx, "SELECT version FROM schema_migrations")
		if err != nil {
			return fmt.Errorf("check schema: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var v string
			if err := rows.Scan(&v); err != nil {
				return fmt.Errorf("check schema: %w", err)
			}
			have[v] = true
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("check schema: %w", err)
		}
	}
	names, err := Migrations()
	if err != nil {
		return err
	}
	var missing []string
	for _, name := range names {
		if v := migrationVersion(name); !have[v] {
			missing = append(missing, v)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("the store lacks %s (it was last started by an older meetsync): start \"meetsync serve\" of this version once, "+
			"or stop the server and run \"meetsync migrate\"", meetsync.MigrationList(missing))
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
	if step, ok := goMigrations[version]; ok {
		err = step(ctx, tx)
	} else {
		var body []byte
		if body, err = migrationFS.ReadFile(name); err == nil {
			_, err = tx.ExecContext(ctx, string(body))
		}
	}
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)", version, time.Now().UnixMicro()); err != nil {
		return err
	}
	return tx.Commit()
}

// fillRuns (0008) writes user_chunks and feed_runs for the events stored
// before 0007, reading the indexes on events that 0009 drops, a page of
// rows at a time.
func fillRuns(ctx context.Context, tx *sql.Tx) error {
	const page = 10000
	var cur userKey
	var pend []pendingEvent
	flush := func(all bool) error {
		for len(pend) >= maxChunkEntries || (all && len(pend) > 0) {
			n := min(len(pend), maxChunkEntries)
			first, b := encodeChunk(pend[:n])
			if _, err := tx.ExecContext(ctx, "INSERT INTO user_chunks (app_id, user_id, last_pos, first_pos, entries) VALUES (?, ?, ?, ?, ?)",
				cur.app, cur.user, pend[n-1].pos, first, b); err != nil {
				return err
			}
			pend = pend[n:]
		}
		return nil
	}
	var after struct {
		k   userKey
		seq int64
	}
	for {
		type row struct {
			k userKey
			p pendingEvent
		}
		var got []row
		rows, err := tx.QueryContext(ctx, `SELECT app_id, user_id, pos, seq, device_id, client_seq FROM events INDEXED BY events_user
			WHERE (app_id, user_id, seq) > (?, ?, ?) ORDER BY app_id, user_id, seq LIMIT ?`, after.k.app, after.k.user, after.seq, page)
		if err != nil {
			return err
		}
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.k.app, &r.k.user, &r.p.pos, &r.p.seq, &r.p.deviceID, &r.p.clientSeq); err != nil {
				rows.Close()
				return err
			}
			got = append(got, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, r := range got {
			if r.k != cur {
				if err := flush(true); err != nil {
					return err
				}
				cur = r.k
			}
			pend = append(pend, r.p)
			if err := flush(false); err != nil {
				return err
			}
		}
		if len(got) < page {
			break
		}
		after.k, after.seq = got[len(got)-1].k, got[len(got)-1].p.seq
	}
	if err := flush(true); err != nil {
		return err
	}

	var run *feedRun
	put := func() error {
		if run == nil {
			return nil
		}
		_, err := tx.ExecContext(ctx, "INSERT INTO feed_runs (app_id, first_pos, last_pos) VALUES (?, ?, ?)", run.app, run.first, run.last)
		return err
	}
	for last := int64(0); ; {
		rows, err := tx.QueryContext(ctx, "SELECT app_id, pos FROM events WHERE pos > ? ORDER BY pos LIMIT ?", last, page)
		if err != nil {
			return err
		}
		type row struct {
			app string
			pos int64
		}
		var got []row
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.app, &r.pos); err != nil {
				rows.Close()
				return err
			}
			got = append(got, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, r := range got {
			if run != nil && run.app == r.app {
				run.last = r.pos
				continue
			}
			if err := put(); err != nil {
				return err
			}
			run = &feedRun{app: r.app, first: r.pos, last: r.pos}
		}
		if len(got) < page {
			break
		}
		last = got[len(got)-1].pos
	}
	return put()
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
