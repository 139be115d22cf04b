package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/internal/pgtest"
	"github.com/meetsync/meetsync/postgres"
)

func openNode(t *testing.T, url, node string) *postgres.DB {
	t.Helper()
	db, err := postgres.Open(context.Background(), url, postgres.Config{Node: node})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestMigrateConcurrently starts several replicas on an empty database at
// once: each migration is applied exactly once, and every replica ends
// with the full schema.
func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	first := openNode(t, url, "first")
	err := first.CheckSchema(ctx)
	if err == nil || !strings.Contains(err.Error(), "0001_core") || !strings.Contains(err.Error(), "meetsync migrate") {
		t.Errorf("CheckSchema on an empty database: %v; want the missing migrations and what to run", err)
	}
	names, err := postgres.Migrations()
	if err != nil || len(names) == 0 {
		t.Fatal(names, err)
	}
	const replicas = 5
	applied := make([][]string, replicas)
	var wg sync.WaitGroup
	for i := range replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db := openNode(t, url, "")
			var err error
			if applied[i], err = db.Migrate(ctx); err != nil {
				t.Errorf("replica %d: Migrate: %v", i, err)
			}
		}()
	}
	wg.Wait()
	var all []string
	for _, a := range applied {
		all = append(all, a...)
	}
	if strings.Join(all, ",") != strings.Join(names, ",") {
		t.Errorf("migrations applied by the replicas, together: %v; want each of %v once", all, names)
	}
	if err := first.CheckSchema(ctx); err != nil {
		t.Errorf("CheckSchema after Migrate: %v", err)
	}
	if again, err := first.Migrate(ctx); err != nil || len(again) != 0 {
		t.Errorf("Migrate again: %v, %v; want nothing to do", again, err)
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := postgres.Open(ctx, "postgres://user:s3cret@127.0.0.1:1/db?connect_timeout=2", postgres.Config{})
	if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "127.0.0.1:1/db") {
		t.Errorf("Open of an unreachable server: %v; want an error naming the server, without the password", err)
	}
	for url, reason := range map[string]string{
		"postgres://user:s3cret@host:notaport/db":               "invalid port",
		"postgres://user:s3cret@host/db?sslmode=sometimes":      "sslmode is invalid",
		"postgres://user:s3cret@host/db?pool_max_conns=many":    "pool_max_conns",
		"host=h port=notaport user=u password=s3cret dbname=db": "invalid port",
		"host=h user=u password='s3cret dbname=db":              "unterminated quoted string",
	} {
		_, err = postgres.Open(ctx, url, postgres.Config{})
		if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), reason) {
			t.Errorf("Open(%q): %v; want an error saying %q, without the password", url, err, reason)
		}
	}
}

// newApp creates an app on db.
func newApp(t *testing.T, db *postgres.DB) string {
	t.Helper()
	now := time.Now().UTC()
	app := &meetsync.App{ID: meetsync.NewID("app"), Name: meetsync.NewID("a"), CreatedAt: now}
	key, _ := meetsync.NewAPIKey(app.ID, now)
	if err := db.AppCreate(context.Background(), app, key); err != nil {
		t.Fatal(err)
	}
	return app.ID
}

func appendNote(t *testing.T, db *postgres.DB, app string) {
	t.Helper()
	now := time.Now().UTC()
	ev := &meetsync.Event{ID: meetsync.NewID("evt"), Type: "app.note", AppID: app, UserID: "u", OccurredAt: now, ReceivedAt: now,
		Source: meetsync.SourceBusiness, Data: []byte(`{}`)}
	if err := db.EventsAppend(context.Background(), []*meetsync.AppendRequest{{AppID: app, Events: []*meetsync.Event{ev}}}); err != nil {
		t.Fatal(err)
	}
}

// listen runs db.Listen until the test ends and returns a function that
// waits for the next kind its handler is called with (failing the test at
// ctx's end).
func listen(t *testing.T, ctx context.Context, db *postgres.DB) func() string {
	kinds := make(chan string, 100)
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		db.Listen(lctx, func(kind string) { kinds <- kind })
	}()
	t.Cleanup(func() { cancel(); <-done })
	return func() string {
		t.Helper()
		select {
		case k := <-kinds:
			return k
		case <-ctx.Done():
			t.Fatal("no notification before the deadline")
			return ""
		}
	}
}

// openTx begins a transaction on a connection of its own to the database
// at url, rolled back at the end of the test if still open.
func openTx(t *testing.T, ctx context.Context, url string) pgx.Tx {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Rollback(context.Background()) })
	return tx
}

