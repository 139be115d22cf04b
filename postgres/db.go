package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/meetsync/meetsync"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Config configures a DB. The zero value is usable.
type Config struct {
	// Node names this process in the notifications its commits send, so
	// that Listen can skip its own (they were signalled locally). Default
	// a random id.
	Node string
	// MaxConns is the size of the connection pool when the URL does not set
	// pool_max_conns. Default 16.
	MaxConns int32
	// TxAttempts is how often a transaction that lost a deadlock or a race
	// with another replica (a unique key taken meanwhile) is tried in all.
	// Default 10.
	TxAttempts int
	// ListenCheck is how long Listen's connection may stay quiet before it
	// is checked (a ping, answered within ListenCheck too): a connection
	// that went silent (its server failed over, or cut off by a network
	// partition) is replaced then, rather than when TCP gives up on it,
	// which takes many minutes. Default 30 s.
	ListenCheck time.Duration
	// PingTimeout bounds the ping a pooled connection gets before use when
	// it sat idle for a second or more: one that does not answer in time
	// (its server failed over, or a network partition cut it off) is
	// dropped and the call goes on with another connection, instead of
	// failing after the whole store timeout. Default 2 s.
	PingTimeout time.Duration
}

func (c Config) withDefaults() Config {
	if c.Node == "" {
		c.Node = meetsync.NewID("node")
	}
	if c.MaxConns <= 0 {
		c.MaxConns = 16
	}
	if c.TxAttempts <= 0 {
		c.TxAttempts = 10
	}
	if c.ListenCheck <= 0 {
		c.ListenCheck = 30 * time.Second
	}
	if c.PingTimeout <= 0 {
		c.PingTimeout = 2 * time.Second
	}
	return c
}

// DB is the PostgreSQL Store. It is safe for concurrent use, and several
// DBs (replicas) may share one database.
type DB struct {
	cfg    Config
	pool   pool
	connCf *pgx.ConnConfig // for dedicated connections (Listen, Leader)
	where  string          // host:port/db, for messages (never the password)

	handler  atomic.Pointer[func(kind string)] // Listen's, for rewakeSoon
	rewaking atomic.Bool
}

var _ meetsync.Store = (*DB)(nil)

// Open connects to the database at url (postgres://… or a key=value DSN;
// pool_max_conns and the other pgxpool parameters are honoured). It does
// not change the schema: call Migrate (or check with CheckSchema) before
// using the store.
func Open(ctx context.Context, url string, cfg Config) (*DB, error) {
	cfg = cfg.withDefaults()
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: the database URL is not valid: %s (postgres://user:password@host:port/database?… or host=… user=… dbname=…)", parseReason(err, url))
	}
	if !strings.Contains(url, "pool_max_conns") {
		pc.MaxConns = cfg.MaxConns
	}
	pc.PingTimeout = cfg.PingTimeout
	pc.AfterConnect = func(_ context.Context, c *pgx.Conn) error {
		registerTypes(c)
		return nil
	}
	db := &DB{cfg: cfg, connCf: pc.ConnConfig.Copy(), where: describe(pc.ConnConfig)}
	p, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("postgres: %s: %w", db.where, err)
	}
	db.pool = pool{p}
	if err := db.Ping(ctx); err != nil {
		db.pool.Close()
		return nil, err
	}
	return db, nil
}

// registerTypes makes timestamptz values scan in UTC, as the SQLite store
// returns them.
func registerTypes(c *pgx.Conn) {
	c.TypeMap().RegisterType(&pgtype.Type{Name: "timestamptz", OID: pgtype.TimestamptzOID, Codec: &pgtype.TimestamptzCodec{ScanLocation: time.UTC}})
}

// CheckURL reports whether url is a database URL Open can parse
// (postgres://… or a key=value DSN). Its error is the reason alone,
// without url, which may hold a password; it does not connect.
func CheckURL(url string) error {
	if _, err := pgxpool.ParseConfig(url); err != nil {
		return errors.New(parseReason(err, url))
	}
	return nil
}

