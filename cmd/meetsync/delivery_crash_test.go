package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/webhook"
)

// TestDeliveryCrashSafety runs the real binary with three local webhook
// receivers (one subscribed to meeting.*, one to everything, one to two
// exact types that is slow and answers 500 to about one webhook in five),
// posts events for many users from many goroutines, and kills the process
// with SIGKILL while webhooks are being sent: after enough requests were
// acknowledged and every receiver has taken some webhooks. It restarts the
// server on the same data directory (the receivers keep running), checks
// the log, retries the requests that got no answer, and after the last
// cycle posts a few more events. Then, once every event of the log has
// reached every endpoint subscribed to it:
//
//   - no receiver got an event it did not subscribe to, or one not in the log;
//   - a duplicate is a re-send of the same event: same webhook-id, same body
//     (so the distinct webhook-ids are exactly the subscribed events);
//   - webhook-id is the event's id, and every signature verifies with the
//     endpoint's secret;
//   - each endpoint first received each user's events in seq order, and
//     from any one server process it received them in seq order, re-sends
//     included (a webhook is sent again only by a later process);
//   - the API shows no delivery pending, failed, dead or superseded, and one
//     delivered delivery per subscribed event.
func TestDeliveryCrashSafety(t *testing.T) {
	t.Parallel()
	cycles := 2
	if testing.Short() {
		cycles = 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	began := time.Now()
	rng := rand.New(rand.NewPCG(seed, 1))

	// Receivers first: their cleanup (closing them) then runs after the
	// servers' (killing them).
	h := &hooks{}
	h.add(t, "meeting", []string{"meeting.*"}, false, seed)
	h.add(t, "all", []string{}, false, seed)
	h.add(t, "flaky", []string{meetsync.TypeMeetingStatusChanged, "app.note"}, true, seed)

	data := t.TempDir()
	// Ten attempts, quick ones: with the flaky receiver failing a webhook
	// at most 4 times, none runs out.
	serveArgs := []string{"--allow-private-endpoints", "--retry-schedule", "0s,100ms,200ms,400ms,800ms,1s,1s,1s,1s,1s"}
	s := startServer(t, data, serveArgs...)
	key := readKey(t, data)
	c := newClient(t, s.URL, key)
	for _, r := range h.rs {
		r.register(ctx, t, c)
	}

	// About a thousand events per cycle; fewer under the race detector,
	// which slows the server (and its SQLite) down about tenfold.
	workers, minAcks := 16, int64(30)
	if raceEnabled() {
		workers, minAcks = 8, 15
	}
	m := newLoadModel("w", 60, 3)
	var all []*request
	for cycle := 1; cycle <= cycles; cycle++ {
		triggerAt := minAcks + rng.Int64N(2*minAcks)
		before := h.accepted()
		load := m.start(ctx, t, c, loadOptions{workers: workers, triggerAt: triggerAt, seed: seed + uint64(cycle)})
		select {
		case <-load.trigger:
		case <-load.finished:
			t.Fatalf("cycle %d: the load ended before %d acknowledged requests; log:\n%s", cycle, triggerAt, s.stderr.String())
		case <-ctx.Done():
			load.stop()
			t.Fatalf("cycle %d: fewer than %d acknowledged requests before the deadline; log:\n%s", cycle, triggerAt, s.stderr.String())
		}
		// Kill only once every receiver has taken webhooks from this
		// process: deliveries are then in flight, the load still running.
		started := h.await(ctx, func() bool {
			now := h.accepted()
			for i := range now {
				if now[i] < before[i]+10 {
					return false
				}
			}
			return true
		})
		if !started {
			load.stop()
			t.Fatalf("cycle %d: not every receiver got 10 webhooks from this server process before the deadline (accepted %v, %v when it began); log:\n%s",
				cycle, h.accepted(), before, s.stderr.String())
		}
		atKill, killedAt := h.accepted(), time.Since(began)
		s.kill() // SIGKILL, mid-load and mid-delivery
		reqs := load.stop()
		// Once the receivers have closed every connection of the dead
		// process, no webhook of it can still arrive: a new epoch begins.
		if !h.await(ctx, func() bool { return h.conns.Load() == 0 }) {
			t.Fatalf("cycle %d: the receivers still have %d connections open after the kill", cycle, h.conns.Load())
		}
		h.epoch.Add(1)
		all = append(all, reqs...)
		if t.Failed() {
			t.FailNow()
		}
		acked, events := 0, 0
		var unacked []*request
		for _, r := range reqs {
			if r.acked {
				acked++
				events += len(r.events)
			} else {
				unacked = append(unacked, r)
			}
		}

		s = startServer(t, data, serveArgs...)
		c = newClient(t, s.URL, key)
		feed := verifyLog(t, c, all)
		stored := retry(ctx, t, c, feed, unacked)
		t.Logf("%.1fs: cycle %d: killed at %.1fs after %d acknowledged requests (%d events), %d in the log; receivers had accepted %v webhooks; "+
			"%d requests got no answer, %d of them had been committed; the restart released %s delivery claims",
			time.Since(began).Seconds(), cycle, killedAt.Seconds(), acked, events, len(feed.events), atKill, len(unacked), stored, releasedClaims(s.stderr.String()))
		if t.Failed() {
			t.FailNow()
		}
	}

	// A few more events on the restarted server, all acknowledged.
	load := m.start(ctx, t, c, loadOptions{workers: 4, triggerAt: 8, seed: seed})
	select {
	case <-load.trigger:
	case <-load.finished:
		t.Fatalf("the last load ended before 8 acknowledged requests; log:\n%s", s.stderr.String())
	case <-ctx.Done():
		load.stop()
		t.Fatalf("the last load: fewer than 8 acknowledged requests before the deadline; log:\n%s", s.stderr.String())
	}
	all = append(all, load.stop()...)
	if t.Failed() {
		t.FailNow()
	}
	feed := verifyLog(t, c, all) // now every request is acknowledged: the log is exactly what was sent
	if t.Failed() {
		t.FailNow()
	}
	byID := map[string]*feedEvent{}
	for _, e := range feed.events {
		byID[e.ID] = e
	}
	want := make([]map[string]bool, len(h.rs)) // per receiver: the ids of the events it subscribed to
	for i, r := range h.rs {
		want[i] = map[string]bool{}
		for _, e := range feed.events {
			if r.subscribed(e.Type) {
				want[i][e.ID] = true
			}
		}
	}

	// Wait until every subscribed event has reached its endpoint.
	missing := func() []int {
		out := make([]int, len(h.rs))
		for i, r := range h.rs {
			got := r.ids()
			for id := range want[i] {
				if !got[id] {
					out[i]++
				}
			}
		}
		return out
	}
	if !h.await(ctx, func() bool {
		for _, n := range missing() {
			if n > 0 {
				return false
			}
		}
		return true
	}) {
		n := missing()
		for i, r := range h.rs {
			if n[i] > 0 {
				t.Errorf("endpoint %s: %d of %d subscribed events never arrived, e.g. %s; its queue:\n%s",
					r.name, n[i], len(want[i]), r.someMissing(want[i], byID, 5), r.queueReport(t, c))
			}
		}
		t.Fatalf("not every event was delivered within the deadline; log:\n%s", s.stderr.String())
	}

	t.Logf("%.1fs: every event of the log (%d) reached its endpoints", time.Since(began).Seconds(), len(feed.events))

	// The receivers' side: subscriptions, duplicates, signatures, order.
	errs := 0
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf(format, args...)
		if errs++; errs >= 20 {
			t.FailNow()
		}
	}
	for i, r := range h.rs {
		st := r.check(byID, want[i], fail)
		t.Logf("endpoint %s (%v): %d events subscribed, %d webhooks accepted (%d duplicates), %d answered 500",
			r.name, r.types, len(want[i]), st.accepted, st.duplicates, st.refused)
	}

	// The server's side: nothing left to send, nothing dead, one delivered
	// delivery per subscribed event.
	h.checkServerSide(ctx, t, c, want, fail)
	if code := s.term(t); code != 0 {
		t.Errorf("SIGTERM: exit %d", code)
	}
}

