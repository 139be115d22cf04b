package sqlite_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/sqlite"
)

// TestUpgradeFrom0006: a store written by meetsync before migration 0007
// (events with their indexes and AUTOINCREMENT, users rows written with
// every event) opens with its feeds, users' feeds, states and duplicate
// checks intact, and goes on numbering after the highest position it
// ever gave (even one whose event was purged).
func TestUpgradeFrom0006(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "meetsync.db")
	old, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := old.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%.60s: %v", q, err)
		}
	}
	exec(`CREATE TABLE schema_migrations (version TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)`)
	for _, v := range []string{"0001_core", "0002_delivery", "0003_sessions", "0004_event_types", "0005_invitations", "0006_retention"} {
		body, err := os.ReadFile(filepath.Join("migrations", v+".sql"))
		if err != nil {
			t.Fatal(err)
		}
		exec(string(body))
		exec("INSERT INTO schema_migrations (version, applied_at) VALUES (?, 0)", v)
	}
	now := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	apps := []string{"app_a", "app_b"}
	for _, a := range apps {
		exec("INSERT INTO apps (id, name, created_at) VALUES (?, ?, 0)", a, a)
	}
	// Events the way the old store wrote them: the app's users, devices
	// with client_seqs, interleaved between the apps; each users row
	// written from the state its events give.
	states := map[string]*meetsync.UserState{}
	feeds := map[string][]int64{}
	userFeeds := map[string][]int64{}
	var sent []*meetsync.Event
	for i := range 40 {
		app := apps[i%3/2] // a, a, b, a, a, b, …
		user := fmt.Sprintf("u%d", i%4)
		cs := int64(i + 1)
		ev, err := meetsync.PrepareEvent(&meetsync.EventInput{Type: meetsync.TypeMeetingStatusChanged, UserID: user, DeviceID: "d" + user, ClientSeq: &cs,
			Data: []byte(fmt.Sprintf(`{"status":%q}`, statuses[i%len(statuses)]))},
			meetsync.PrepareParams{AppID: app, Source: meetsync.SourceClient, ReceivedAt: now.Add(time.Duration(i) * time.Second),
				NewID: func() string { return meetsync.NewID("evt") }})
		if err != nil {
			t.Fatal(err)
		}
		k := app + "/" + user
		if states[k] == nil {
			states[k] = meetsync.NewUserState(app, user)
		}
		u := states[k]
		u.Apply(ev)
		res, err := old.ExecContext(ctx, `INSERT INTO events (app_id, id, type, user_id, seq, occurred_at, received_at, source, device_id, client_seq, stale, data, schema_version)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)`, app, ev.ID, ev.Type, user, ev.Seq, ev.OccurredAt.UnixMicro(), ev.ReceivedAt.UnixMicro(),
			ev.Source, ev.DeviceID, ev.ClientSeq, ev.Stale, []byte(ev.Data))
		if err != nil {
			t.Fatal(err)
		}
		ev.Pos, _ = res.LastInsertId()
		sent = append(sent, ev)
		feeds[app] = append(feeds[app], ev.Pos)
		userFeeds[k] = append(userFeeds[k], ev.Pos)
		exec(`INSERT INTO users (app_id, user_id, last_seq, status, reason, meeting_num, device_id, since, status_seq, business_side, meeting_side, updated_at, devices, extra, due_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (app_id, user_id) DO UPDATE SET last_seq = excluded.last_seq, status = excluded.status,
			reason = excluded.reason, meeting_num = excluded.meeting_num, device_id = excluded.device_id, since = excluded.since, status_seq = excluded.status_seq,
			updated_at = excluded.updated_at, devices = excluded.devices, extra = excluded.extra`,
			app, user, u.LastSeq, int(u.Status), int(u.Reason), u.MeetingNum, u.DeviceID, u.Since.UnixMicro(), u.StatusSeq, u.Session.Business, u.Session.Meeting,
			u.UpdatedAt.UnixMicro(), meetsync.EncodeDevices(u.Devices), meetsync.EncodeUserExtra(u), 0)
	}
	// Positions up to 100 were given once; the newest were purged since.
	exec("UPDATE sqlite_sequence SET seq = 100 WHERE name = 'events'")
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}

	db, err := sqlite.Open(path, sqlite.Config{})
	if err != nil {
		t.Fatalf("open the old store: %v", err)
	}
	defer db.Close()
	for _, a := range apps {
		if got := feed(ctx, t, db, meetsync.EventListParams{AppID: a, Limit: 3}); !reflect.DeepEqual(got, feeds[a]) {
			t.Errorf("feed of %s: %v, want %v", a, got, feeds[a])
		}
	}
	for k, want := range userFeeds {
		u := states[k]
		if got := feed(ctx, t, db, meetsync.EventListParams{AppID: u.AppID, UserID: u.UserID, Limit: 2}); !reflect.DeepEqual(got, want) {
			t.Errorf("feed of %s: %v, want %v", k, got, want)
		}
		st, err := db.UserGet(ctx, u.AppID, u.UserID)
		if err != nil {
			t.Fatal(err)
		}
		if st.LastSeq != u.LastSeq || st.Status != u.Status || len(st.Devices) != len(u.Devices) {
			t.Errorf("state of %s: seq %d status %v, want seq %d status %v", k, st.LastSeq, st.Status, u.LastSeq, u.Status)
		}
	}
	orig := sent[7]
	cs := orig.ClientSeq
	repeat, _ := meetsync.PrepareEvent(&meetsync.EventInput{Type: orig.Type, UserID: orig.UserID, DeviceID: orig.DeviceID, ClientSeq: &cs, Data: []byte(`{"status":"idle"}`)},
		meetsync.PrepareParams{AppID: orig.AppID, Source: meetsync.SourceClient, ReceivedAt: now.Add(time.Hour), NewID: func() string { return meetsync.NewID("evt") }})
	next, _ := meetsync.PrepareEvent(&meetsync.EventInput{Type: "crm.note", UserID: orig.UserID},
		meetsync.PrepareParams{AppID: orig.AppID, Source: meetsync.SourceClient, ReceivedAt: now.Add(time.Hour), NewID: func() string { return meetsync.NewID("evt") }})
	r := &meetsync.AppendRequest{AppID: orig.AppID, Events: []*meetsync.Event{repeat, next}}
	if err := db.EventsAppend(ctx, []*meetsync.AppendRequest{r}); err != nil {
		t.Fatal(err)
	}
	if got := r.Results[0]; !got.Duplicate || got.ID != orig.ID || got.Pos != orig.Pos {
		t.Errorf("repeat of %s at %d: %+v", orig.ID, orig.Pos, got)
	}
	if got := r.Results[1]; got.Pos != 101 || got.Seq != states[orig.AppID+"/"+orig.UserID].LastSeq+1 {
		t.Errorf("the next event: %+v, want position 101 and the user's next seq", got)
	}
}