// parseReason is why pgx could not parse url, without url itself: the
// parse error quotes it, password included (pgx's redaction is best
// effort, and net/url's errors quote it whole).
func parseReason(err error, url string) string {
	msg := err.Error()
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		// "cannot parse `<url, redacted>`: <reason> (<cause>)"
		if i := strings.LastIndex(msg, "`: "); i >= 0 {
			msg = msg[i+3:]
		}
	}
	for _, s := range []string{strconv.Quote(url), url} {
		if s != "" && s != `""` {
			msg = strings.ReplaceAll(msg, s, "the URL")
		}
	}
	return msg
}

func describe(c *pgx.ConnConfig) string {
	return fmt.Sprintf("%s:%d/%s", c.Host, c.Port, c.Database)
}

// Where describes the database (host:port/database), without credentials.
func (db *DB) Where() string { return db.where }

// Node returns the name of this process in notifications (Config.Node).
func (db *DB) Node() string { return db.cfg.Node }

// Close closes the pool.
func (db *DB) Close() error {
	db.pool.Close()
	return nil
}

// Ping checks that the database answers.
func (db *DB) Ping(ctx context.Context) error {
	var one int
	if err := db.pool.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("postgres: %s: %w", db.where, err)
	}
	return nil
}

// Migrations returns the names of the embedded migrations, in order.
func Migrations() ([]string, error) {
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	for i, n := range names {
		names[i] = strings.TrimSuffix(strings.TrimPrefix(n, "migrations/"), ".sql")
	}
	return names, nil
}

// Migrate applies the embedded migrations the database lacks, each in its
// own transaction, and returns the versions it applied. It holds an
// advisory lock meanwhile, so replicas that start at the same time apply
// each migration once: the others wait and then find nothing to do.
func (db *DB) Migrate(ctx context.Context) ([]string, error) {
	var applied []string
	err := db.WithLock(ctx, "migrate", func(ctx context.Context, conn *pgx.Conn) error {
		if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return err
		}
		have, err := appliedMigrations(ctx, conn)
		if err != nil {
			return err
		}
		names, err := Migrations()
		if err != nil {
			return err
		}
		for _, v := range names {
			if have[v] {
				continue
			}
			body, err := migrationFS.ReadFile("migrations/" + v + ".sql")
			if err != nil {
				return err
			}
			err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
				// No arguments: the simple protocol runs the whole file.
				if _, err := tx.Exec(ctx, string(body)); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version) VALUES ($1)", v)
				return err
			})
			if err != nil {
				return fmt.Errorf("migration %s: %w", v, err)
			}
			applied = append(applied, v)
		}
		return nil
	})
	if err != nil {
		return applied, fmt.Errorf("postgres: migrate %s: %w", db.where, err)
	}
	return applied, nil
}

func appliedMigrations(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}) (map[string]bool, error) {
	rows, err := q.Query(ctx, "SELECT version FROM schema_migrations")
	if err != nil {
		return nil, err
	}
	vs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	have := map[string]bool{}
	for _, v := range vs {
		have[v] = true
	}
	return have, nil
}

// CheckSchema returns an error naming the embedded migrations the database
// lacks (none: nil). Migrations the database has and this build does not
// know (applied by a newer meetsync) are not an error.
func (db *DB) CheckSchema(ctx context.Context) error {
	var exists bool
	if err := db.pool.QueryRow(ctx, "SELECT to_regclass('schema_migrations') IS NOT NULL").Scan(&exists); err != nil {
		return fmt.Errorf("postgres: %s: %w", db.where, err)
	}
	have := map[string]bool{}
	if exists {
		var err error
		if have, err = appliedMigrations(ctx, db.pool); err != nil {
			return fmt.Errorf("postgres: %s: %w", db.where, err)
		}
	}
	names, err := Migrations()
	if err != nil {
		return err
	}
	var missing []string
	for _, v := range names {
		if !have[v] {
			missing = append(missing, v)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("postgres: the database %s lacks %s: run \"meetsync migrate --database-url …\" (or serve without --no-migrate)",
			db.where, meetsync.MigrationList(missing))
	}
	return nil
}

// lockKey maps a lock name to an advisory lock key.
func lockKey(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte("meetsync:" + name))
	return int64(h.Sum64())
}

