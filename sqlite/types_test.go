package sqlite_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/sqlite"
)

var ctx = context.Background()

// setup opens a fresh store file with one app. reopen closes the store
// and opens the file again, as a restart does.
func setup(t *testing.T) (db *sqlite.DB, appID string, reopen func() *sqlite.DB) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "meetsync.db")
	var closers []func()
	open := func() *sqlite.DB {
		t.Helper()
		db, err := sqlite.Open(path, sqlite.Config{})
		if err != nil {
			t.Fatalf("open store: %v", err)
		}
		var once sync.Once
		closeDB := func() {
			once.Do(func() {
				if err := db.Close(); err != nil {
					t.Errorf("close store: %v", err)
				}
			})
		}
		t.Cleanup(closeDB)
		closers = append(closers, closeDB)
		return db
	}
	db = open()
	reopen = func() *sqlite.DB {
		closers[len(closers)-1]()
		return open()
	}
	return db, newApp(t, db, "app1"), reopen
}

func newApp(t *testing.T, db *sqlite.DB, name string) string {
	t.Helper()
	now := time.Now().UTC()
	app := &meetsync.App{ID: meetsync.NewID("app"), Name: name, CreatedAt: now}
	k, _ := meetsync.NewAPIKey(app.ID, now)
	if err := db.AppCreate(ctx, app, k); err != nil {
		t.Fatalf("create app: %v", err)
	}
	return app.ID
}

func put(t *testing.T, db *sqlite.DB, p meetsync.EventTypePutParams) (*meetsync.EventType, bool) {
	t.Helper()
	et, created, err := db.EventTypePut(ctx, &p)
	if err != nil {
		t.Fatalf("put %s: %v", p.Name, err)
	}
	return et, created
}

func requireCode(t *testing.T, err error, code string) {
	t.Helper()
	if meetsync.ErrorCode(err) != code {
		t.Fatalf("error = %v, want code %s", err, code)
	}
}

// TestEventTypeVersions: a type starts at version 1; a put with the same
// schema changes nothing, a new description or debounce changes the type
// in place, a new schema makes version n+1; every version stays readable,
// also after the store is reopened.
func TestEventTypeVersions(t *testing.T) {
	t.Parallel()
	db, app, reopen := setup(t)
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	s1 := json.RawMessage(`{"type":"object"}`)
	s2 := json.RawMessage(`{"required":["amount"],"type":"object"}`)

	et, created := put(t, db, meetsync.EventTypePutParams{AppID: app, Name: "crm.order_paid", Description: "paid", Schema: s1, Now: t0})
	if !created || et.Version != 1 || et.LatestVersion != 1 || string(et.Schema) != string(s1) || et.Description != "paid" || et.Debounce ||
		!et.CreatedAt.Equal(t0) || !et.UpdatedAt.Equal(t0) || !et.VersionCreatedAt.Equal(t0) || et.AppID != app {
		t.Fatalf("created type = %+v (created %v)", et, created)
	}

	// The same again, later: nothing is written.
	et, created = put(t, db, meetsync.EventTypePutParams{AppID: app, Name: "crm.order_paid", Description: "paid", Schema: s1, Now: t0.Add(time.Minute)})
	if created || et.Version != 1 || !et.UpdatedAt.Equal(t0) {
		t.Fatalf("unchanged put = %+v (created %v), want version 1 updated at %v", et, created, t0)
	}

	// Description and debounce change in place.
	t1 := t0.Add(2 * time.Minute)
	et, _ = put(t, db, meetsync.EventTypePutParams{AppID: app, Name: "crm.order_paid", Description: "an order was paid", Schema: s1, Debounce: true, Now: t1})
	if et.Version != 1 || et.Description != "an order was paid" || !et.Debounce || !et.UpdatedAt.Equal(t1) || !et.VersionCreatedAt.Equal(t0) {
		t.Fatalf("described type = %+v", et)
	}

	// A new schema is version 2.
	t2 := t0.Add(3 * time.Minute)
	et, created = put(t, db, meetsync.EventTypePutParams{AppID: app, Name: "crm.order_paid", Description: "an order was paid", Schema: s2, Debounce: true, Now: t2})
	if created || et.Version != 2 || et.LatestVersion != 2 || string(et.Schema) != string(s2) || !et.VersionCreatedAt.Equal(t2) || !et.CreatedAt.Equal(t0) {
		t.Fatalf("new schema = %+v", et)
	}

	db = reopen()
	for _, c := range []struct {
		version, want int
		schema        json.RawMessage
	}{{0, 2, s2}, {2, 2, s2}, {1, 1, s1}} {
		et, err := db.EventTypeGet(ctx, app, "crm.order_paid", c.version)
		if err != nil {
			t.Fatalf("get version %d: %v", c.version, err)
		}
		if et.Version != c.want || et.LatestVersion != 2 || string(et.Schema) != string(c.schema) || et.Description != "an order was paid" {
			t.Errorf("get version %d = %+v, want version %d with %s", c.version, et, c.want, c.schema)
		}
	}
	_, err := db.EventTypeGet(ctx, app, "crm.order_paid", 3)
	requireCode(t, err, meetsync.ENOTFOUND)
	_, err = db.EventTypeGet(ctx, app, "crm.nothing", 0)
	requireCode(t, err, meetsync.ENOTFOUND)
}