// TestNoMigrate: with NoMigrate, Open changes no schema: it opens a store
// with every migration, and refuses (naming what is missing) an empty file
// and a store that lacks the newest migration, which it leaves as it is.
func TestNoMigrate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.db")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if db, err := sqlite.Open(empty, sqlite.Config{NoMigrate: true}); err == nil || !strings.Contains(err.Error(), "0001_core") {
		if db != nil {
			db.Close()
		}
		t.Errorf("NoMigrate Open of an empty file: %v; want the missing migrations named", err)
	}

	path := filepath.Join(dir, "meetsync.db")
	db, err := sqlite.Open(path, sqlite.Config{})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if db, err = sqlite.Open(path, sqlite.Config{NoMigrate: true}); err != nil {
		t.Fatalf("NoMigrate Open of a migrated store: %v", err)
	}
	db.Close()

	names, err := sqlite.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	newest := strings.TrimSuffix(strings.TrimPrefix(names[len(names)-1], "migrations/"), ".sql")
	raw, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec("DELETE FROM schema_migrations WHERE version = ?", newest); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	if db, err := sqlite.Open(path, sqlite.Config{NoMigrate: true}); err == nil || !strings.Contains(err.Error(), newest) {
		if db != nil {
			db.Close()
		}
		t.Errorf("NoMigrate Open of a store without %s: %v; want it named", newest, err)
	}
	raw, _ = sql.Open("sqlite", "file:"+path)
	defer raw.Close()
	var n int
	if err := raw.QueryRow("SELECT count(*) FROM schema_migrations WHERE version = ?", newest).Scan(&n); err != nil || n != 0 {
		t.Errorf("NoMigrate Open applied %s (%d, %v)", newest, n, err)
	}
}
