package postgres_test

import (
	"context"
	"sync"
	"testing"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/internal/pgtest"
	"github.com/meetsync/meetsync/postgres"
	"github.com/meetsync/meetsync/storetest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// open opens (and with migrate, migrates) the database at url.
func open(t *testing.T, url string, migrate bool) *postgres.DB {
	t.Helper()
	ctx := context.Background()
	db, err := postgres.Open(ctx, url, postgres.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if migrate {
		if _, err := db.Migrate(ctx); err != nil {
			db.Close()
			t.Fatal(err)
		}
	}
	return db
}

// TestStore runs the store conformance suite on a fresh database per
// test, with peers (other handles, as replicas, on the same database) and
// every capability (sessions, invitations, types, purge).
func TestStore(t *testing.T) {
	var mu sync.Mutex
	urls := map[meetsync.Store]string{}
	storetest.Run(t, func(t *testing.T) meetsync.Store {
		url := pgtest.NewDatabase(t)
		db := open(t, url, true)
		mu.Lock()
		urls[db] = url
		mu.Unlock()
		return db
	}, storetest.WithPeer(func(t *testing.T, s meetsync.Store) meetsync.Store {
		mu.Lock()
		url := urls[s]
		mu.Unlock()
		return open(t, url, false)
	}), storetest.WithCapabilities(storetest.AllCapabilities))
}
