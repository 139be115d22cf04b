package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/httpapi"
	"github.com/meetsync/meetsync/ingest"
	"github.com/meetsync/meetsync/schema"
	"github.com/meetsync/meetsync/sqlite"
)

// env is one running meetsync: a real SQLite file, the group committer, the
// HTTP API on a real 127.0.0.1 listener, and one app with its first key.
type env struct {
	URL    string
	Store  *sqlite.DB
	API    *httpapi.Server
	Client *http.Client

	AppID string
	Key   string // the app's API key (secret)
	KeyID string
}

// setup starts a fresh meetsync for one test and stops it when the test
// ends; mods change the API's configuration.
func setup(t *testing.T, mods ...func(*httpapi.Config)) *env {
	t.Helper()
	db, err := sqlite.Open(filepath.Join(t.TempDir(), "meetsync.db"), sqlite.Config{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	reg := prometheus.NewRegistry()
	ing := ingest.New(db, reg, ingest.Config{})
	cfg := httpapi.Config{
		Store:           db,
		Ingester:        ing,
		Logger:          slog.New(slog.DiscardHandler),
		Registry:        reg,
		StreamHeartbeat: 200 * time.Millisecond,
		SessionStore:    db,
		Types:           schema.New(db, db, schema.Config{Logger: slog.New(slog.DiscardHandler)}),
		URLPolicy:       meetsync.URLPolicy{AllowPrivate: true},
	}
	for _, m := range mods {
		m(&cfg)
	}
	api := httpapi.New(cfg)
	srv := httptest.NewServer(api)
	if host := srv.Listener.Addr().String(); !strings.HasPrefix(host, "127.0.0.1:") {
		t.Fatalf("test server listens on %s, want 127.0.0.1", host)
	}
	e := &env{
		URL:   srv.URL,
		Store: db,
		API:   api,
		Client: &http.Client{Transport: &http.Transport{
			MaxIdleConns:        64,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     30 * time.Second,
		}},
	}
	t.Cleanup(func() {
		// End the streams first so the server can finish its requests,
		// then let the committer drain and close the store.
		api.BeginShutdown()
		e.Client.CloseIdleConnections()
		srv.Close()
		ing.Close()
		if err := db.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	e.AppID, e.Key, e.KeyID = e.newApp(t, "app-"+strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")))
	return e
}

// newApp creates another app directly in the store, as `meetsync apps
// create` does, and returns its id, API key and key id.
func (e *env) newApp(t *testing.T, name string) (appID, key, keyID string) {
	t.Helper()
	if len(name) > 64 {
		name = name[:64]
	}
	now := time.Now().UTC()
	app := &meetsync.App{ID: meetsync.NewID("app"), Name: name, CreatedAt: now}
	k, secret := meetsync.NewAPIKey(app.ID, now)
	if err := e.Store.AppCreate(context.Background(), app, k); err != nil {
		t.Fatalf("create app %q: %v", name, err)
	}
	return app.ID, secret, k.ID
}

// response is a fully read HTTP response.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) String() string { return fmt.Sprintf("%d %s", r.Status, r.Body) }

// do sends a request with key (none if "") and returns the whole response.
// body may be nil, a string, []byte or any value to encode as JSON; hdr
// holds extra header name/value pairs.
func (e *env) do(t testing.TB, method, path, key string, body any, hdr ...string) response {
	t.Helper()
	r, err := e.request(method, path, key, body, hdr...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// request is do for goroutines other than the test's: it returns the error.
func (e *env) request(method, path, key string, body any, hdr ...string) (response, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			return response{}, fmt.Errorf("encode body: %w", err)
		}
		rd = bytes.NewReader(buf)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, e.URL+path, rd)
	if err != nil {
		return response{}, err
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.Client.Do(req)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: read body: %w", method, path, err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// result is one entry of an ingest response.
type result struct {
	ID        string `json:"id"`
	Seq       int64  `json:"seq"`
	Duplicate bool   `json:"duplicate"`
	Stale     bool   `json:"stale"`
}

// ingest posts body with the env's key and requires a 200.
func (e *env) ingest(t testing.TB, body any, hdr ...string) []result {
	t.Helper()
	return e.ingestAs(t, e.Key, body, hdr...)
}

func (e *env) ingestAs(t testing.TB, key string, body any, hdr ...string) []result {
	t.Helper()
	r := e.do(t, "POST", "/v1/events", key, body, hdr...)
	if r.Status != http.StatusOK {
		t.Fatalf("POST /v1/events: got %s, want 200", r)
	}
	var out struct {
		Events []result `json:"events"`
	}
	decodeStrict(t, r.Body, &out)
	return out.Events
}

// feedEvent is an event as the feed and the stream show it.
type feedEvent struct {
	ID         string          `json:"id"`
	Type       string          `json:"type"`
	UserID     string          `json:"user_id"`
	Seq        int64           `json:"seq"`
	OccurredAt time.Time       `json:"occurred_at"`
	ReceivedAt time.Time       `json:"received_at"`
	Source     string          `json:"source"`
	DeviceID   string          `json:"device_id"`
	ClientSeq  int64           `json:"client_seq"`
	Stale      bool            `json:"stale"`
	Data       json.RawMessage `json:"data"`
	// SchemaVersion is set on events of registered custom types.
	SchemaVersion int    `json:"schema_version"`
	Cursor        string `json:"cursor"`
}

type feedPage struct {
	Events []feedEvent `json:"events"`
	Next   string      `json:"next"`
}

// feedPage reads one page of GET /v1/events?query.
func (e *env) feedPage(t testing.TB, key, query string) feedPage {
	t.Helper()
	r := e.do(t, "GET", "/v1/events?"+query, key, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("GET /v1/events?%s: got %s, want 200", query, r)
	}
	var p feedPage
	decodeStrict(t, r.Body, &p)
	return p
}

// feedAll pages through the whole feed (with extra filters in query) and
// checks that cursors strictly increase and that every page's "next" is
// the cursor of its last event.
func (e *env) feedAll(t testing.TB, key, query string, limit int) []feedEvent {
	t.Helper()
	var all []feedEvent
	after := "0"
	var last int64
	for {
		q := url.Values{}
		if query != "" {
			var err error
			if q, err = url.ParseQuery(query); err != nil {
				t.Fatal(err)
			}
		}
		q.Set("after", after)
		q.Set("limit", fmt.Sprint(limit))
		p := e.feedPage(t, key, q.Encode())
		if len(p.Events) == 0 {
			if p.Next != after {
				t.Fatalf("empty page after %s has next %q, want %q", after, p.Next, after)
			}
			return all
		}
		if len(p.Events) > limit {
			t.Fatalf("page has %d events, limit %d", len(p.Events), limit)
		}
		for _, ev := range p.Events {
			pos := cursorOf(t, ev.Cursor)
			if pos <= last {
				t.Fatalf("feed cursor %d after %d: not increasing", pos, last)
			}
			last = pos
		}
		if want := p.Events[len(p.Events)-1].Cursor; p.Next != want {
			t.Fatalf("next = %q, want the last event's cursor %q", p.Next, want)
		}
		all = append(all, p.Events...)
		after = p.Next
	}
}

// feedCount returns how many events the app's feed holds.
func (e *env) feedCount(t testing.TB, key string) int {
	t.Helper()
	return len(e.feedAll(t, key, "", 1000))
}

func cursorOf(t testing.TB, c string) int64 {
	t.Helper()
	var n int64
	if _, err := fmt.Sscan(c, &n); err != nil || c == "" {
		t.Fatalf("bad cursor %q", c)
	}
	return n
}

// userJSON is GET /v1/users/{id}.
type userJSON struct {
	UserID  string `json:"user_id"`
	Session struct {
		Business string `json:"business"`
		Meeting  string `json:"meeting"`
	} `json:"session"`
	Meeting   meetingJSON  `json:"meeting"`
	LastSeq   int64        `json:"last_seq"`
	UpdatedAt time.Time    `json:"updated_at"`
	Devices   []deviceJSON `json:"devices"`
}

type meetingJSON struct {
	Status     string     `json:"status"`
	Code       int        `json:"code"`
	SDKName    string     `json:"sdk_name"`
	Reason     string     `json:"reason"`
	ReasonCode int        `json:"reason_code"`
	MeetingNum string     `json:"meeting_num"`
	DeviceID   string     `json:"device_id"`
	Since      *time.Time `json:"since"`
}

type deviceJSON struct {
	DeviceID      string      `json:"device_id"`
	LastClientSeq int64       `json:"last_client_seq"`
	Meeting       meetingJSON `json:"meeting"`
	LastSeenAt    time.Time   `json:"last_seen_at"`
}

func (e *env) user(t testing.TB, key, id string) userJSON {
	t.Helper()
	r := e.do(t, "GET", "/v1/users/"+url.PathEscape(id), key, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("GET /v1/users/%s: got %s, want 200", id, r)
	}
	var u userJSON
	decodeStrict(t, r.Body, &u)
	return u
}

// requireError checks that r is the error response {"error":{"code",
// "message","field"}} with the given status, code and field ("" for none),
// and returns the message.
func requireError(t testing.TB, r response, status int, code, field string) string {
	t.Helper()
	if r.Status != status {
		t.Fatalf("got %s, want status %d", r, status)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("error Content-Type = %q, want application/json", ct)
	}
	var body struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
			Field   string `json:"field"`
		} `json:"error"`
	}
	decodeStrict(t, r.Body, &body)
	if body.Error == nil {
		t.Fatalf("error body %s has no \"error\" object", r.Body)
	}
	if body.Error.Code != code {
		t.Errorf("error code = %q, want %q (body %s)", body.Error.Code, code, r.Body)
	}
	if body.Error.Field != field {
		t.Errorf("error field = %q, want %q (body %s)", body.Error.Field, field, r.Body)
	}
	if body.Error.Message == "" {
		t.Errorf("error without a message: %s", r.Body)
	}
	return body.Error.Message
}

// decodeStrict decodes JSON, failing on fields the test does not know.
func decodeStrict(t testing.TB, b []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
}

// statusEvent builds a meeting.status_changed event.
func statusEvent(user, device string, clientSeq int64, status any) map[string]any {
	ev := map[string]any{
		"type":    "meeting.status_changed",
		"user_id": user,
		"data":    map[string]any{"status": status},
	}
	if device != "" {
		ev["device_id"] = device
	}
	if clientSeq > 0 {
		ev["client_seq"] = clientSeq
	}
	return ev
}

func batch(events ...map[string]any) map[string]any {
	return map[string]any{"events": events}
}

// sseEvent is one message of an event stream.
type sseEvent struct {
	ID   string
	Data string
}

// stream is an open GET /v1/events/stream.
type stream struct {
	resp   *http.Response
	sc     *bufio.Scanner
	cancel context.CancelFunc
}

// openStream opens the event stream with query and optional Last-Event-ID,
// and returns once the response headers arrived. It is closed at the end
// of the test, or earlier with Close.
func (e *env) openStream(t testing.TB, key, query, lastEventID string) *stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	req, err := http.NewRequestWithContext(ctx, "GET", e.URL+"/v1/events/stream?"+query, nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Accept", "text/event-stream")
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := e.Client.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("open stream: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		t.Fatalf("open stream: %d %s", resp.StatusCode, b)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Errorf("stream Content-Type = %q", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	s := &stream{resp: resp, sc: sc, cancel: cancel}
	t.Cleanup(s.Close)
	return s
}

// Close disconnects.
func (s *stream) Close() {
	s.cancel()
	s.resp.Body.Close()
}

// next returns the next event of the stream, skipping comments and
// retry fields. It fails the test if the stream ends or d passes first.
func (s *stream) next(t testing.TB, d time.Duration) sseEvent {
	t.Helper()
	ev, err := s.nextErr(d)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	return ev
}

func (s *stream) nextErr(d time.Duration) (sseEvent, error) {
	timer := time.AfterFunc(d, s.cancel) // a deadline: the read fails once it fires
	defer timer.Stop()
	var ev sseEvent
	var data []string
	for s.sc.Scan() {
		line := s.sc.Text()
		switch {
		case line == "":
			if len(data) > 0 {
				ev.Data = strings.Join(data, "\n")
				return ev, nil
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "id:"):
			ev.ID = strings.TrimPrefix(strings.TrimPrefix(line, "id:"), " ")
		case strings.HasPrefix(line, "data:"):
			data = append(data, strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
		case strings.HasPrefix(line, "retry:"), strings.HasPrefix(line, "event:"):
		default:
			return ev, fmt.Errorf("unexpected stream line %q", line)
		}
	}
	if err := s.sc.Err(); err != nil {
		return ev, err
	}
	return ev, io.EOF
}

// event decodes an SSE message as a feed event and checks its SSE id is its cursor.
func (m sseEvent) event(t testing.TB) feedEvent {
	t.Helper()
	var ev feedEvent
	decodeStrict(t, []byte(m.Data), &ev)
	if ev.Cursor == "" || m.ID != ev.Cursor {
		t.Fatalf("SSE id %q is not the event's cursor %q", m.ID, ev.Cursor)
	}
	return ev
}