// TestListen checks that a replica hears the commits of the others (and
// not its own), and hears again after losing its connection.
func TestListen(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	url := pgtest.NewDatabase(t)
	a, b := openNode(t, url, "node-a"), openNode(t, url, "node-b")
	if _, err := a.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	app := newApp(t, a)
	next := listen(t, ctx, a)
	listening := func() {
		t.Helper()
		// On (re)connecting, every kind: whatever was missed is looked at.
		got := []string{next(), next(), next()}
		if got[0] != postgres.NotifyEvents || got[1] != postgres.NotifyDeliveries || got[2] != postgres.NotifyCommands {
			t.Fatalf("on connecting: %v, want every kind", got)
		}
	}
	listening()

	ep := &meetsync.Endpoint{ID: meetsync.NewID("ep"), AppID: app, URL: "https://x.example.com", CreatedAt: time.Now(), UpdatedAt: time.Now()}
	if err := b.EndpointCreate(ctx, ep); err != nil {
		t.Fatal(err)
	}
	appendNote(t, b, app)
	if got := []string{next(), next()}; got[0] != postgres.NotifyEvents || got[1] != postgres.NotifyDeliveries {
		t.Errorf("after another replica's append that made a delivery: %v, want events then deliveries", got)
	}
	// Its own commits are skipped: the next notification is b's, that the
	// endpoint's queues resumed.
	appendNote(t, a, app)
	ep.Disabled = true
	if err := b.EndpointUpdate(ctx, ep); err != nil {
		t.Fatal(err)
	}
	ep.Disabled = false
	if err := b.EndpointUpdate(ctx, ep); err != nil {
		t.Fatal(err)
	}
	if k := next(); k != postgres.NotifyDeliveries {
		t.Errorf("after its own append and another replica's endpoint enabling: %q, want deliveries only", k)
	}

	// Another replica's new command; then the same command again (nothing
	// is created: no notification) and an append.
	cmd := &meetsync.Command{ID: "cmd_1", AppID: app, UserID: "u", DeviceID: "d", Type: meetsync.CommandLogout, Data: []byte(`{}`), CreatedAt: time.Now()}
	if err := b.CommandsCreate(ctx, []*meetsync.Command{cmd}); err != nil {
		t.Fatal(err)
	}
	if k := next(); k != postgres.NotifyCommands {
		t.Errorf("after another replica's command: %q", k)
	}
	if err := b.CommandsCreate(ctx, []*meetsync.Command{cmd}); err != nil {
		t.Fatal(err)
	}
	appendNote(t, b, app)
	if got := []string{next(), next()}; got[0] != postgres.NotifyEvents || got[1] != postgres.NotifyDeliveries {
		t.Errorf("after a command created again and an append: %v, want events then deliveries", got)
	}

	// A batch loaded with COPY, of an app without endpoints (the commit
	// inserts nothing else).
	quiet := newApp(t, b)
	now := time.Now().UTC()
	batch := make([]*meetsync.Event, 300)
	for i := range batch {
		batch[i] = &meetsync.Event{ID: meetsync.NewID("evt"), Type: "app.note", AppID: quiet, UserID: "u", OccurredAt: now, ReceivedAt: now,
			Source: meetsync.SourceBusiness, Data: []byte(`{}`)}
	}
	if err := b.EventsAppend(ctx, []*meetsync.AppendRequest{{AppID: quiet, Events: batch}}); err != nil {
		t.Fatal(err)
	}
	if k := next(); k != postgres.NotifyEvents {
		t.Errorf("after another replica's batch loaded with COPY: %q", k)
	}
	// An append that makes no delivery wakes no dispatcher: the next
	// notification is the command's.
	appendNote(t, b, quiet)
	cmd2 := &meetsync.Command{ID: "cmd_2", AppID: app, UserID: "u", DeviceID: "d", Type: meetsync.CommandLogout, Data: []byte(`{}`), CreatedAt: time.Now()}
	if err := b.CommandsCreate(ctx, []*meetsync.Command{cmd2}); err != nil {
		t.Fatal(err)
	}
	if got := []string{next(), next()}; got[0] != postgres.NotifyEvents || got[1] != postgres.NotifyCommands {
		t.Errorf("after an append without deliveries and a command: %v, want events then commands", got)
	}

	// A lost connection is re-established, and says so.
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND query LIKE 'LISTEN%'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("terminating the listener: %d, %v", n, err)
	}
	listening()
	appendNote(t, b, app)
	if k := next(); k != postgres.NotifyEvents {
		t.Errorf("after reconnecting: %q", k)
	}
}