// WithLock runs fn holding the session advisory lock name (waiting for it
// as long as ctx allows), on a connection of its own that fn may use.
// Every replica on the database shares the lock names.
func (db *DB) WithLock(ctx context.Context, name string, fn func(ctx context.Context, conn *pgx.Conn) error) error {
	c, err := db.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	key := lockKey(name)
	if _, err := c.Exec(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
		c.Release()
		return fmt.Errorf("lock %s: %w", name, err)
	}
	ferr := fn(ctx, c.Conn())
	// Unlock on a fresh context: ctx may have ended. If it fails, the
	// connection is closed, which releases the lock too.
	uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Exec(uctx, "SELECT pg_advisory_unlock($1)", key); err != nil {
		c.Conn().Close(uctx)
	}
	c.Release()
	return ferr
}

// txOptions says what a transaction may retry.
type txOptions struct {
	// retryUnique retries on a unique violation: a key another replica
	// inserted meanwhile (a new user, a caller's event id, an
	// Idempotency-Key), which the next attempt finds.
	retryUnique bool
	// asyncCommit does not wait for the commit to reach the disk (claims:
	// losing one in a database crash only makes a delivery due again).
	asyncCommit bool
}

// inTx runs fn in a transaction and commits it, trying again (fn must start
// from scratch each time) when it lost a deadlock or, with retryUnique, a
// race for a unique key.
func (db *DB) inTx(ctx context.Context, o txOptions, fn func(tx *txn) error) error {
	return db.retry(ctx, o, func() error { return db.tryTx(ctx, o, fn) })
}

// retry runs try, again after a short pause when it lost a deadlock or,
// with o.retryUnique, a race for a unique key (try must start from scratch).
func (db *DB) retry(ctx context.Context, o txOptions, try func() error) error {
	var err error
	for attempt := 1; ; attempt++ {
		err = try()
		if err == nil || attempt >= db.cfg.TxAttempts || !retryable(err, o) || ctx.Err() != nil {
			return err
		}
		// A short random pause, growing: the winner of the race commits.
		d := time.Duration(rand.Int64N(int64(attempt)*int64(5*time.Millisecond))) + time.Millisecond
		if sleepCtx(ctx, d) != nil {
			return err
		}
	}
}

func (db *DB) tryTx(ctx context.Context, o txOptions, fn func(tx *txn) error) error {
	c, err := db.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	t := &txn{conn: c, o: o}
	err = fn(t)
	if err == nil && !t.done && t.begun {
		err = t.CommitWith(ctx, &pgx.Batch{})
	}
	if err != nil && t.begun && !t.done {
		// Any error leaves the transaction open (and aborted); a
		// connection that cannot even roll back is not reused.
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if _, rerr := c.Exec(rctx, "ROLLBACK"); rerr != nil {
			c.Conn().Close(rctx)
		}
		cancel()
	}
	c.Release()
	return unavailable(err)
}

// txn is a transaction on one pooled connection. Its BEGIN travels with
// its first statement or batch and its COMMIT with its last batch
// (CommitWith), so that a transaction of a few pipelined batches costs as
// many round trips, BEGIN and COMMIT included.
type txn struct {
	conn  *pgxpool.Conn
	o     txOptions
	begun bool
	done  bool // committed (or the COMMIT was sent and failed)
}

