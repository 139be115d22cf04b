package ingest_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/ingest"
	"github.com/meetsync/meetsync/sqlite"
)

func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// TestDeliveryChanges: every commit closes Changes (SSE streams read on),
// but DeliveryChanges (the dispatcher's wake-up) only closes at a commit
// whose events made deliveries, or at Notify.
func TestDeliveryChanges(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(filepath.Join(t.TempDir(), "meetsync.db"), sqlite.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Now().UTC()
	app := &meetsync.App{ID: meetsync.NewID("app"), Name: "ingest", CreatedAt: now}
	k, _ := meetsync.NewAPIKey(app.ID, now)
	if err := db.AppCreate(ctx, app, k); err != nil {
		t.Fatal(err)
	}
	s := ingest.New(db, nil, ingest.Config{})
	defer s.Close()

	n := 0
	appendNote := func(typ string) *meetsync.AppendRequest {
		t.Helper()
		n++
		ev := &meetsync.Event{ID: meetsync.NewID("evt"), Type: typ, AppID: app.ID, UserID: "u", OccurredAt: now, ReceivedAt: now,
			Source: meetsync.SourceBusiness, Data: []byte(`{}`)}
		r := &meetsync.AppendRequest{AppID: app.ID, Events: []*meetsync.Event{ev}}
		if err := s.Append(ctx, r); err != nil {
			t.Fatalf("Append: %v", err)
		}
		return r
	}

	changes, deliveries := s.Changes(), s.DeliveryChanges()
	if r := appendNote("app.note"); r.Deliveries != 0 {
		t.Errorf("no endpoint, yet %d deliveries", r.Deliveries)
	}
	if !closed(changes) {
		t.Error("Changes not closed by a commit")
	}
	if closed(deliveries) {
		t.Error("DeliveryChanges closed by a commit that made no delivery")
	}

	f, err := meetsync.ParseTypeFilter([]string{"app.note"}, "event_types")
	if err != nil {
		t.Fatal(err)
	}
	ep := &meetsync.Endpoint{ID: meetsync.NewID("ep"), AppID: app.ID, URL: "https://hooks.example.com/x", EventTypes: f,
		Secrets: []meetsync.EndpointSecret{{Secret: meetsync.NewEndpointSecret(), CreatedAt: now}}, CreatedAt: now, UpdatedAt: now}
	if err := db.EndpointCreate(ctx, ep); err != nil {
		t.Fatal(err)
	}
	if r := appendNote("app.other"); r.Deliveries != 0 || closed(deliveries) {
		t.Errorf("an event the endpoint does not subscribe to: %d deliveries, DeliveryChanges closed %v", r.Deliveries, closed(deliveries))
	}
	if r := appendNote("app.note"); r.Deliveries != 1 {
		t.Errorf("subscribed event made %d deliveries, want 1", r.Deliveries)
	}
	if !closed(deliveries) {
		t.Error("DeliveryChanges not closed by a commit that made a delivery")
	}

	deliveries = s.DeliveryChanges()
	s.Notify()
	if !closed(deliveries) {
		t.Error("DeliveryChanges not closed by Notify")
	}
}
