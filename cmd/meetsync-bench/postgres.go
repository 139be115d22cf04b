package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/postgres"
)

// pgKind runs the benchmarks on the PostgreSQL server of --database-url:
// each phase gets a database of its own (CREATE DATABASE, dropped after),
// so the role of the URL must be allowed to create databases.
type pgKind struct {
	url     string // the database the role connects to for CREATE DATABASE
	clients int
}

// dbCounter numbers the databases of this process.
var dbCounter atomic.Int64

// newPostgresKind checks the server and describes it for the report.
func newPostgresKind(ctx context.Context, rawURL string, clients int) (storeKind, error) {
	k := &pgKind{url: rawURL, clients: clients}
	conn, err := pgx.Connect(ctx, rawURL)
	if err != nil {
		return storeKind{}, fmt.Errorf("--database-url: cannot connect: %w", err)
	}
	defer conn.Close(context.Background())
	var version, sync, fsync, method string
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version'), current_setting('synchronous_commit'), current_setting('fsync'), current_setting('wal_sync_method')").
		Scan(&version, &sync, &fsync, &method); err != nil {
		return storeKind{}, err
	}
	cfg := conn.Config()
	return storeKind{
		Describe: fmt.Sprintf("PostgreSQL %s at %s:%d, synchronous_commit=%s, fsync=%s, wal_sync_method=%s (a fresh database per phase)",
			version, cfg.Host, cfg.Port, sync, fsync, method),
		Open:             k.open,
		RawCommit:        k.rawCommit,
		RawCommitClients: clients,
		RawCommitSerial: func(ctx context.Context, dir string, w window, m *meter) (rawCommitResult, error) {
			one := *k
			one.clients = 1
			return one.rawCommit(ctx, dir, 1, w, m)
		},
	}, nil
}

// createDatabase creates a fresh database and returns its URL and a
// function that drops it.
func (k *pgKind) createDatabase(dir string) (string, func(), error) {
	name := fmt.Sprintf("meetsync_bench_%d_%d_%d", os.Getpid(), time.Now().UnixNano()%1e9, dbCounter.Add(1))
	admin := func(sql string) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conn, err := pgx.Connect(ctx, k.url)
		if err != nil {
			return err
		}
		defer conn.Close(context.Background())
		_, err = conn.Exec(ctx, sql)
		return err
	}
	if err := admin("CREATE DATABASE " + name); err != nil {
		return "", nil, fmt.Errorf("create database %s (the role of --database-url must be allowed to): %w", name, err)
	}
	drop := func() {
		if err := admin("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)"); err != nil {
			fmt.Fprintf(os.Stderr, "meetsync-bench: drop database %s: %v\n", name, err)
		}
	}
	u, err := url.Parse(k.url)
	if err != nil {
		drop()
		return "", nil, err
	}
	u.Path = "/" + name
	// The directory holds nothing, but says which database a phase used.
	_ = os.WriteFile(filepath.Join(dir, "database"), []byte(name+"\n"), 0o600)
	return u.String(), drop, nil
}

// droppingStore drops its database when closed.
type droppingStore struct {
	*postgres.DB
	url  string
	drop func()
}

// diskBytes is the size of the store's database on the server's disk
// (pg_database_size), -1 if it cannot be read.
func (s *droppingStore) diskBytes() int64 {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.url)
	if err != nil {
		return -1
	}
	defer conn.Close(context.Background())
	var n int64
	if err := conn.QueryRow(ctx, "SELECT pg_database_size(current_database())").Scan(&n); err != nil {
		return -1
	}
	return n
}

func (s *droppingStore) Close() error {
	err := s.DB.Close()
	s.drop()
	return err
}

func (k *pgKind) open(dir string) (meetsync.Store, error) {
	u, drop, err := k.createDatabase(dir)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Room for the dispatcher's claims and completions beside the committer.
	db, err := postgres.Open(ctx, u, postgres.Config{MaxConns: 32})
	if err == nil {
		_, err = db.Migrate(ctx)
		if err != nil {
			db.Close()
		}
	}
	if err != nil {
		drop()
		return nil, err
	}
	return &droppingStore{DB: db, url: u, drop: drop}, nil
}

// rawCommit measures PostgreSQL's raw commit rate: k.clients connections
// committing small INSERT transactions (rowsPerTxn rows) back to back, on
// a fresh database. With one row per transaction and many clients this is
// what the server's own group commit (commits sharing a WAL flush) gets.
func (k *pgKind) rawCommit(ctx context.Context, dir string, rowsPerTxn int, w window, m *meter) (rawCommitResult, error) {
	res := rawCommitResult{RowsPerTxn: rowsPerTxn, Elapsed: w.Duration, Clients: k.clients}
	u, drop, err := k.createDatabase(dir)
	if err != nil {
		return res, err
	}
	defer drop()
	setup, err := pgx.Connect(ctx, u)
	if err != nil {
		return res, err
	}
	_, err = setup.Exec(ctx, `CREATE TABLE bench (id bigserial PRIMARY KEY, user_id text NOT NULL, seq bigint NOT NULL, data bytea NOT NULL)`)
	setup.Close(context.Background())
	if err != nil {
		return res, err
	}
	conns := make([]*pgx.Conn, k.clients)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close(context.Background())
			}
		}
	}()
	for i := range conns {
		if conns[i], err = pgx.Connect(ctx, u); err != nil {
			return res, fmt.Errorf("connection %d of %d: %w", i+1, k.clients, err)
		}
	}
	data := []byte(`{"status":"in_meeting","status_code":2,"reason":"none","reason_code":0,"meeting_num":"81234567890","device_id":"bench-1"}`)
	t0 := time.Now()
	from, to := t0.Add(w.Warmup), t0.Add(w.Warmup+w.Duration)
	stop := m.schedule(from, to)
	defer stop()
	var mu sync.Mutex
	var wg sync.WaitGroup
	var firstErr error
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			var txns int64
			user := fmt.Sprintf("user-%d", i)
			seq := int64(0)
			for ctx.Err() == nil {
				start := time.Now()
				if !start.Before(to) {
					break
				}
				err := func() error {
					if rowsPerTxn == 1 {
						seq++
						_, err := c.Exec(ctx, "INSERT INTO bench (user_id, seq, data) VALUES ($1, $2, $3)", user, seq, data)
						return err
					}
					b := &pgx.Batch{}
					for range rowsPerTxn {
						seq++
						b.Queue("INSERT INTO bench (user_id, seq, data) VALUES ($1, $2, $3)", user, seq, data)
					}
					return pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error { return tx.SendBatch(ctx, b).Close() })
				}()
				if err != nil {
					mu.Lock()
					if firstErr == nil && ctx.Err() == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				end := time.Now()
				if !end.Before(from) && end.Before(to) {
					txns++
					lat = append(lat, end.Sub(start))
				}
			}
			mu.Lock()
			res.Txns += txns
			res.Rows += txns * int64(rowsPerTxn)
			res.Latency = append(res.Latency, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	slices.Sort(res.Latency)
	if firstErr != nil {
		return res, firstErr
	}
	return res, ctx.Err()
}