// TestEventTypeApps: types belong to one app; another app neither sees
// them nor can read them; a put for an app that does not exist is ENOTFOUND.
func TestEventTypeApps(t *testing.T) {
	t.Parallel()
	db, app, _ := setup(t)
	other := newApp(t, db, "app2")
	now := time.Now().UTC()
	for _, name := range []string{"crm.b", "crm.a", "zeta"} {
		put(t, db, meetsync.EventTypePutParams{AppID: app, Name: name, Schema: json.RawMessage(`true`), Now: now})
	}
	put(t, db, meetsync.EventTypePutParams{AppID: other, Name: "crm.a", Schema: json.RawMessage(`false`), Now: now})

	list, err := db.EventTypeList(ctx, app)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, et := range list {
		names = append(names, et.Name+" "+string(et.Schema))
	}
	if got := fmt.Sprint(names); got != "[crm.a true crm.b true zeta true]" {
		t.Errorf("app's types = %s", got)
	}
	list, err = db.EventTypeList(ctx, other)
	if err != nil || len(list) != 1 || string(list[0].Schema) != "false" {
		t.Errorf("other app's types = %+v %v, want its own crm.a only", list, err)
	}
	_, err = db.EventTypeGet(ctx, other, "crm.b", 0)
	requireCode(t, err, meetsync.ENOTFOUND)
	_, _, err = db.EventTypePut(ctx, &meetsync.EventTypePutParams{AppID: "app_missing", Name: "crm.a", Schema: json.RawMessage(`true`), Now: now})
	requireCode(t, err, meetsync.ENOTFOUND)
	if list, _ := db.EventTypeList(ctx, "app_missing"); len(list) != 0 {
		t.Errorf("a missing app has types: %+v", list)
	}
}

// TestSchemaVersionStored: an event keeps the schema version it was
// validated against, in the feed and in the deliveries' events.
func TestSchemaVersionStored(t *testing.T) {
	t.Parallel()
	db, app, _ := setup(t)
	now := time.Now().UTC()
	ep := &meetsync.Endpoint{ID: meetsync.NewID("ep"), AppID: app, URL: "http://127.0.0.1:1/hook",
		Secrets: []meetsync.EndpointSecret{{Secret: meetsync.NewEndpointSecret(), CreatedAt: now}}, CreatedAt: now, UpdatedAt: now}
	if err := db.EndpointCreate(ctx, ep); err != nil {
		t.Fatal(err)
	}
	evs := []*meetsync.Event{
		meetsync.NewServerEvent(app, "u1", "crm.order_paid", meetsync.SourceBusiness, json.RawMessage(`{"amount":1}`), now),
		meetsync.NewServerEvent(app, "u1", "crm.order_paid", meetsync.SourceBusiness, json.RawMessage(`{"amount":2}`), now),
		meetsync.NewServerEvent(app, "u1", "crm.unregistered", meetsync.SourceBusiness, nil, now),
	}
	evs[0].SchemaVersion, evs[1].SchemaVersion = 1, 2
	if err := db.EventsAppend(ctx, []*meetsync.AppendRequest{{AppID: app, Events: evs}}); err != nil {
		t.Fatal(err)
	}
	feed, err := db.EventList(ctx, meetsync.EventListParams{AppID: app, Limit: 10})
	if err != nil || len(feed) != 3 {
		t.Fatalf("feed = %v %v", feed, err)
	}
	for i, want := range []int{1, 2, 0} {
		if feed[i].SchemaVersion != want {
			t.Errorf("feed[%d] schema version = %d, want %d", i, feed[i].SchemaVersion, want)
		}
	}
	tasks, err := db.DeliveriesClaim(ctx, meetsync.DeliveryClaimParams{Owner: "t", Now: now.Add(time.Second), Lease: time.Minute, Limit: 10})
	if err != nil || len(tasks) != 1 {
		t.Fatalf("claim = %v %v, want the queue head", tasks, err)
	}
	if tasks[0].Event.SchemaVersion != 1 {
		t.Errorf("claimed event schema version = %d, want 1", tasks[0].Event.SchemaVersion)
	}
}

