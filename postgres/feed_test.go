package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/internal/pgtest"
	"github.com/meetsync/meetsync/postgres"
)

// TestFeedLateCommit holds a transaction open that began before an append
// and writes an event of its own (as an append on another replica that is
// slow to commit would): the appended event, though committed, is held
// back, so no cursor can pass the late one; once the late one commits both
// appear, the late one first. A replica that is listening is told to read
// again when a read had to leave committed events out.
func TestFeedLateCommit(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	url := pgtest.NewDatabase(t)
	db := openNode(t, url, "node-a")
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	app := newApp(t, db)

	next := listen(t, ctx, db)
	for range 3 { // every kind, when Listen starts listening
		next()
	}
	tx := openTx(t, ctx, url)
	now := time.Now().UTC()
	if _, err := tx.Exec(ctx, `INSERT INTO events (app_id, pos, id, type, user_id, seq, occurred_at, received_at, source, data)
		VALUES ($1, (pg_current_xact_id()::text::bigint << 20) + 1, 'evt_late', 'app.note', 'late', 1, $2, $2, 'business', '{}')`, app, now); err != nil {
		t.Fatal(err)
	}

	appendNote(t, db, app)
	list := func(after int64) []*meetsync.Event {
		t.Helper()
		evs, err := db.EventList(ctx, meetsync.EventListParams{AppID: app, After: after, Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		return evs
	}
	if evs, held, err := db.EventListHeld(ctx, meetsync.EventListParams{AppID: app, Limit: 100}); err != nil || len(evs) != 0 || !held {
		t.Fatalf("EventList while an earlier transaction runs = %d events, held %v, %v; want 0, held", len(evs), held, err)
	}
	if evs := list(0); len(evs) != 0 {
		t.Fatalf("the feed has %d events while an earlier transaction runs, want 0 (held back)", len(evs))
	}
	if h, err := db.EventFeedHead(ctx, app); err != nil || h != 0 {
		t.Errorf("EventFeedHead while held back = %d, %v; want 0", h, err)
	}
	if k := next(); k != postgres.NotifyEvents {
		t.Errorf("after a held-back read the handler heard %q, want %q", k, postgres.NotifyEvents)
	}

	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	evs := list(0)
	if len(evs) != 2 || evs[0].ID != "evt_late" || evs[1].UserID != "u" || evs[0].Pos >= evs[1].Pos {
		t.Fatalf("feed after the late commit = %+v, want the late event, then the appended one", evs)
	}
	if h, err := db.EventFeedHead(ctx, app); err != nil || h != evs[1].Pos {
		t.Errorf("EventFeedHead = %d, %v; want %d", h, err, evs[1].Pos)
	}
	if after := list(evs[0].Pos); len(after) != 1 || after[0].ID != evs[1].ID {
		t.Errorf("feed after the late event = %+v, want the appended one", after)
	}
}

// TestFeedIdle reads an empty feed and reads past its last event: neither
// read holds anything back, so neither waits nor has the replica read again
// (an idle stream would otherwise query the database without end).
func TestFeedIdle(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	db := openNode(t, pgtest.NewDatabase(t), "node-a")
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	app := newApp(t, db)
	read := func(what string, after int64) []*meetsync.Event {
		t.Helper()
		evs, held, err := db.EventListHeld(ctx, meetsync.EventListParams{AppID: app, After: after, Limit: 100})
		if err != nil || held {
			t.Fatalf("EventList of %s: held %v, %v; want nothing held", what, held, err)
		}
		return evs
	}
	if evs := read("an empty feed", 0); len(evs) != 0 {
		t.Fatalf("empty feed returned %d events", len(evs))
	}
	appendNote(t, db, app)
	evs := read("the whole feed", 0)
	if len(evs) != 1 {
		t.Fatalf("feed has %d events, want 1", len(evs))
	}
	if rest := read("the feed after its last event", evs[0].Pos); len(rest) != 0 {
		t.Fatalf("feed after its last event returned %d events", len(rest))
	}
	if evs, _, _ := db.EventListHeld(ctx, meetsync.EventListParams{AppID: app, UserID: "nobody", Limit: 100}); len(evs) != 0 {
		t.Fatalf("feed of a user without events returned %d", len(evs))
	}
}

// TestFeedOtherDatabase holds a transaction open on another database of
// the cluster: it writes no events here, so it holds nothing back.
func TestFeedOtherDatabase(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	db := openNode(t, pgtest.NewDatabase(t), "")
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	app := newApp(t, db)
	tx := openTx(t, ctx, pgtest.NewDatabase(t))
	if _, err := tx.Exec(ctx, "SELECT pg_current_xact_id()"); err != nil {
		t.Fatal(err)
	}
	appendNote(t, db, app)
	evs, err := db.EventList(ctx, meetsync.EventListParams{AppID: app, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 {
		t.Errorf("the feed has %d events while another database's transaction runs, want 1", len(evs))
	}
}
