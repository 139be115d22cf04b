package delivery_test

import (
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
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/delivery"
	"github.com/meetsync/meetsync/httpapi"
	"github.com/meetsync/meetsync/ingest"
	"github.com/meetsync/meetsync/schema"
	"github.com/meetsync/meetsync/sqlite"
	"github.com/meetsync/meetsync/webhook"
)

// shortSchedule is the retry schedule of most tests: an immediate first
// attempt, then quick retries, so that a test never waits for the
// production schedule (5 s, 5 min, …).
var shortSchedule = meetsync.RetrySchedule{0, 20 * time.Millisecond, 40 * time.Millisecond, 80 * time.Millisecond,
	100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond}

// env is one running meetsync wired as `meetsync serve` wires it: a real
// SQLite file, the group committer, the dispatcher and the HTTP API on a
// real 127.0.0.1 listener, sharing one injectable clock; and one app with
// its API key.
type env struct {
	URL    string
	Store  *sqlite.DB
	D      *delivery.Dispatcher
	Clock  *clock
	Client *http.Client

	AppID string
	Key   string

	cfg    delivery.Config // the dispatcher's, for restarts
	log    *slog.Logger
	mu     sync.Mutex
	closed map[*delivery.Dispatcher]bool
}

// closeDispatcher closes d (once) as a server's shutdown does.
func (e *env) closeDispatcher(d *delivery.Dispatcher, grace time.Duration) {
	e.mu.Lock()
	if e.closed == nil {
		e.closed = map[*delivery.Dispatcher]bool{}
	}
	done := e.closed[d]
	e.closed[d] = true
	e.mu.Unlock()
	if !done {
		d.Close(grace)
	}
}

func (e *env) closeDispatchers() {
	e.mu.Lock()
	ds := []*delivery.Dispatcher{e.D}
	for d := range e.closed {
		ds = append(ds, d)
	}
	e.mu.Unlock()
	for _, d := range ds {
		e.closeDispatcher(d, 2*time.Second)
	}
}

// restartDispatcher closes the running dispatcher and starts another on
// the same store, as a restarted server does. The API keeps waking the
// old one, so the new one relies on the ingest wake-ups and its own timers.
func (e *env) restartDispatcher(t testing.TB, grace time.Duration) {
	t.Helper()
	e.closeDispatcher(e.D, grace)
	d, err := delivery.New(e.Store, e.log, nil, e.cfg)
	if err != nil {
		t.Fatalf("new dispatcher: %v", err)
	}
	if err := d.Start(context.Background()); err != nil {
		t.Fatalf("start dispatcher: %v", err)
	}
	e.mu.Lock()
	e.closed[d] = false
	e.D = d
	e.mu.Unlock()
}

type options struct {
	apiPolicy meetsync.URLPolicy
	apiSealer *meetsync.Sealer
	cfg       delivery.Config
}

// withSealers sets the sealer the API seals endpoint secrets with and the
// one the dispatcher opens them with.
func withSealers(api, dispatcher *meetsync.Sealer) option {
	return func(o *options) { o.apiSealer, o.cfg.Sealer = api, dispatcher }
}

// option changes the setup of one test.
type option func(*options)

// withConfig edits the dispatcher's configuration.
func withConfig(f func(*delivery.Config)) option { return func(o *options) { f(&o.cfg) } }

// withAPIPolicy sets the URL policy of the endpoints API (the dispatcher's
// is set with withConfig).
func withAPIPolicy(p meetsync.URLPolicy) option { return func(o *options) { o.apiPolicy = p } }