var releasedRE = regexp.MustCompile(`msg="released delivery claims left by a previous run" count=(\d+)`)

// releasedClaims returns how many claims a server's log says it released at start.
func releasedClaims(log string) string {
	if m := releasedRE.FindStringSubmatch(log); m != nil {
		return m[1]
	}
	return "no"
}

// hooks is a set of webhook receivers.
type hooks struct {
	rs []*hookReceiver
	// epoch counts the server processes killed so far: a request that
	// began in epoch k came from process k+1 (the next one starts only
	// after the count went up, which waits until conns is 0).
	epoch atomic.Int64
	conns atomic.Int64 // connections the receivers have open
}

// add starts a receiver on 127.0.0.1 for the event types types (empty:
// everything). A flaky one is slow and answers 500 at random.
func (h *hooks) add(t *testing.T, name string, types []string, flaky bool, seed uint64) {
	r := &hookReceiver{name: name, types: types, flaky: flaky, epoch: &h.epoch,
		rng: rand.New(rand.NewPCG(seed, uint64(len(h.rs))+100)), refusals: map[string]int{}}
	r.srv = httptest.NewUnstartedServer(r)
	r.srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			h.conns.Add(1)
		case http.StateClosed, http.StateHijacked:
			h.conns.Add(-1)
		}
	}
	r.srv.Start()
	t.Cleanup(r.srv.Close)
	h.rs = append(h.rs, r)
}

