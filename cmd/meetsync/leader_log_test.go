package main

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/meetsync/meetsync/internal/pgtest"
)

// TestLeaderChangesLogged: a replica logs at INFO when it becomes the
// leader of a cluster-wide job and when it gives leadership up, with the
// reason: its lock's connection lost (then it leads again), or stopping.
func TestLeaderChangesLogged(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	db := pgtest.NewDatabase(t)
	s := startServer(t, filepath.Join(t.TempDir(), "a"), "--database-url", db)
	const became = `msg="became the leader of a cluster-wide job" job=sessions node=node_`
	const gaveUp = `msg="gave up the leadership of a cluster-wide job" job=sessions node=node_`
	waitLog := func(what string, n int) {
		t.Helper()
		for strings.Count(s.stderr.String(), what) < n {
			if ctx.Err() != nil || s.exited() {
				t.Fatalf("the log does not have %d × %s:\n%s", n, what, s.stderr.String())
			}
			time.Sleep(20 * time.Millisecond) // polling, bounded by ctx
		}
	}
	waitLog(became, 1)

	// The database ends the connection holding the leader lock.
	admin, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	var n int
	if err := admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&n); err != nil || n == 0 {
		t.Fatalf("terminate the leader's connection: %d terminated, %v", n, err)
	}
	waitLog(gaveUp, 1)
	if log := s.stderr.String(); !strings.Contains(log, `reason="lost the connection that holds the leader lock`) {
		t.Errorf("giving leadership up does not say it lost the lock's connection:\n%s", log)
	}
	waitLog(became, 2)
	if code := s.term(t); code != 0 {
		t.Fatalf("SIGTERM: exit %d", code)
	}
	log := s.stderr.String()
	if strings.Count(log, gaveUp) != 2 || !regexp.MustCompile(regexp.QuoteMeta(gaveUp)+`\S+ reason=stopping`).MatchString(log) {
		t.Errorf("stopping does not give leadership up with reason=stopping:\n%s", log)
	}
}
