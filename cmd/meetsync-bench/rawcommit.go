package main

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"time"

	_ "modernc.org/sqlite" // the driver meetsync's sqlite package uses
)

// rawCommitResult is the store's raw commit rate: Clients goroutines
// committing small INSERT transactions back to back.
type rawCommitResult struct {
	RowsPerTxn int
	Clients    int
	Txns       int64
	Rows       int64
	Elapsed    time.Duration
	Latency    []time.Duration // per commit, sorted
}

// sqliteDSN opens path with the pragmas of sqlite.Open (meetsync's store).
func sqliteDSN(path string) string {
	v := url.Values{}
	v.Add("_pragma", "busy_timeout(10000)")
	v.Add("_pragma", "journal_mode(WAL)")
	v.Add("_pragma", "synchronous(FULL)")
	v.Add("_pragma", "foreign_keys(ON)")
	v.Add("_pragma", "cache_size(-65536)")
	v.Add("_pragma", "temp_store(MEMORY)")
	return "file:" + path + "?" + v.Encode() + "&_txlock=immediate"
}

// sqliteRawCommit measures transactions of rowsPerTxn single-row INSERTs
// per second on a fresh SQLite file in dir, from one goroutine.
func sqliteRawCommit(ctx context.Context, dir string, rowsPerTxn int, w window, m *meter) (rawCommitResult, error) {
	res := rawCommitResult{RowsPerTxn: rowsPerTxn, Elapsed: w.Duration, Clients: 1}
	db, err := sql.Open("sqlite", sqliteDSN(filepath.Join(dir, fmt.Sprintf("raw-%d.db", rowsPerTxn))))
	if err != nil {
		return res, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, `CREATE TABLE bench (id INTEGER PRIMARY KEY, user_id TEXT NOT NULL, seq INTEGER NOT NULL, data BLOB NOT NULL)`); err != nil {
		return res, err
	}
	ins, err := db.PrepareContext(ctx, "INSERT INTO bench (user_id, seq, data) VALUES (?, ?, ?)")
	if err != nil {
		return res, err
	}
	defer ins.Close()
	data := []byte(`{"status":"in_meeting","status_code":2,"reason":"none","reason_code":0,"meeting_num":"81234567890","device_id":"bench-1"}`)
	users := make([]string, 1000)
	for i := range users {
		users[i] = fmt.Sprintf("user-%d", i)
	}

	t0 := time.Now()
	from, to := t0.Add(w.Warmup), t0.Add(w.Warmup+w.Duration)
	stop := m.schedule(from, to)
	defer stop()
	var seq int64
	for ctx.Err() == nil {
		start := time.Now()
		if !start.Before(to) {
			break
		}
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return res, err
		}
		st := tx.StmtContext(ctx, ins)
		for range rowsPerTxn {
			seq++
			if _, err := st.ExecContext(ctx, users[seq%int64(len(users))], seq, data); err != nil {
				tx.Rollback()
				return res, err
			}
		}
		if err := tx.Commit(); err != nil {
			return res, err
		}
		end := time.Now()
		if !end.Before(from) && end.Before(to) {
			res.Txns++
			res.Rows += int64(rowsPerTxn)
			res.Latency = append(res.Latency, end.Sub(start))
		}
	}
	slices.Sort(res.Latency)
	return res, ctx.Err()
}
