package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/sqlite"
)

// TestWALSyncMetrics checks that every acknowledged write of the default
// (synchronous FULL) store is counted in the WAL sync metrics (each of
// three writes in a row needs its own sync), and that with synchronous
// NORMAL, where SQLite decides durability, none is.
func TestWALSyncMetrics(t *testing.T) {
	for _, tc := range []struct {
		synchronous string
		wantSyncs   bool
	}{{"FULL", true}, {"NORMAL", false}} {
		t.Run(tc.synchronous, func(t *testing.T) {
			db, err := sqlite.Open(filepath.Join(t.TempDir(), "meetsync.db"), sqlite.Config{Synchronous: tc.synchronous})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			reg := prometheus.NewPedanticRegistry()
			reg.MustRegister(db.Collectors()...)
			before, _ := db.WALSyncs()
			now := time.Now().UTC()
			for i := range 3 {
				app := &meetsync.App{ID: meetsync.NewID("app"), Name: "m" + string(rune('a'+i)), CreatedAt: now}
				key, _ := meetsync.NewAPIKey(app.ID, now)
				if err := db.AppCreate(context.Background(), app, key); err != nil {
					t.Fatal(err)
				}
			}
			n, took := db.WALSyncs()
			if got := n - before; tc.wantSyncs && got < 3 || !tc.wantSyncs && n != 0 {
				t.Fatalf("WALSyncs after 3 writes: %d more (%d in all), want syncs: %v", got, n, tc.wantSyncs)
			}
			if tc.wantSyncs && took <= 0 {
				t.Errorf("WALSyncs took %v for %d syncs", took, n)
			}
			mfs, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			// The store's background writer may sync meanwhile: the
			// metrics lie between the figures read before and after.
			n2, took2 := db.WALSyncs()
			got := map[string]float64{}
			for _, mf := range mfs {
				got[mf.GetName()] = mf.GetMetric()[0].GetCounter().GetValue()
			}
			if c := got["meetsync_sqlite_wal_syncs_total"]; c < float64(n) || c > float64(n2) {
				t.Errorf("meetsync_sqlite_wal_syncs_total = %v, want %d..%d", c, n, n2)
			}
			if c := got["meetsync_sqlite_wal_sync_seconds_total"]; c < took.Seconds() || c > took2.Seconds() {
				t.Errorf("meetsync_sqlite_wal_sync_seconds_total = %v, want %v..%v", c, took.Seconds(), took2.Seconds())
			}
		})
	}
}