// TestRunLeader checks that one replica at a time leads, that another
// takes over when the leader stops or loses its connection, and that a
// leader whose lock is gone is told to stop.
func TestRunLeader(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	url := pgtest.NewDatabase(t)
	cfg := postgres.LeaderConfig{Retry: 20 * time.Millisecond, Check: 20 * time.Millisecond}
	var leading, maxLeading atomic.Int64
	started, stopped := make(chan int, 10), make(chan int, 10)
	type replica struct {
		cancel context.CancelFunc
		done   chan struct{}
	}
	var rs []*replica
	for i := range 3 {
		db := openNode(t, url, "")
		rctx, rcancel := context.WithCancel(ctx)
		r := &replica{cancel: rcancel, done: make(chan struct{})}
		rs = append(rs, r)
		go func() {
			defer close(r.done)
			db.RunLeader(rctx, "job", cfg, func(ctx context.Context) {
				n := leading.Add(1)
				for m := maxLeading.Load(); n > m && !maxLeading.CompareAndSwap(m, n); m = maxLeading.Load() {
				}
				started <- i
				<-ctx.Done()
				leading.Add(-1)
				stopped <- i
			})
		}()
	}
	defer func() {
		for _, r := range rs {
			r.cancel()
			<-r.done
		}
	}()
	wait := func() int {
		t.Helper()
		select {
		case i := <-started:
			return i
		case <-ctx.Done():
			t.Fatal("no leader before the deadline")
			return -1
		}
	}
	first := wait()
	// The leader stops: another takes over.
	rs[first].cancel()
	<-rs[first].done
	second := wait()
	if second == first {
		t.Fatalf("replica %d led again after stopping", first)
	}
	if m := maxLeading.Load(); m != 1 {
		t.Errorf("%d replicas led at once", m)
	}
	if i := <-stopped; i != first {
		t.Fatalf("replica %d stopped, want %d", i, first)
	}
	// The leader's connection dies: it is told to stop (it can only tell
	// when it next checks its connection: meanwhile another may lead), and
	// one replica leads again.
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(pg_terminate_backend(l.pid)) FROM pg_locks l
		WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("terminating the leader's connection: %d, %v", n, err)
	}
	third := wait()
	select {
	case i := <-stopped:
		if i != second {
			t.Errorf("replica %d stopped, want %d (whose connection died)", i, second)
		}
	case <-ctx.Done():
		t.Fatal("the leader whose connection died was not told to stop")
	}
	t.Logf("leaders: %d, %d, %d", first, second, third)
}

// TestWithLock checks that WithLock excludes other holders.
func TestWithLock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	var inside, overlaps atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		db := openNode(t, url, "")
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				err := db.WithLock(ctx, "test", func(ctx context.Context, conn *pgx.Conn) error {
					if inside.Add(1) > 1 {
						overlaps.Add(1)
					}
					_, err := conn.Exec(ctx, "SELECT pg_sleep(0.002)")
					inside.Add(-1)
					return err
				})
				if err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if overlaps.Load() != 0 {
		t.Errorf("%d times two holders were inside at once", overlaps.Load())
	}
}