// setup starts a fresh meetsync for one test and stops it when the test ends.
// By default private endpoints are allowed (receivers are on 127.0.0.1),
// the retry schedule is shortSchedule without jitter, and a request times
// out after 500 ms.
func setup(t *testing.T, opts ...option) *env {
	t.Helper()
	clk := &clock{}
	o := options{
		apiPolicy: meetsync.URLPolicy{AllowPrivate: true},
		cfg: delivery.Config{
			Workers:        32,
			Lease:          10 * time.Second,
			Timeout:        2 * time.Second,
			Schedule:       shortSchedule,
			Jitter:         -1,
			URLPolicy:      meetsync.URLPolicy{AllowPrivate: true},
			ReleaseOnStart: true,
		},
	}
	for _, f := range opts {
		f(&o)
	}
	db, err := sqlite.Open(filepath.Join(t.TempDir(), "meetsync.db"), sqlite.Config{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	log := slog.New(slog.DiscardHandler)
	reg := prometheus.NewRegistry()
	ing := ingest.New(db, reg, ingest.Config{})
	cfg := o.cfg
	cfg.Changes, cfg.Notify, cfg.Now = ing.Changes, ing.Notify, clk.Now
	d, err := delivery.New(db, log, reg, cfg)
	if err != nil {
		t.Fatalf("new dispatcher: %v", err)
	}
	if err := d.Start(context.Background()); err != nil {
		t.Fatalf("start dispatcher: %v", err)
	}
	api := httpapi.New(httpapi.Config{Store: db, Ingester: ing, Logger: log, Registry: reg, Now: clk.Now,
		URLPolicy: o.apiPolicy, Delivery: d, Types: schema.New(db, db, schema.Config{Logger: log}), Sealer: o.apiSealer})
	srv := httptest.NewServer(api)
	if host := srv.Listener.Addr().String(); !strings.HasPrefix(host, "127.0.0.1:") {
		t.Fatalf("API listens on %s, want 127.0.0.1", host)
	}
	e := &env{URL: srv.URL, Store: db, D: d, Clock: clk, Client: &http.Client{Timeout: 30 * time.Second},
		cfg: cfg, log: log}
	t.Cleanup(func() {
		api.BeginShutdown()
		e.Client.CloseIdleConnections()
		srv.Close()
		e.closeDispatchers()
		ing.Close()
		if err := db.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	e.AppID, e.Key = e.newApp(t, "app-"+strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")))
	return e
}

// newApp creates an app directly in the store, as `meetsync apps create`
// does, and returns its id and API key.
func (e *env) newApp(t testing.TB, name string) (appID, key string) {
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
	return app.ID, secret
}

// clock is the injectable clock shared by the API and the dispatcher: real
// time plus an offset, or frozen.
type clock struct {
	mu     sync.Mutex
	offset time.Duration
	frozen time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.frozen.IsZero() {
		return c.frozen
	}
	return time.Now().Add(c.offset)
}

// Freeze stops the clock at the current time.
func (c *clock) Freeze() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.frozen.IsZero() {
		c.frozen = time.Now().Add(c.offset)
	}
}

// Advance moves the clock forward by d.
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.frozen.IsZero() {
		c.frozen = c.frozen.Add(d)
	} else {
		c.offset += d
	}
}

// eventually polls cond until it holds, failing the test after timeout.
func eventually(t testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	interval := 2 * time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for "+format, append([]any{timeout}, args...)...)
		}
		// Poll often at first, then back off so that polling the API
		// does not compete with the work it waits for.
		timer := time.NewTimer(interval)
		<-timer.C
		interval = min(2*interval, 50*time.Millisecond)
	}
}

// ---- the HTTP API -------------------------------------------------------

// response is a fully read HTTP response.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) String() string { return fmt.Sprintf("%d %s", r.Status, r.Body) }

// do sends a request with the app's key and returns the whole response.
func (e *env) do(t testing.TB, method, path string, body any) response {
	t.Helper()
	return e.doAs(t, e.Key, method, path, body)
}

// doAs is do with another key.
func (e *env) doAs(t testing.TB, key, method, path string, body any) response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			t.Fatalf("encode body: %v", err)
		}
		rd = bytes.NewReader(buf)
	}
	req, err := http.NewRequest(method, e.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := e.Client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// expect requires status and decodes the body into v (if not nil).
func expect(t testing.TB, r response, status int, v any) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("got %s, want status %d", r, status)
	}
	if v != nil {
		if err := json.Unmarshal(r.Body, v); err != nil {
			t.Fatalf("decode %s: %v", r.Body, err)
		}
	}
}

// requireError checks that r is {"error":{"code","message","field"}} with
// the given status, code and field, and returns the message.
func requireError(t testing.TB, r response, status int, code, field string) string {
	t.Helper()
	var body struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
			Field   string `json:"field"`
		} `json:"error"`
	}
	expect(t, r, status, &body)
	if body.Error == nil {
		t.Fatalf("error body %s has no \"error\" object", r.Body)
	}
	if body.Error.Code != code || body.Error.Field != field || body.Error.Message == "" {
		t.Fatalf("error = %s, want code %q, field %q and a message", r.Body, code, field)
	}
	return body.Error.Message
}