// accepted returns how many webhooks each receiver accepted.
func (h *hooks) accepted() []int {
	out := make([]int, len(h.rs))
	for i, r := range h.rs {
		r.mu.Lock()
		out[i] = len(r.receipts)
		r.mu.Unlock()
	}
	return out
}

// await checks cond every 25 ms until it holds (true) or ctx ends (false).
// checkServerSide checks what the server says of every endpoint once the
// receivers have everything: nothing left to send (the receivers may have
// answered just before the outcomes were committed: it waits for those),
// nothing dead or superseded, and exactly one delivered delivery per
// subscribed event (want[i] for h.rs[i]).
func (h *hooks) checkServerSide(ctx context.Context, t *testing.T, c *apiClient, want []map[string]bool, fail func(string, ...any)) {
	t.Helper()
	if !h.await(ctx, func() bool {
		for _, r := range h.rs {
			if len(r.deliveries(t, c, meetsync.DeliveryPending)) > 0 || len(r.deliveries(t, c, meetsync.DeliveryFailed)) > 0 {
				return false
			}
		}
		return true
	}) {
		for _, r := range h.rs {
			t.Errorf("endpoint %s: deliveries still active:\n%s", r.name, r.queueReport(t, c))
		}
		t.FailNow()
	}
	for i, r := range h.rs {
		for _, status := range []string{meetsync.DeliveryDead, meetsync.DeliverySuperseded} {
			if ds := r.deliveries(t, c, status); len(ds) > 0 {
				fail("endpoint %s: %d %s deliveries, e.g. %+v", r.name, len(ds), status, ds[0])
			}
		}
		seen := map[string]bool{}
		for _, d := range r.deliveries(t, c, meetsync.DeliveryDelivered) {
			if seen[d.EventID] || !want[i][d.EventID] {
				fail("endpoint %s: delivery %s of event %s (%s): a second one, or not subscribed or not in the log", r.name, d.ID, d.EventID, d.EventType)
			}
			seen[d.EventID] = true
		}
		if len(seen) != len(want[i]) {
			fail("endpoint %s: %d delivered deliveries, %d subscribed events", r.name, len(seen), len(want[i]))
		}
	}
}

func (h *hooks) await(ctx context.Context, cond func() bool) bool {
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return cond()
		}
	}
	return true
}

// hookReceiver is an endpoint's receiver: it records every webhook it
// accepts, with its signature checked against the endpoint's secret.
type hookReceiver struct {
	name  string
	types []string
	flaky bool
	srv   *httptest.Server
	epoch *atomic.Int64
	id    string // the endpoint, set before any event is posted

	mu       sync.Mutex
	secret   string
	rng      *rand.Rand
	refusals map[string]int // webhook-id → 500s answered
	refused  int
	receipts []hookReceipt
}

type hookReceipt struct {
	epoch     int64 // of the server process that sent it
	webhookID string
	body      []byte
	sigErr    error
	ev        struct {
		Type   string `json:"type"`
		ID     string `json:"id"`
		UserID string `json:"user_id"`
		Seq    int64  `json:"seq"`
	}
	parseErr error
}

