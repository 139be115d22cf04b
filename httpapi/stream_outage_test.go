package httpapi_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/httpapi"
	"github.com/meetsync/meetsync/ingest"
	"github.com/meetsync/meetsync/internal/pgtest"
	"github.com/meetsync/meetsync/postgres"
)

// TestMain stops the private PostgreSQL server, if a test started one.
func TestMain(m *testing.M) { pgtest.Main(m) }

// logRecorder is a slog handler that keeps the records of a server and
// closes a channel at the first record with a given message.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
	watch   string
	seen    chan struct{}
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logRecorder) WithGroup(string) slog.Handler            { return h }

func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r.Clone())
	if r.Message == h.watch && h.seen != nil {
		close(h.seen)
		h.seen = nil
	}
	return nil
}

// lines returns the records as "LEVEL message".
func (h *logRecorder) lines() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, r := range h.records {
		line := r.Level.String() + " " + r.Message
		r.Attrs(func(a slog.Attr) bool {
			line += " " + a.String()
			return true
		})
		out = append(out, line)
	}
	return out
}

// rawStream is an open event stream read line by line, comments included,
// by a goroutine; lines is closed when the stream ends.
type rawStream struct {
	lines chan string
	err   error // why it ended, once lines is closed
}

// TestStreamSurvivesPostgresOutage takes the database away from a server
// while an SSE stream is open (it refuses connections): the stream stays
// open and keeps its heartbeats, the outage is logged once as the store
// being unavailable and never as an error, and once the database is back
// the events appended then arrive on the same stream, after those it sent
// before, in feed order, each once.
func TestStreamSurvivesPostgresOutage(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dbURL := pgtest.NewDatabase(t)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	dbName := strings.TrimPrefix(u.Path, "/")
	u.Path = "/postgres" // a database may not refuse its own connections
	admin, err := pgx.Connect(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close(context.Background()) }) // after the cleanup below restores connections

	// The pool's connections live 100 ms, so that once the database
	// refuses new ones every read soon needs one it cannot have.
	q := u.Query()
	q.Set("pool_max_conn_lifetime", "100ms")
	storeURL := *u
	storeURL.Path, storeURL.RawQuery = "/"+dbName, q.Encode()
	db, err := postgres.Open(ctx, storeURL.String(), postgres.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	logs := &logRecorder{watch: "store unavailable", seen: make(chan struct{})}
	outageLogged := logs.seen
	reg := prometheus.NewRegistry()
	ing := ingest.New(db, reg, ingest.Config{})
	api := httpapi.New(httpapi.Config{
		Store:           db,
		Ingester:        ing,
		Logger:          slog.New(logs),
		Registry:        reg,
		StreamHeartbeat: 50 * time.Millisecond,
		SessionStore:    db,
		URLPolicy:       meetsync.URLPolicy{AllowPrivate: true},
	})
	srv := httptest.NewServer(api)
	if host := srv.Listener.Addr().String(); !strings.HasPrefix(host, "127.0.0.1:") {
		t.Fatalf("test server listens on %s, want 127.0.0.1", host)
	}
	e := &env{URL: srv.URL, API: api, Client: &http.Client{}}
	allow := func(on bool) {
		if _, err := admin.Exec(context.Background(), fmt.Sprintf(`ALTER DATABASE %q ALLOW_CONNECTIONS %t`, dbName, on)); err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(func() {
		allow(true) // whatever happened, before the store closes
		api.BeginShutdown()
		e.Client.CloseIdleConnections()
		srv.Close()
		ing.Close()
		db.Close()
	})
	now := time.Now().UTC()
	app := &meetsync.App{ID: meetsync.NewID("app"), Name: "outage", CreatedAt: now}
	k, key := meetsync.NewAPIKey(app.ID, now)
	if err := db.AppCreate(ctx, app, k); err != nil {
		t.Fatal(err)
	}
	e.AppID, e.Key, e.KeyID = app.ID, key, k.ID

	// ingestRetry ingests body, retrying a 503 (a pooled connection the outage
	// ended may fail the first request after it) under one Idempotency-Key.
	ingestRetry := func(name string, body any) []result {
		t.Helper()
		for attempt := 1; ; attempt++ {
			r := e.do(t, "POST", "/v1/events", e.Key, body, "Idempotency-Key", name)
			if r.Status == http.StatusOK {
				var out struct {
					Events []result `json:"events"`
				}
				decodeStrict(t, r.Body, &out)
				return out.Events
			}
			if r.Status != http.StatusServiceUnavailable || attempt == 20 {
				t.Fatalf("POST /v1/events (%s), attempt %d: %s", name, attempt, r)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	var want []string
	for _, r := range ingestRetry("before", batch(
		map[string]any{"type": "crm.before", "user_id": "u1"},
		map[string]any{"type": "crm.before", "user_id": "u2"},
	)) {
		want = append(want, r.ID)
	}

	req, err := http.NewRequestWithContext(ctx, "GET", e.URL+"/v1/events/stream?after=0", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e.Key)
	resp, err := e.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("open stream: %d %s", resp.StatusCode, b)
	}
	s := &rawStream{lines: make(chan string, 1024)}
	go func() {
		defer close(s.lines)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
		s.err = sc.Err()
	}()
	ended := func(when string) {
		t.Helper()
		err := s.err
		if err == nil {
			err = io.EOF
		}
		t.Fatalf("the stream ended %s: %v\nlog:\n%s", when, err, strings.Join(logs.lines(), "\n"))
	}
	// nextEvent returns the next event's SSE id and data, skipping comments.
	nextEvent := func(when string) (id, data string) {
		t.Helper()
		for {
			select {
			case line, ok := <-s.lines:
				if !ok {
					ended(when)
				}
				switch {
				case strings.HasPrefix(line, "id: "):
					id = strings.TrimPrefix(line, "id: ")
				case strings.HasPrefix(line, "data: "):
					data = strings.TrimPrefix(line, "data: ")
				case line == "" && data != "":
					return id, data
				}
			case <-ctx.Done():
				t.Fatalf("no event %s before the test's deadline", when)
			}
		}
	}
	var got []feedEvent
	receive := func(n int, when string) {
		t.Helper()
		for range n {
			id, data := nextEvent(when)
			got = append(got, sseEvent{ID: id, Data: data}.event(t))
		}
	}
	receive(len(want), "before the outage")

	// The outage: the database refuses new connections and ends the open
	// ones (the error a query then gets arrives with its rows).
	allow(false)
	if _, err := admin.Exec(context.Background(),
		`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, dbName); err != nil {
		t.Fatal(err)
	}
	// The stream reads the store after each heartbeat: wait until a read
	// met the outage (the server logs it), then for heartbeats on the
	// still open stream. A stream that ends on the outage fails here.
	for waiting := true; waiting; {
		select {
		case <-outageLogged:
			waiting = false
		case line, ok := <-s.lines:
			if !ok {
				ended("when the database went away")
			}
			if strings.HasPrefix(line, "data: ") {
				t.Fatalf("an event during the outage: %s", line)
			}
		case <-ctx.Done():
			t.Fatalf("the outage was never logged as the store being unavailable; log:\n%s", strings.Join(logs.lines(), "\n"))
		}
	}
	// Several heartbeats: at most one can have been sent before the read
	// that met the outage; the others come from the pauses between
	// reads that fail (the stream retries meanwhile).
	for beats := 0; beats < 4; {
		select {
		case line, ok := <-s.lines:
			if !ok {
				ended("during the outage")
			}
			switch {
			case line == ": keep-alive":
				beats++
			case strings.HasPrefix(line, "data: "):
				t.Fatalf("an event during the outage: %s", line)
			}
		case <-ctx.Done():
			t.Fatalf("only %d heartbeats during the outage before the test's deadline", beats)
		}
	}

	// The database is back: what is appended now arrives on the same
	// stream, after what it sent before, each event once.
	allow(true)
	var after []string
	for i := range 3 {
		for _, r := range ingestRetry(fmt.Sprint("after-", i), batch(
			map[string]any{"type": "crm.after", "user_id": "u1", "data": map[string]any{"i": i}},
			map[string]any{"type": "crm.after", "user_id": "u3", "data": map[string]any{"i": i}},
		)) {
			after = append(after, r.ID)
		}
	}
	want = append(want, after...)
	receive(len(after), "after the outage")
	// A last event: anything sent twice would come before it.
	last := ingestRetry("last", map[string]any{"type": "crm.last", "user_id": "u2"})
	want = append(want, last[0].ID)
	receive(1, "after the outage")

	seen := map[string]bool{}
	var prev int64
	for i, ev := range got {
		if seen[ev.ID] {
			t.Errorf("event %s sent twice", ev.ID)
		}
		seen[ev.ID] = true
		if pos := cursorOf(t, ev.Cursor); pos <= prev {
			t.Errorf("event %d (%s) has cursor %d after %d: not in feed order", i, ev.ID, pos, prev)
		} else {
			prev = pos
		}
		if i < len(want) && ev.ID != want[i] {
			t.Errorf("event %d of the stream is %s, want %s", i, ev.ID, want[i])
		}
	}
	feed := e.feedAll(t, e.Key, "", 1000)
	if len(feed) != len(got) {
		t.Errorf("the feed has %d events, the stream sent %d", len(feed), len(got))
	}
	for i := range min(len(feed), len(got)) {
		if feed[i].ID != got[i].ID {
			t.Errorf("feed event %d is %s, the stream's %s", i, feed[i].ID, got[i].ID)
		}
	}
	// The outage is logged once, not per failed read (a request refused
	// after it, in another 10 s window, may add one line).
	unavailable := 0
	for _, l := range logs.lines() {
		if strings.HasPrefix(l, "ERROR") {
			t.Errorf("logged at ERROR during the outage: %s", l)
		}
		if strings.HasPrefix(l, "WARN store unavailable") {
			unavailable++
		}
	}
	if unavailable < 1 || unavailable > 2 {
		t.Errorf("the outage was logged %d times; log:\n%s", unavailable, strings.Join(logs.lines(), "\n"))
	}
}
