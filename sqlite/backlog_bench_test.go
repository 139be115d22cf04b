package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/sqlite"
)

// BenchmarkMaterialize measures writing the backlog: 1,000 users with 5
// pending status events each, written Batch users per transaction.
func BenchmarkMaterialize(b *testing.B) {
	ctx := context.Background()
	for _, batch := range []int{16, 64, 256} {
		b.Run(fmt.Sprintf("batch%d", batch), func(b *testing.B) {
			db, err := sqlite.Open(filepath.Join(b.TempDir(), "meetsync.db"), sqlite.Config{
				Materialize: sqlite.MaterializeConfig{After: time.Hour, MaxPending: 1 << 30, Batch: batch}})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			now := time.Now().UTC()
			app := &meetsync.App{ID: meetsync.NewID("app"), Name: "bench", CreatedAt: now}
			key, _ := meetsync.NewAPIKey(app.ID, now)
			if err := db.AppCreate(ctx, app, key); err != nil {
				b.Fatal(err)
			}
			w := newWorkload(b, 1, app.ID)
			seq := int64(0)
			fill := func() {
				for range 5 {
					var reqs []*meetsync.AppendRequest
					for u := range 1000 {
						seq++
						cs := seq
						ev := w.prepare(&meetsync.EventInput{Type: meetsync.TypeMeetingStatusChanged, UserID: fmt.Sprintf("user-%d", u),
							DeviceID: "d", ClientSeq: &cs, Data: []byte(`{"status":"in_meeting","arg":0,"meeting_num":"81234567890"}`)})
						reqs = append(reqs, &meetsync.AppendRequest{AppID: app.ID, Events: []*meetsync.Event{ev}})
					}
					if err := db.EventsAppend(ctx, reqs); err != nil {
						b.Fatal(err)
					}
				}
			}
			fill()
			for db.BacklogSize() > 0 {
				db.MaterializeSome(ctx)
			}
			b.ResetTimer()
			var rounds int
			for range b.N {
				b.StopTimer()
				fill()
				b.StartTimer()
				for db.BacklogSize() > 0 {
					if _, err := db.MaterializeSome(ctx); err != nil {
						b.Fatal(err)
					}
					rounds++
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*1000), "µs/user")
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(rounds), "µs/round")
		})
	}
}