// endpointJSON is an endpoint as the API shows it.
type endpointJSON struct {
	ID             string     `json:"id"`
	URL            string     `json:"url"`
	Description    string     `json:"description"`
	EventTypes     []string   `json:"event_types"`
	DebounceMS     int64      `json:"debounce_ms"`
	RateLimitPerS  int        `json:"rate_limit_per_s"`
	Enabled        bool       `json:"enabled"`
	DisabledReason string     `json:"disabled_reason"`
	DisabledAt     *time.Time `json:"disabled_at"`
	FailingSince   *time.Time `json:"failing_since"`
	Secret         string     `json:"secret"`
}

// createEndpoint creates an endpoint for url with extra fields and returns
// it (with its secret).
func (e *env) createEndpoint(t testing.TB, url string, fields map[string]any) endpointJSON {
	t.Helper()
	body := map[string]any{"url": url}
	for k, v := range fields {
		body[k] = v
	}
	var ep endpointJSON
	expect(t, e.do(t, "POST", "/v1/endpoints", body), http.StatusCreated, &ep)
	if !strings.HasPrefix(ep.ID, "ep_") || !strings.HasPrefix(ep.Secret, "whsec_") {
		t.Fatalf("created endpoint %+v: want an ep_ id and a whsec_ secret", ep)
	}
	return ep
}

func (e *env) endpoint(t testing.TB, id string) endpointJSON {
	t.Helper()
	var ep endpointJSON
	expect(t, e.do(t, "GET", "/v1/endpoints/"+id, nil), http.StatusOK, &ep)
	return ep
}

// deliveryJSON is a delivery as the API shows it.
type deliveryJSON struct {
	ID            string     `json:"id"`
	EndpointID    string     `json:"endpoint_id"`
	EventID       string     `json:"event_id"`
	EventType     string     `json:"event_type"`
	UserID        string     `json:"user_id"`
	Seq           int64      `json:"seq"`
	Status        string     `json:"status"`
	Attempts      int        `json:"attempts"`
	NextAttemptAt *time.Time `json:"next_attempt_at"`
	LastError     string     `json:"last_error"`
	LastCode      int        `json:"last_status_code"`
	SupersededBy  string     `json:"superseded_by"`
	DeliveredAt   *time.Time `json:"delivered_at"`
}

type attemptJSON struct {
	N            int       `json:"n"`
	At           time.Time `json:"at"`
	StatusCode   int       `json:"status_code"`
	LatencyMS    float64   `json:"latency_ms"`
	Error        string    `json:"error"`
	ResponseBody string    `json:"response_body"`
}

// deliveries returns every delivery of an endpoint with status ("" = any),
// newest first, following the cursor.
func (e *env) deliveries(t testing.TB, endpointID, status string) []deliveryJSON {
	t.Helper()
	var all []deliveryJSON
	cursor := ""
	for {
		q := url.Values{"limit": {"1000"}}
		if status != "" {
			q.Set("status", status)
		}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var page struct {
			Deliveries []deliveryJSON `json:"deliveries"`
			Next       string         `json:"next"`
		}
		expect(t, e.do(t, "GET", "/v1/endpoints/"+endpointID+"/deliveries?"+q.Encode(), nil), http.StatusOK, &page)
		all = append(all, page.Deliveries...)
		if page.Next == "" {
			return all
		}
		cursor = page.Next
	}
}

// countDeliveries counts an endpoint's deliveries with status.
func (e *env) countDeliveries(t testing.TB, endpointID, status string) int {
	t.Helper()
	return len(e.deliveries(t, endpointID, status))
}

// settled reports whether an endpoint has no pending or failed delivery.
func (e *env) settled(t testing.TB, endpointID string) bool {
	t.Helper()
	for _, status := range []string{"pending", "failed"} {
		var page struct {
			Deliveries []deliveryJSON `json:"deliveries"`
		}
		expect(t, e.do(t, "GET", "/v1/endpoints/"+endpointID+"/deliveries?limit=1&status="+status, nil), http.StatusOK, &page)
		if len(page.Deliveries) > 0 {
			return false
		}
	}
	return true
}

// delivery returns a delivery with its attempts.
func (e *env) delivery(t testing.TB, id string) (deliveryJSON, []attemptJSON) {
	t.Helper()
	var out struct {
		Delivery deliveryJSON  `json:"delivery"`
		Attempts []attemptJSON `json:"attempts"`
	}
	expect(t, e.do(t, "GET", "/v1/deliveries/"+id, nil), http.StatusOK, &out)
	return out.Delivery, out.Attempts
}