func (r *hookReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	epoch := r.epoch.Load()
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil {
		return // the sender is gone
	}
	id := req.Header.Get(webhook.HeaderID)
	r.mu.Lock()
	var work time.Duration
	refuse := false
	if r.flaky {
		work = time.Duration(r.rng.IntN(4000)) * time.Microsecond
		// One in five, but not more than 4 times for the same webhook,
		// so that no delivery runs out of attempts.
		refuse = r.refusals[id] < 4 && r.rng.IntN(5) == 0
	}
	r.mu.Unlock()
	if work > 0 { // a slow receiver (not synchronisation: it ends early if the sender hangs up)
		timer := time.NewTimer(work)
		select {
		case <-timer.C:
		case <-req.Context().Done():
		}
		timer.Stop()
	}
	r.mu.Lock()
	if refuse {
		r.refusals[id]++
		r.refused++
		r.mu.Unlock()
		http.Error(w, "not now", http.StatusInternalServerError)
		return
	}
	rc := hookReceipt{epoch: epoch, webhookID: id, body: body, sigErr: webhook.Verify(r.secret, req.Header, body)}
	rc.parseErr = json.Unmarshal(body, &rc.ev)
	r.receipts = append(r.receipts, rc)
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// subscribed reports whether the receiver's filter matches typ.
func (r *hookReceiver) subscribed(typ string) bool {
	if len(r.types) == 0 {
		return true
	}
	for _, p := range r.types {
		if prefix, ok := strings.CutSuffix(p, ".*"); ok {
			if strings.HasPrefix(typ, prefix+".") {
				return true
			}
		} else if p == typ {
			return true
		}
	}
	return false
}

// register creates the receiver's endpoint, without debounce.
func (r *hookReceiver) register(ctx context.Context, t *testing.T, c *apiClient) {
	t.Helper()
	body, err := json.Marshal(map[string]any{"url": r.srv.URL + "/hooks/" + r.name, "event_types": r.types, "debounce_ms": 0,
		"description": "crash test: " + r.name})
	if err != nil {
		t.Fatal(err)
	}
	status, resp, err := c.do(ctx, http.MethodPost, "/v1/endpoints", body, nil)
	if err != nil || status != http.StatusCreated {
		t.Fatalf("create endpoint %s: %d %s %v", r.name, status, resp, err)
	}
	var ep struct {
		ID, Secret string
		DebounceMS int64 `json:"debounce_ms"`
	}
	if err := json.Unmarshal(resp, &ep); err != nil || ep.ID == "" || !strings.HasPrefix(ep.Secret, "whsec_") || ep.DebounceMS != 0 {
		t.Fatalf("create endpoint %s: %v %s", r.name, err, resp)
	}
	r.id = ep.ID
	r.mu.Lock()
	r.secret = ep.Secret
	r.mu.Unlock()
}

// ids returns the webhook-ids the receiver accepted.
func (r *hookReceiver) ids() map[string]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]bool, len(r.receipts))
	for _, rc := range r.receipts {
		out[rc.webhookID] = true
	}
	return out
}

// someMissing describes up to n subscribed events the receiver never got.
func (r *hookReceiver) someMissing(want map[string]bool, byID map[string]*feedEvent, n int) string {
	got := r.ids()
	var out []string
	for id := range want {
		if !got[id] {
			e := byID[id]
			out = append(out, fmt.Sprintf("%s (%s, user %s seq %d)", id, e.Type, e.UserID, e.Seq))
			if len(out) == n {
				break
			}
		}
	}
	return strings.Join(out, ", ")
}

type receiverStats struct{ accepted, duplicates, refused int }

