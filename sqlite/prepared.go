package sqlite

import (
	"context"
	"database/sql"
	"sync"
)

// stmtCache keeps the writer connection's prepared statements by query
// text, so the hot write paths (append, claim, complete) do not make
// SQLite parse SQL again for every row.
//
// The writer pool has one connection, held by any open transaction, so a
// statement is never prepared inside one (that would wait for the
// connection forever): a miss runs the SQL on the transaction directly and
// queues the query, which beginWrite prepares before the next transaction.
type stmtCache struct {
	mu      sync.Mutex
	m       map[string]*sql.Stmt
	pending map[string]bool
}

const maxCachedStmts = 512

func (c *stmtCache) get(q string) *sql.Stmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.m[q]; ok {
		return st
	}
	if len(c.m)+len(c.pending) < maxCachedStmts {
		if c.pending == nil {
			c.pending = map[string]bool{}
		}
		c.pending[q] = true
	}
	return nil
}

// preparePending prepares the queued queries. The caller holds no
// transaction on db, and c.mu is not held while preparing: preparing waits
// for the writer connection, which a transaction using the cache may hold.
func (c *stmtCache) preparePending(ctx context.Context, db *sql.DB) error {
	c.mu.Lock()
	var qs []string
	for q := range c.pending {
		qs = append(qs, q)
	}
	c.mu.Unlock()
	for _, q := range qs {
		st, err := db.PrepareContext(ctx, q)
		if err != nil {
			return err
		}
		c.mu.Lock()
		if _, ok := c.m[q]; ok {
			st.Close()
		} else {
			if c.m == nil {
				c.m = map[string]*sql.Stmt{}
			}
			c.m[q] = st
		}
		delete(c.pending, q)
		c.mu.Unlock()
	}
	return nil
}

func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.m {
		st.Close()
	}
	c.m = nil
}

// beginWrite starts a write transaction, first preparing the statements
// the previous ones missed.
func (db *DB) beginWrite(ctx context.Context) (*sql.Tx, error) {
	if err := db.cache.preparePending(ctx, db.writer); err != nil {
		return nil, err
	}
	return db.writer.BeginTx(ctx, nil)
}

// wtx is a write transaction whose statements come from the cache.
type wtx struct {
	db *DB
	tx *sql.Tx
}

func (w wtx) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	if st := w.db.cache.get(q); st != nil {
		return w.tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return w.tx.ExecContext(ctx, q, args...)
}

func (w wtx) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	if st := w.db.cache.get(q); st != nil {
		return w.tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	}
	return w.tx.QueryContext(ctx, q, args...)
}

func (w wtx) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	if st := w.db.cache.get(q); st != nil {
		return w.tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	return w.tx.QueryRowContext(ctx, q, args...)
}

// readerStmts keeps the read pool's prepared statements by query text
// (database/sql prepares a *sql.Stmt on each pool connection as it is
// used), so frequent reads do not make SQLite parse SQL each time.
type readerStmts struct {
	mu sync.RWMutex
	m  map[string]*sql.Stmt
}

func (r *readerStmts) get(ctx context.Context, db *sql.DB, q string) *sql.Stmt {
	r.mu.RLock()
	st, ok := r.m[q]
	r.mu.RUnlock()
	if ok {
		return st
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if st, ok := r.m[q]; ok {
		return st
	}
	if len(r.m) >= maxCachedStmts {
		return nil
	}
	st, err := db.PrepareContext(ctx, q)
	if err != nil {
		return nil // the query itself reports the error
	}
	if r.m == nil {
		r.m = map[string]*sql.Stmt{}
	}
	r.m[q] = st
	return st
}

func (r *readerStmts) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, st := range r.m {
		st.Close()
	}
	r.m = nil
}

// query runs a read on the read pool with a cached statement.
func (db *DB) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	if st := db.rstmts.get(ctx, db.reader, q); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return db.reader.QueryContext(ctx, q, args...)
}

// queryRow runs a one-row read on the read pool with a cached statement.
func (db *DB) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	if st := db.rstmts.get(ctx, db.reader, q); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return db.reader.QueryRowContext(ctx, q, args...)
}
