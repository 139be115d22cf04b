package httpapi_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/httpapi"
	"github.com/meetsync/meetsync/ingest"
	"github.com/meetsync/meetsync/sqlite"
)

// hangingStore is a SQLite store behind a database that can hang, as
// PostgreSQL does when it is stopped or cut off by a network partition
// with its connections still open: while hung, the calls below wait until
// their context ends (or the test does) and then fail as a driver does,
// with an error of its own rather than the context's; a call that began
// during the hang never gets an answer, even after it (its connection is
// lost), and calls made after it work.
type hangingStore struct {
	*sqlite.DB
	hung    atomic.Bool
	entered chan string   // the call, each time one starts to hang
	stop    chan struct{} // closed at the end of the test
}

func (s *hangingStore) hang(ctx context.Context, call string) error {
	if !s.hung.Load() {
		return nil
	}
	select {
	case s.entered <- call:
	default:
	}
	select {
	case <-ctx.Done():
	case <-s.stop:
	}
	return errors.New(call + ": interrupted")
}

func (s *hangingStore) UserGet(ctx context.Context, appID, userID string) (*meetsync.UserState, error) {
	if err := s.hang(ctx, "UserGet"); err != nil {
		return nil, err
	}
	return s.DB.UserGet(ctx, appID, userID)
}

func (s *hangingStore) EventFeedHead(ctx context.Context, appID string) (int64, error) {
	if err := s.hang(ctx, "EventFeedHead"); err != nil {
		return 0, err
	}
	return s.DB.EventFeedHead(ctx, appID)
}

func (s *hangingStore) EventList(ctx context.Context, p meetsync.EventListParams) ([]*meetsync.Event, error) {
	if err := s.hang(ctx, "EventList"); err != nil {
		return nil, err
	}
	return s.DB.EventList(ctx, p)
}

func (s *hangingStore) EventsAppend(ctx context.Context, reqs []*meetsync.AppendRequest) error {
	if err := s.hang(ctx, "EventsAppend"); err != nil {
		return err
	}
	return s.DB.EventsAppend(ctx, reqs)
}

// setupHanging starts a meetsync on a hangingStore with the given store
// timeout (the API's and the committer's), one committer, and a logger
// that keeps every record. finished receives "METHOD /path" each time the
// server is done with a request.
func setupHanging(t *testing.T, timeout time.Duration) (e *env, db *hangingStore, logs *logRecorder, finished chan string) {
	t.Helper()
	sdb, err := sqlite.Open(filepath.Join(t.TempDir(), "meetsync.db"), sqlite.Config{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	db = &hangingStore{DB: sdb, entered: make(chan string, 64), stop: make(chan struct{})}
	logs = &logRecorder{}
	reg := prometheus.NewRegistry()
	ing := ingest.New(db, reg, ingest.Config{Committers: 1, CommitTimeout: timeout})
	api := httpapi.New(httpapi.Config{
		Store:           db,
		Ingester:        ing,
		Logger:          slog.New(logs),
		Registry:        reg,
		StreamHeartbeat: 50 * time.Millisecond,
		URLPolicy:       meetsync.URLPolicy{AllowPrivate: true},
		StoreTimeout:    timeout,
	})
	finished = make(chan string, 64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		api.ServeHTTP(w, r)
		select {
		case finished <- r.Method + " " + r.URL.Path:
		default:
		}
	}))
	if host := srv.Listener.Addr().String(); !strings.HasPrefix(host, "127.0.0.1:") {
		t.Fatalf("test server listens on %s, want 127.0.0.1", host)
	}
	e = &env{URL: srv.URL, Store: sdb, API: api, Client: &http.Client{Transport: &http.Transport{}}}
	t.Cleanup(func() {
		close(db.stop) // what still hangs fails now
		api.BeginShutdown()
		e.Client.CloseIdleConnections()
		srv.Close()
		ing.Close()
		if err := sdb.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	e.AppID, e.Key, e.KeyID = e.newApp(t, "app-"+strings.ToLower(t.Name()))
	return e, db, logs, finished
}

// TestStoreTimeoutHungDatabase: while the database hangs, requests that
// need it are answered 503 unavailable with Retry-After: 1 once the store
// timeout passes, an ingest request saying that its events may or may not
// have been committed, and a stream that needs the end of the feed is
// refused the same way; an open stream is not cut, and the committer is
// not held by the commit that hung: once the database answers, the same
// request is committed (once: a repeat is a duplicate) and arrives on the
// stream. Nothing is logged as an error.
func TestStoreTimeoutHungDatabase(t *testing.T) {
	t.Parallel()
	e, db, logs, _ := setupHanging(t, 200*time.Millisecond)
	before := e.ingest(t, map[string]any{"type": "crm.before", "user_id": "u1"})
	live := e.openStream(t, e.Key, "after=0", "")
	if ev := live.next(t, streamWait).event(t); ev.ID != before[0].ID {
		t.Fatalf("the stream sent %s, want %s", ev.ID, before[0].ID)
	}

	db.hung.Store(true)
	unavailable := func(r response, what string, want ...string) {
		t.Helper()
		msg := requireError(t, r, http.StatusServiceUnavailable, meetsync.EUNAVAILABLE, "")
		if got := r.Header.Get("Retry-After"); got != "1" {
			t.Errorf("%s: Retry-After %q, want 1", what, got)
		}
		for _, w := range want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: message %q does not say %q", what, msg, w)
			}
		}
	}
	unavailable(e.do(t, "GET", "/v1/users/u1", e.Key, nil), "GET /v1/users/u1",
		"did not answer within 200ms")
	note := map[string]any{"type": "crm.during", "user_id": "u1", "id": "crm-during-1"}
	unavailable(e.do(t, "POST", "/v1/events", e.Key, note, "Idempotency-Key", "during"), "POST /v1/events",
		"may or may not have been committed", "Idempotency-Key")
	unavailable(e.do(t, "GET", "/v1/events/stream", e.Key, nil), "GET /v1/events/stream without a cursor",
		"did not answer within 200ms")

	// The database answers again (what hung stays without an answer).
	db.hung.Store(false)
	again := e.ingest(t, note, "Idempotency-Key", "during")
	if again[0].Duplicate || again[0].ID != "crm-during-1" {
		t.Errorf("the request refused during the hang, sent again: %+v; want it committed now, not a duplicate", again[0])
	}
	if repeat := e.ingest(t, note, "Idempotency-Key", "during"); !repeat[0].Duplicate || repeat[0].Seq != again[0].Seq {
		t.Errorf("sent a third time: %+v; want the duplicate of %+v", repeat[0], again[0])
	}
	// The stream read the store during the hang (after each heartbeat)
	// and stayed open: the event committed since arrives on it.
	if ev := live.next(t, streamWait).event(t); ev.ID != again[0].ID {
		t.Errorf("the stream sent %s after the hang, want %s", ev.ID, again[0].ID)
	}
	e.user(t, e.Key, "u1")

	warned := false
	for _, l := range logs.lines() {
		if strings.HasPrefix(l, "ERROR") {
			t.Errorf("logged at ERROR: %s", l)
		}
		warned = warned || strings.HasPrefix(l, "WARN store unavailable")
	}
	if !warned {
		t.Errorf("the hang was not logged as the store being unavailable; log:\n%s", strings.Join(logs.lines(), "\n"))
	}
}