// deliveryOf returns the delivery of event eventID to an endpoint.
func (e *env) deliveryOf(t testing.TB, endpointID, eventID string) deliveryJSON {
	t.Helper()
	for _, d := range e.deliveries(t, endpointID, "") {
		if d.EventID == eventID {
			return d
		}
	}
	t.Fatalf("endpoint %s has no delivery of event %s", endpointID, eventID)
	return deliveryJSON{}
}

// result is one entry of an ingest response.
type result struct {
	ID    string `json:"id"`
	Seq   int64  `json:"seq"`
	Stale bool   `json:"stale"`
}

// ingest posts events in one batch and returns their results.
func (e *env) ingest(t testing.TB, events ...map[string]any) []result {
	t.Helper()
	var out struct {
		Events []result `json:"events"`
	}
	expect(t, e.do(t, "POST", "/v1/events", map[string]any{"events": events}), http.StatusOK, &out)
	if len(out.Events) != len(events) {
		t.Fatalf("ingest of %d events returned %d results", len(events), len(out.Events))
	}
	return out.Events
}

// event builds an ingest event of type typ for user with data.
func event(user, typ string, data map[string]any) map[string]any {
	ev := map[string]any{"type": typ, "user_id": user}
	if data != nil {
		ev["data"] = data
	}
	return ev
}

// statusEvent builds a meeting.status_changed event.
func statusEvent(user, status string) map[string]any {
	return event(user, meetsync.TypeMeetingStatusChanged, map[string]any{"status": status})
}

// feedEvent is an event of the feed.
type feedEvent struct {
	ID            string          `json:"id"`
	Type          string          `json:"type"`
	UserID        string          `json:"user_id"`
	Seq           int64           `json:"seq"`
	Data          json.RawMessage `json:"data"`
	SchemaVersion int             `json:"schema_version"`
}

// feed returns the app's whole feed filtered by query (type=…&user_id=…).
func (e *env) feed(t testing.TB, query string) []feedEvent {
	t.Helper()
	var all []feedEvent
	after := "0"
	for {
		var page struct {
			Events []feedEvent `json:"events"`
			Next   string      `json:"next"`
		}
		q := "after=" + after + "&limit=1000"
		if query != "" {
			q += "&" + query
		}
		expect(t, e.do(t, "GET", "/v1/events?"+q, nil), http.StatusOK, &page)
		if len(page.Events) == 0 {
			return all
		}
		all = append(all, page.Events...)
		after = page.Next
	}
}

// ---- receivers ----------------------------------------------------------

// payload is the body of a webhook.
type payload struct {
	Type       string          `json:"type"`
	Timestamp  time.Time       `json:"timestamp"`
	Data       json.RawMessage `json:"data"`
	ID         string          `json:"id"`
	UserID     string          `json:"user_id"`
	Seq        int64           `json:"seq"`
	OccurredAt time.Time       `json:"occurred_at"`
	Source     string          `json:"source"`
	DeviceID   string          `json:"device_id"`
	ClientSeq  int64           `json:"client_seq"`
	Stale      bool            `json:"stale"`
	// SchemaVersion is set on events of registered custom types.
	SchemaVersion int `json:"schema_version"`
}

// webhookReq is one request a receiver got.
type webhookReq struct {
	At      time.Time
	ID      string // webhook-id
	Header  http.Header
	Body    []byte
	Payload payload
	// N counts the receipts of this webhook-id at this receiver (1 = first).
	N int
}

// reply is what a receiver answers.
type reply struct {
	Status int
	Header map[string]string
	Body   string
	// Hang holds the request until the sender gives up (its timeout).
	Hang bool
}

// receiver is a real local HTTP webhook receiver that records every
// request and verifies every signature with both meetsync's webhook
// package and the Standard Webhooks reference library.
type receiver struct {
	URL  string
	srv  *httptest.Server
	stop chan struct{}

	mu        sync.Mutex
	reqs      []*webhookReq
	seen      map[string]int
	respond   func(*webhookReq) reply
	secrets   []string
	verifyNow func() time.Time
	errs      []string
}

// newReceiver starts a receiver answering 200 until told otherwise. The
// test fails at its end if a request was malformed or did not verify.
func newReceiver(t *testing.T) *receiver {
	t.Helper()
	rc := &receiver{stop: make(chan struct{}), seen: map[string]int{}}
	rc.srv = httptest.NewServer(rc)
	rc.URL = rc.srv.URL + "/hook"
	if !strings.HasPrefix(rc.srv.Listener.Addr().String(), "127.0.0.1:") {
		t.Fatalf("receiver listens on %s, want 127.0.0.1", rc.srv.Listener.Addr())
	}
	t.Cleanup(func() {
		close(rc.stop)
		rc.srv.Close()
		rc.mu.Lock()
		defer rc.mu.Unlock()
		for _, e := range rc.errs {
			t.Error(e)
		}
	})
	return rc
}