// check runs the receiver-side checks over everything it accepted.
func (r *hookReceiver) check(byID map[string]*feedEvent, want map[string]bool, fail func(string, ...any)) receiverStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := receiverStats{accepted: len(r.receipts), refused: r.refused}
	first := map[string]int{}     // webhook-id → index of its first receipt
	lastSeq := map[string]int64{} // user → seq of the newest event received so far
	type sent struct {
		epoch, seq int64
	}
	lastSent := map[string]sent{} // user → the epoch and seq of its last webhook received
	for i, rc := range r.receipts {
		ev := rc.ev
		switch {
		case rc.parseErr != nil:
			fail("endpoint %s: webhook %s: body %s: %v", r.name, rc.webhookID, rc.body, rc.parseErr)
			continue
		case rc.webhookID != ev.ID:
			fail("endpoint %s: webhook-id %q for event %s", r.name, rc.webhookID, ev.ID)
		}
		if prev, ok := lastSent[ev.UserID]; ok && prev.epoch == rc.epoch && ev.Seq <= prev.seq {
			fail("endpoint %s: server process %d sent user %s's seq %d (%s) after its seq %d", r.name, rc.epoch+1, ev.UserID, ev.Seq, ev.ID, prev.seq)
		}
		lastSent[ev.UserID] = sent{rc.epoch, ev.Seq}
		if rc.sigErr != nil {
			fail("endpoint %s: webhook %s: the signature does not verify: %v", r.name, rc.webhookID, rc.sigErr)
		}
		if j, ok := first[rc.webhookID]; ok {
			st.duplicates++
			if !bytes.Equal(r.receipts[j].body, rc.body) {
				fail("endpoint %s: webhook-id %s came twice with different bodies:\n%s\n%s", r.name, rc.webhookID, r.receipts[j].body, rc.body)
			}
			continue
		}
		first[rc.webhookID] = i
		e, ok := byID[ev.ID]
		switch {
		case !ok:
			fail("endpoint %s: received event %s (%s, user %s seq %d), which is not in the log", r.name, ev.ID, ev.Type, ev.UserID, ev.Seq)
			continue
		case !want[ev.ID]:
			fail("endpoint %s (%v): received event %s of type %s, which it did not subscribe to", r.name, r.types, ev.ID, e.Type)
		case ev.Type != e.Type || ev.UserID != e.UserID || ev.Seq != e.Seq:
			fail("endpoint %s: event %s arrived as %s/%s/seq %d, the log has %s/%s/seq %d", r.name, ev.ID, ev.Type, ev.UserID, ev.Seq, e.Type, e.UserID, e.Seq)
		}
		if prev := lastSeq[ev.UserID]; ev.Seq <= prev {
			fail("endpoint %s: user %s's seq %d (%s) arrived after its seq %d", r.name, ev.UserID, ev.Seq, ev.ID, prev)
		} else {
			lastSeq[ev.UserID] = ev.Seq
		}
	}
	if len(first) != len(want) {
		fail("endpoint %s: %d distinct webhook-ids, %d subscribed events", r.name, len(first), len(want))
	}
	return st
}

// deliveryView is a delivery as GET /v1/endpoints/{id}/deliveries shows it.
type deliveryView struct {
	ID            string     `json:"id"`
	EventID       string     `json:"event_id"`
	EventType     string     `json:"event_type"`
	UserID        string     `json:"user_id"`
	Seq           int64      `json:"seq"`
	Status        string     `json:"status"`
	Attempts      int        `json:"attempts"`
	NextAttemptAt *time.Time `json:"next_attempt_at"`
	LastError     string     `json:"last_error"`
	LastCode      int        `json:"last_status_code"`
}

// deliveries pages through the endpoint's deliveries with a status.
func (r *hookReceiver) deliveries(t *testing.T, c *apiClient, status string) []deliveryView {
	t.Helper()
	var out []deliveryView
	cursor := ""
	for page := 0; ; page++ {
		if page > 1000 {
			t.Fatalf("endpoint %s: the %s deliveries do not end", r.name, status)
		}
		var resp struct {
			Deliveries []deliveryView
			Next       string
		}
		c.get(t, "/v1/endpoints/"+r.id+"/deliveries?limit=1000&status="+status+"&cursor="+url.QueryEscape(cursor), &resp)
		for _, d := range resp.Deliveries {
			if d.Status != status {
				t.Fatalf("endpoint %s: asked for %s deliveries, got %+v", r.name, status, d)
			}
		}
		out = append(out, resp.Deliveries...)
		if resp.Next == "" {
			return out
		}
		cursor = resp.Next
	}
}

// queueReport describes the endpoint's active and dead deliveries.
func (r *hookReceiver) queueReport(t *testing.T, c *apiClient) string {
	var b strings.Builder
	for _, status := range []string{meetsync.DeliveryPending, meetsync.DeliveryFailed, meetsync.DeliveryDead} {
		ds := r.deliveries(t, c, status)
		fmt.Fprintf(&b, "  %d %s", len(ds), status)
		for i, d := range ds {
			if i == 5 {
				b.WriteString("\n    …")
				break
			}
			fmt.Fprintf(&b, "\n    %s event %s (%s) user %s seq %d: %d attempts, next %v, last %d %q",
				d.ID, d.EventID, d.EventType, d.UserID, d.Seq, d.Attempts, d.NextAttemptAt, d.LastCode, d.LastError)
		}
		b.WriteString("\n")
	}
	return b.String()
}