// opening returns the statements that open the transaction, once.
func (t *txn) opening(b *pgx.Batch) {
	if t.begun {
		return
	}
	t.begun = true
	b.Queue("BEGIN")
	if t.o.asyncCommit {
		b.Queue("SET LOCAL synchronous_commit = off")
	}
}

// SendBatch sends b in the transaction (opening it first if needed); the
// caller closes the results.
func (t *txn) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	full := &pgx.Batch{}
	t.opening(full)
	full.QueuedQueries = append(full.QueuedQueries, b.QueuedQueries...)
	return t.conn.SendBatch(ctx, full)
}

// CommitWith sends b and then COMMIT in one round trip.
func (t *txn) CommitWith(ctx context.Context, b *pgx.Batch) error {
	b.Queue("COMMIT")
	err := t.SendBatch(ctx, b).Close()
	// A COMMIT that ran ends the transaction even when it failed; one
	// that did not run (an earlier statement failed) leaves it to roll back.
	t.done = err == nil || t.conn.Conn().PgConn().TxStatus() == 'I'
	return err
}

func (t *txn) begin(ctx context.Context) error {
	if t.begun {
		return nil
	}
	b := &pgx.Batch{}
	t.opening(b)
	return t.conn.SendBatch(ctx, b).Close()
}

// Exec runs a statement in the transaction.
func (t *txn) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if err := t.begin(ctx); err != nil {
		return pgconn.CommandTag{}, err
	}
	return t.conn.Exec(ctx, sql, args...)
}

// Query runs a query in the transaction.
func (t *txn) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if err := t.begin(ctx); err != nil {
		return nil, err
	}
	return t.conn.Query(ctx, sql, args...)
}

// QueryRow runs a query returning one row in the transaction.
func (t *txn) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if err := t.begin(ctx); err != nil {
		return errRow{err}
	}
	return t.conn.QueryRow(ctx, sql, args...)
}

// CopyFrom loads rows with COPY in the transaction.
func (t *txn) CopyFrom(ctx context.Context, table pgx.Identifier, cols []string, src pgx.CopyFromSource) (int64, error) {
	if err := t.begin(ctx); err != nil {
		return 0, err
	}
	return t.conn.CopyFrom(ctx, table, cols, src)
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// SQLSTATE codes the store acts on.
const (
	codeUniqueViolation     = "23505"
	codeForeignKeyViolation = "23503"
	codeDeadlock            = "40P01"
	codeSerialization       = "40001"
)

func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func retryable(err error, o txOptions) bool {
	switch pgCode(err) {
	case codeDeadlock, codeSerialization:
		return true
	case codeUniqueViolation:
		return o.retryUnique
	}
	return false
}

// dataError reports whether err is PostgreSQL refusing a value (SQLSTATE
// class 22, e.g. a NUL character in a text column).
func dataError(err error) bool {
	return strings.HasPrefix(pgCode(err), "22")
}

// interpretError translates driver errors by code, never by text.
func interpretError(err error, what string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return meetsync.Errorf(meetsync.ENOTFOUND, "%s not found", what)
	}
	switch c := pgCode(err); {
	case c == codeUniqueViolation:
		return meetsync.Errorf(meetsync.ECONFLICT, "%s already exists", what)
	case c == codeForeignKeyViolation:
		return meetsync.Errorf(meetsync.ENOTFOUND, "%s refers to something that does not exist", what)
	case strings.HasPrefix(c, "22"):
		return meetsync.Errorf(meetsync.EINVALID, "%s holds a value PostgreSQL cannot store (e.g. a NUL character)", what)
	}
	return err
}

// cleanText makes s storable in a text column: valid UTF-8 without NUL.
// Only for texts meetsync records (attempt errors), never for keys.
func cleanText(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.ReplaceAll(s, "\x00", "\uFFFD")
}

// timePtr returns nil for the zero time.
func timePtr(t *time.Time) any {
	if t == nil {
		return nil
	}
	return *t
}

// fromNull turns a scanned nullable time into the zero time for NULL.
func fromNull(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}