// TestClientGoneNotAnError: a client that disconnects while its request
// waits for the store (a read, or an ingest waiting for its commit) is not
// an internal error: nothing is logged above Debug, and the request is
// counted as 499, not 500.
func TestClientGoneNotAnError(t *testing.T) {
	t.Parallel()
	e, db, logs, finished := setupHanging(t, time.Minute) // no deadline passes in this test
	db.hung.Store(true)
	for _, tc := range []struct {
		method, path, call string
		body               string
	}{
		{"GET", "/v1/users/u1", "UserGet", ""},
		{"POST", "/v1/events", "EventsAppend", `{"type":"crm.note","user_id":"u1"}`},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		req, err := http.NewRequestWithContext(ctx, tc.method, e.URL+tc.path, strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+e.Key)
		req.Header.Set("Content-Type", "application/json")
		answered := make(chan error, 1)
		go func() {
			resp, err := e.Client.Do(req)
			if err == nil {
				resp.Body.Close()
				err = errors.New(resp.Status)
			}
			answered <- err
		}()
		bound := time.NewTimer(30 * time.Second) // a deadline, not an expectation
		select {
		case call := <-db.entered:
			if call != tc.call {
				t.Fatalf("%s %s: the store call that hangs is %s, want %s", tc.method, tc.path, call, tc.call)
			}
		case err := <-answered:
			t.Fatalf("%s %s: answered before the store call (%v)", tc.method, tc.path, err)
		case <-bound.C:
			t.Fatalf("%s %s: the store was never called", tc.method, tc.path)
		}
		cancel() // the client goes away
		if err := <-answered; !errors.Is(err, context.Canceled) {
			t.Errorf("%s %s: the client got %v, want its own cancellation", tc.method, tc.path, err)
		}
		for done := false; !done; {
			select {
			case r := <-finished:
				done = r == tc.method+" "+tc.path
			case <-bound.C:
				t.Fatalf("%s %s: the server did not finish the request after its client went away", tc.method, tc.path)
			}
		}
		bound.Stop()
	}

	debug := 0
	for _, l := range logs.lines() {
		if !strings.HasPrefix(l, "DEBUG") && !strings.HasPrefix(l, "INFO") {
			t.Errorf("logged above Debug: %s", l)
		}
		if strings.HasPrefix(l, "DEBUG request canceled by the client") {
			debug++
		}
	}
	if debug != 2 {
		t.Errorf("%d Debug lines for the 2 canceled requests; log:\n%s", debug, strings.Join(logs.lines(), "\n"))
	}
	metrics := string(e.do(t, "GET", "/metrics", "", nil).Body)
	for _, route := range []string{"GET /v1/users/{id}", "POST /v1/events"} {
		if want := `meetsync_http_requests_total{code="499",route="` + route + `"} 1`; !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(metrics, `code="500"`) {
		t.Errorf("a canceled request was counted as 500:\n%s", metrics)
	}
}