// TestIdempotencyPositions stores Idempotency-Keys whose results mix events
// appended in the same transaction with events stored before (duplicates of
// a caller's id), for two apps in one transaction: a repeat of each
// request returns the first results, positions included.
func TestIdempotencyPositions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openNode(t, pgtest.NewDatabase(t), "")
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	apps := []string{meetsync.NewID("app"), meetsync.NewID("app")}
	for i, id := range apps {
		key, _ := meetsync.NewAPIKey(id, now)
		if err := db.AppCreate(ctx, &meetsync.App{ID: id, Name: "app" + string(rune('a'+i)), CreatedAt: now}, key); err != nil {
			t.Fatal(err)
		}
	}
	event := func(app, id, user string) *meetsync.Event {
		ev, err := meetsync.PrepareEvent(&meetsync.EventInput{ID: id, Type: "app.note", UserID: user, Data: []byte(`{}`)},
			meetsync.PrepareParams{AppID: app, Source: meetsync.SourceBusiness, ReceivedAt: now, NewID: func() string { return meetsync.NewID("evt") }})
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	appendAll := func(reqs ...*meetsync.AppendRequest) {
		t.Helper()
		if err := db.EventsAppend(ctx, reqs); err != nil {
			t.Fatal(err)
		}
		for _, r := range reqs {
			if r.Err != nil || len(r.Results) != len(r.Events) {
				t.Fatalf("request: %v %+v", r.Err, r.Results)
			}
		}
	}
	// Stored before: a caller id in each app, and a few events to move
	// the apps' feeds apart.
	appendAll(&meetsync.AppendRequest{AppID: apps[0], Events: []*meetsync.Event{event(apps[0], "x1", "u1"), event(apps[0], "", "u2")}},
		&meetsync.AppendRequest{AppID: apps[1], Events: []*meetsync.Event{event(apps[1], "", "u1"), event(apps[1], "", "u1"), event(apps[1], "x1", "u3")}})

	mk := func(app, key string) *meetsync.AppendRequest {
		return &meetsync.AppendRequest{AppID: app, IdempotencyKey: key, RequestHash: []byte("h-" + key),
			Events: []*meetsync.Event{event(app, "", "u1"), event(app, "x1", "u9"), event(app, "", "u2")}}
	}
	first := []*meetsync.AppendRequest{mk(apps[1], "k"), mk(apps[0], "k"), mk(apps[1], "k2")}
	appendAll(first...)
	for i, r := range first {
		if !r.Results[1].Duplicate || r.Results[0].Duplicate || r.Results[2].Duplicate {
			t.Fatalf("request %d: %+v; want the caller id a duplicate, the others new", i, r.Results)
		}
		feed, err := db.EventList(ctx, meetsync.EventListParams{AppID: r.AppID, Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		at := map[int64]string{}
		for _, ev := range feed {
			at[ev.Pos] = ev.ID
		}
		for j, res := range r.Results {
			if at[res.Pos] != res.ID {
				t.Errorf("request %d result %d: %s at %d, the feed has %q there", i, j, res.ID, res.Pos, at[res.Pos])
			}
		}
	}
	again := []*meetsync.AppendRequest{mk(apps[0], "k"), mk(apps[1], "k2"), mk(apps[1], "k")}
	appendAll(again...)
	for i, r := range again {
		want := first[[]int{1, 2, 0}[i]].Results
		for j, res := range r.Results {
			w := want[j]
			if !res.Duplicate || res.ID != w.ID || res.Seq != w.Seq || res.Pos != w.Pos || res.Stale != w.Stale {
				t.Errorf("repeat %d result %d = %+v, want %+v as a duplicate", i, j, res, w)
			}
		}
	}
}

// TestConcurrentRepeat sends the same request (an Idempotency-Key and a
// caller id) to two replicas at once, again and again: it is stored once,
// both answers name the same event, seq and position, and exactly one of
// them is the original (the other is answered as a repeat: duplicate).
func TestConcurrentRepeat(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	a, b := openNode(t, url, "node-a"), openNode(t, url, "node-b")
	if _, err := a.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	app := newApp(t, a)
	now := time.Now().UTC()
	for i := range 20 {
		mk := func() *meetsync.AppendRequest {
			ev, err := meetsync.PrepareEvent(&meetsync.EventInput{ID: fmt.Sprintf("x%d", i), Type: "app.note", UserID: fmt.Sprintf("u%d", i%3), Data: []byte(`{}`)},
				meetsync.PrepareParams{AppID: app, Source: meetsync.SourceBusiness, ReceivedAt: now, NewID: func() string { return meetsync.NewID("evt") }})
			if err != nil {
				t.Fatal(err)
			}
			return &meetsync.AppendRequest{AppID: app, IdempotencyKey: fmt.Sprintf("k%d", i), RequestHash: []byte("h"), Events: []*meetsync.Event{ev}}
		}
		reqs := [2]*meetsync.AppendRequest{mk(), mk()}
		var wg sync.WaitGroup
		errs := [2]error{}
		for j, db := range []*postgres.DB{a, b} {
			wg.Add(1)
			go func() { defer wg.Done(); errs[j] = db.EventsAppend(ctx, []*meetsync.AppendRequest{reqs[j]}) }()
		}
		wg.Wait()
		for j, r := range reqs {
			if errs[j] != nil || r.Err != nil || len(r.Results) != 1 {
				t.Fatalf("round %d, replica %d: %v %v %+v", i, j, errs[j], r.Err, r.Results)
			}
		}
		x, y := reqs[0].Results[0], reqs[1].Results[0]
		if x.Duplicate == y.Duplicate {
			t.Errorf("round %d: duplicate %v and %v; want exactly one original", i, x.Duplicate, y.Duplicate)
		}
		x.Duplicate, y.Duplicate = false, false
		if x != y {
			t.Errorf("round %d: the replicas answered %+v and %+v; want the same event", i, x, y)
		}
	}
	evs, err := a.EventList(ctx, meetsync.EventListParams{AppID: app, Limit: 100})
	if err != nil || len(evs) != 20 {
		t.Errorf("the feed has %d events (%v), want 20: each request stored once", len(evs), err)
	}
}