// verifyWith makes the receiver require that every request verifies with
// each of secrets (both implementations). now, if not nil, is the clock of
// meetsync's verifier; the reference library then skips its timestamp check.
func (rc *receiver) verifyWith(now func() time.Time, secrets ...string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.secrets, rc.verifyNow = secrets, now
}

// setRespond changes how the receiver answers.
func (rc *receiver) setRespond(f func(*webhookReq) reply) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.respond = f
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	req := &webhookReq{At: time.Now(), ID: r.Header.Get(webhook.HeaderID), Header: r.Header.Clone(), Body: body}
	var problems []string
	if err != nil {
		problems = append(problems, fmt.Sprintf("receiver: read body: %v", err))
	}
	if r.Method != http.MethodPost || r.URL.Path != "/hook" || r.Header.Get("Content-Type") != "application/json" {
		problems = append(problems, fmt.Sprintf("receiver: got %s %s with Content-Type %q, want POST /hook application/json",
			r.Method, r.URL.Path, r.Header.Get("Content-Type")))
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req.Payload); err != nil {
		problems = append(problems, fmt.Sprintf("receiver: webhook body %s: %v", body, err))
	} else if req.Payload.ID != req.ID {
		problems = append(problems, fmt.Sprintf("receiver: webhook-id %q but body id %q", req.ID, req.Payload.ID))
	}
	rc.mu.Lock()
	rc.seen[req.ID]++
	req.N = rc.seen[req.ID]
	rc.reqs = append(rc.reqs, req)
	respond, secrets, now := rc.respond, rc.secrets, rc.verifyNow
	rc.mu.Unlock()
	for _, s := range secrets {
		if err := (webhook.Verifier{Now: now}).Verify(s, r.Header, body); err != nil {
			problems = append(problems, fmt.Sprintf("receiver: webhook %s does not verify with webhook.Verify: %v", req.ID, err))
		}
		wh, err := standardwebhooks.NewWebhook(s)
		if err == nil {
			if now == nil {
				err = wh.Verify(body, r.Header)
			} else {
				err = wh.VerifyIgnoringTimestamp(body, r.Header)
			}
		}
		if err != nil {
			problems = append(problems, fmt.Sprintf("receiver: webhook %s does not verify with the Standard Webhooks library: %v", req.ID, err))
		}
	}
	if len(problems) > 0 {
		rc.mu.Lock()
		rc.errs = append(rc.errs, problems...)
		rc.mu.Unlock()
	}
	rep := reply{Status: http.StatusOK, Body: "ok"}
	if respond != nil {
		rep = respond(req)
	}
	if rep.Hang {
		select {
		case <-r.Context().Done():
		case <-rc.stop:
		case <-time.After(30 * time.Second):
		}
		return
	}
	for k, v := range rep.Header {
		w.Header().Set(k, v)
	}
	w.WriteHeader(rep.Status)
	_, _ = io.WriteString(w, rep.Body)
}

// requests returns every request so far, in arrival order.
func (rc *receiver) requests() []*webhookReq {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]*webhookReq(nil), rc.reqs...)
}

// count is the number of requests so far.
func (rc *receiver) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.reqs)
}

// firsts returns the first receipt of each webhook-id, in arrival order.
func (rc *receiver) firsts() []*webhookReq {
	var out []*webhookReq
	for _, r := range rc.requests() {
		if r.N == 1 {
			out = append(out, r)
		}
	}
	return out
}

// byID returns the receipts of webhook-id id.
func (rc *receiver) byID(id string) []*webhookReq {
	var out []*webhookReq
	for _, r := range rc.requests() {
		if r.ID == id {
			out = append(out, r)
		}
	}
	return out
}

// has reports whether webhook-id id was received n times or more.
func (rc *receiver) has(id string, n int) bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.seen[id] >= n
}

// seqs returns the seqs of the first receipts of user's webhooks, in
// arrival order.
func (rc *receiver) seqs(user string) []int64 {
	var out []int64
	for _, r := range rc.firsts() {
		if r.Payload.UserID == user {
			out = append(out, r.Payload.Seq)
		}
	}
	return out
}

// fail answers status to every request.
func fail(status int) func(*webhookReq) reply {
	return func(*webhookReq) reply { return reply{Status: status, Body: "failing on purpose"} }
}
