package sqlite_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
)

// TestPurgeBefore: events older than the cutoff go with their finished
// deliveries; an event whose delivery is still pending stays, and so does
// every event after it; idempotency records older than the cutoff go.
func TestPurgeBefore(t *testing.T) {
	db, appID, _ := setup(t)
	now := time.Now().UTC()
	old := now.Add(-2 * time.Hour)
	appendN := func(n int, at time.Time, key string) {
		t.Helper()
		req := &meetsync.AppendRequest{AppID: appID, IdempotencyKey: key, RequestHash: []byte(key)}
		for i := 0; i < n; i++ {
			req.Events = append(req.Events, &meetsync.Event{ID: meetsync.NewID("evt"), Type: "crm.note", AppID: appID,
				UserID: fmt.Sprint("u", i%3), OccurredAt: at, ReceivedAt: at, Source: meetsync.SourceBusiness, Data: []byte("{}")})
		}
		if err := db.EventsAppend(ctx, []*meetsync.AppendRequest{req}); err != nil || req.Err != nil {
			t.Fatalf("append: %v %v", err, req.Err)
		}
	}
	appendN(10, old, "k-old")
	appendN(5, now, "k-new")
	n, err := db.PurgeBefore(ctx, appID, now.Add(-time.Hour), 4)
	if err != nil || n != 4 {
		t.Fatalf("first chunk: %d, %v", n, err)
	}
	n, err = db.PurgeBefore(ctx, appID, now.Add(-time.Hour), 100)
	if err != nil || n != 6 {
		t.Fatalf("second chunk: %d, %v", n, err)
	}
	evs, err := db.EventList(ctx, meetsync.EventListParams{AppID: appID, Limit: 100})
	if err != nil || len(evs) != 5 {
		t.Fatalf("after purge %d events (%v), want the 5 recent ones", len(evs), err)
	}
	for _, e := range evs {
		if e.ReceivedAt.Before(now.Add(-time.Hour)) {
			t.Fatalf("an old event survived: %+v", e)
		}
	}
	// Users keep their state and seq: the next event continues the log.
	u, err := db.UserGet(ctx, appID, "u0")
	if err != nil || u.LastSeq != 6 {
		t.Fatalf("user after purge: %+v %v", u, err)
	}

	// With an endpoint, new events get pending deliveries: nothing from the
	// oldest pending one on is purged, however old.
	ep := &meetsync.Endpoint{ID: meetsync.NewID("ep"), AppID: appID, URL: "http://127.0.0.1:1/hook", CreatedAt: now, UpdatedAt: now}
	if err := db.EndpointCreate(ctx, ep); err != nil {
		t.Fatal(err)
	}
	appendN(3, old, "k-old-2")
	if n, err := db.PurgeBefore(ctx, appID, now.Add(-time.Hour), 100); err != nil || n != 0 {
		t.Fatalf("purged %d events with pending deliveries (%v)", n, err)
	}
}