// TestCustomDebounce: an endpoint with a debounce window coalesces the
// pending deliveries of a custom type registered with debounce (only with
// events of the same type and user); turning debounce off takes effect
// at the next append.
func TestCustomDebounce(t *testing.T) {
	t.Parallel()
	db, app, _ := setup(t)
	now := time.Now().UTC()
	ep := &meetsync.Endpoint{ID: meetsync.NewID("ep"), AppID: app, URL: "http://127.0.0.1:1/hook", Debounce: 300 * time.Millisecond,
		Secrets: []meetsync.EndpointSecret{{Secret: meetsync.NewEndpointSecret(), CreatedAt: now}}, CreatedAt: now, UpdatedAt: now}
	if err := db.EndpointCreate(ctx, ep); err != nil {
		t.Fatal(err)
	}
	schema := json.RawMessage(`{"type":"object"}`)
	put(t, db, meetsync.EventTypePutParams{AppID: app, Name: "crm.typing", Schema: schema, Debounce: true, Now: now})
	put(t, db, meetsync.EventTypePutParams{AppID: app, Name: "crm.order_paid", Schema: schema, Now: now})

	seq := 0
	appendOne := func(user, typ string) string {
		t.Helper()
		seq++
		ev := meetsync.NewServerEvent(app, user, typ, meetsync.SourceBusiness, json.RawMessage(fmt.Sprintf(`{"n":%d}`, seq)), now)
		if err := db.EventsAppend(ctx, []*meetsync.AppendRequest{{AppID: app, Events: []*meetsync.Event{ev}}}); err != nil {
			t.Fatal(err)
		}
		return ev.ID
	}
	statuses := func() map[string]string {
		t.Helper()
		ds, err := db.DeliveryList(ctx, meetsync.DeliveryListParams{AppID: app, EndpointID: ep.ID, Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, d := range ds {
			out[d.EventID] = d.Status
		}
		return out
	}

	a1 := appendOne("u1", "crm.typing")
	o1 := appendOne("u1", "crm.order_paid")
	b1 := appendOne("u2", "crm.typing")
	a2 := appendOne("u1", "crm.typing")
	o2 := appendOne("u1", "crm.order_paid")
	want := map[string]string{a1: "superseded", o1: "pending", b1: "pending", a2: "pending", o2: "pending"}
	if got := statuses(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("deliveries = %v, want %v (only u1's older crm.typing superseded)", got, want)
	}

	// Debounce off: the next crm.typing supersedes nothing.
	put(t, db, meetsync.EventTypePutParams{AppID: app, Name: "crm.typing", Schema: schema, Debounce: false, Now: now})
	a3 := appendOne("u1", "crm.typing")
	want[a3] = "pending"
	if got := statuses(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after debounce off: deliveries = %v, want %v", got, want)
	}
	// And on again: the pending crm.typing deliveries of u1 are superseded.
	put(t, db, meetsync.EventTypePutParams{AppID: app, Name: "crm.typing", Schema: schema, Debounce: true, Now: now})
	a4 := appendOne("u1", "crm.typing")
	want[a2], want[a3], want[a4] = "superseded", "superseded", "pending"
	if got := statuses(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after debounce on: deliveries = %v, want %v", got, want)
	}
}
