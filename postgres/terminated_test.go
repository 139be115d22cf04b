package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/internal/pgtest"
)

// TestTerminatedConnectionsUnavailable: the server ends the pool's
// connections (a restart, a failover, pg_terminate_backend); the next
// read on each, whose error shows while its rows are read rather than at
// Query, fails as the database being unavailable (503, retried by the
// dispatcher with a WARN), never as an internal error.
func TestTerminatedConnectionsUnavailable(t *testing.T) {
	url := pgtest.NewDatabase(t)
	db := open(t, url, true)
	defer db.Close()
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)

	claim := func() error {
		_, err := db.DeliveriesClaim(ctx, meetsync.DeliveryClaimParams{Owner: "r1", Now: time.Now(), Lease: time.Minute, Limit: 10})
		return err
	}
	reads := []struct {
		name string
		call func() error
	}{
		{"DeliveriesClaim", claim},
		{"AppList", func() error { _, err := db.AppList(ctx); return err }},
		{"UserList", func() error {
			_, err := db.UserList(ctx, meetsync.UserListParams{AppID: "app_x", Limit: 10})
			return err
		}},
		{"EventList", func() error {
			_, err := db.EventList(ctx, meetsync.EventListParams{AppID: "app_x", Limit: 10})
			return err
		}},
		{"DeliveryQueueDepths", func() error { _, err := db.DeliveryQueueDepths(ctx); return err }},
	}
	// Each round another read goes first after the connections end:
	// reading sequentially, the pool has one connection, and the first
	// read meets its end.
	failed := map[string]bool{}
	for round := range len(reads) {
		for _, r := range reads {
			if err := r.call(); err != nil {
				t.Fatalf("round %d, %s before the connections end: %v", round, r.name, err)
			}
		}
		var n int
		if err := admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&n); err != nil || n == 0 {
			t.Fatalf("terminating the pool's connections: %d, %v", n, err)
		}
		for i := range reads {
			r := reads[(round+i)%len(reads)]
			err := r.call()
			if err == nil {
				continue // the pool saw the connection was gone, or another took its place
			}
			failed[r.name] = true
			if code := meetsync.ErrorCode(err); code != meetsync.EUNAVAILABLE {
				t.Errorf("round %d, %s on a connection the server ended: code %s (%v), want %s", round, r.name, code, err, meetsync.EUNAVAILABLE)
			}
		}
	}
	if len(failed) == 0 {
		t.Fatal("no read met an ended connection: the test shows nothing")
	}
	t.Logf("reads that met an ended connection: %v", failed)
}
