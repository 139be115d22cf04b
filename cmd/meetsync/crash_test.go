package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
)

// TestCrashSafety runs the real binary, posts events from many goroutines,
// kills the process with SIGKILL once some requests were acknowledged,
// restarts it on the same data directory and checks the log and the state:
// every acknowledged event is in the feed exactly once with the seq it was
// acknowledged with, every user's seqs run 1..n in feed order, the stale
// flags and the current state follow from replaying the log, and a request
// that was in flight at the kill is either wholly stored (and its retry is
// answered as a duplicate) or not at all (and its retry stores it once).
func TestCrashSafety(t *testing.T) {
	t.Parallel()
	cycles := 3
	if testing.Short() {
		cycles = 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	data := t.TempDir()
	s := startServer(t, data)
	key := readKey(t, data)
	c := newClient(t, s.URL, key)
	m := newLoadModel("k", 40, 3)
	var all []*request
	for cycle := 1; cycle <= cycles; cycle++ {
		triggerAt := 60 + rng.Int64N(120)
		load := m.start(ctx, t, c, loadOptions{workers: 32, triggerAt: triggerAt, seed: seed + uint64(cycle)})
		select {
		case <-load.trigger:
		case <-load.finished:
			t.Fatalf("cycle %d: the load ended before %d acknowledged requests; log:\n%s", cycle, triggerAt, s.stderr.String())
		case <-ctx.Done():
			load.stop()
			t.Fatalf("cycle %d: fewer than %d acknowledged requests before the deadline; log:\n%s", cycle, triggerAt, s.stderr.String())
		}
		s.kill() // SIGKILL, mid-load
		reqs := load.stop()
		all = append(all, reqs...)
		if t.Failed() {
			t.FailNow()
		}

		s = startServer(t, data)
		c = newClient(t, s.URL, key)
		feed := verifyLog(t, c, all)
		// Retry the requests that got no answer, and some that did (which
		// must all come back as duplicates).
		var unacked, again []*request
		acked, events := 0, 0
		for _, r := range reqs {
			if r.acked {
				acked++
				events += len(r.events)
				if rng.IntN(8) == 0 {
					again = append(again, r)
				}
			} else {
				unacked = append(unacked, r)
			}
		}
		stored := retry(ctx, t, c, feed, unacked)
		if n := retry(ctx, t, c, feed, again); n != len(again) {
			t.Errorf("only %d of %d acknowledged requests were found again", n, len(again))
		}
		t.Logf("cycle %d: killed after %d acknowledged requests (%d events); %d requests got no answer, %d of them had been committed",
			cycle, acked, events, len(unacked), stored)
		if t.Failed() {
			t.FailNow()
		}
	}
	// The retries of the last cycle (the next cycle's first check covers
	// those of the others): now every request has been acknowledged.
	verifyLog(t, c, all)
	if code := s.term(t); code != 0 {
		t.Errorf("SIGTERM: exit %d", code)
	}
}

// retry posts requests again, byte for byte with the same Idempotency-Key,
// and checks each answer against the feed read before: an event already
// stored comes back as a duplicate with its id and seq, any other is new.
// It returns how many requests had been stored already.
func retry(ctx context.Context, t *testing.T, c *apiClient, feed *feedView, reqs []*request) (stored int) {
	t.Helper()
	for _, req := range reqs {
		status, res, body, err := postRequest(ctx, c, req)
		if err != nil || status != http.StatusOK {
			t.Fatalf("retry: %d %s %v", status, body, err)
		}
		_, wasStored := feed.byTag[req.events[0].tag]
		if wasStored {
			stored++
		}
		for i, ev := range req.events {
			r := res[i]
			if fe, ok := feed.byTag[ev.tag]; ok {
				if !r.Duplicate || r.ID != fe.ID || r.Seq != fe.Seq {
					t.Errorf("retry of event %s (stored before as %s seq %d): got %+v, want that event as a duplicate", ev.tag, fe.ID, fe.Seq, r)
				}
			} else if r.Duplicate {
				t.Errorf("retry of event %s, not stored before: got %+v, a duplicate", ev.tag, r)
			}
		}
		req.acked, req.results = true, res
	}
	return stored
}

// sentEvent is one event of a request, known by the tag in its data.
type sentEvent struct {
	tag  string
	user string
}

// request is one POST /v1/events and its last answer.
type request struct {
	body    []byte
	idemKey string
	events  []sentEvent

	acked   bool // a 200 with its results was received
	results []ingestResult
}

type ingestResult struct {
	ID        string `json:"id"`
	Seq       int64  `json:"seq"`
	Duplicate bool   `json:"duplicate"`
	Stale     bool   `json:"stale"`
}

// postRequest sends req. err means no complete answer came back.
func postRequest(ctx context.Context, c *apiClient, req *request) (int, []ingestResult, []byte, error) {
	hdr := http.Header{}
	if req.idemKey != "" {
		hdr.Set("Idempotency-Key", req.idemKey)
	}
	status, body, err := c.do(ctx, http.MethodPost, "/v1/events", req.body, hdr)
	if err != nil || status != http.StatusOK {
		return status, nil, body, err
	}
	var out struct{ Events []ingestResult }
	if err := json.Unmarshal(body, &out); err != nil || len(out.Events) != len(req.events) {
		return status, nil, body, fmt.Errorf("%w to %d events (%v): %s", errBadAnswer, len(req.events), err, body)
	}
	return status, out.Events, body, nil
}

// errBadAnswer is a 200 whose body is not the results of the request.
var errBadAnswer = errors.New("malformed answer")

// loadModel makes requests: single events and batches of 10–50, for many
// users with several devices each; every event carries a unique tag in its
// data and something that makes a retry idempotent (device and client_seq,
// its own id, or the request's Idempotency-Key).
type loadModel struct {
	prefix  string
	users   []string
	devices []string
	seqs    map[string]*atomic.Int64 // user/device → last client_seq handed out
	tags    atomic.Int64
	reqs    atomic.Int64
}

func newLoadModel(prefix string, users, devices int) *loadModel {
	m := &loadModel{prefix: prefix, seqs: map[string]*atomic.Int64{}}
	for i := range devices {
		m.devices = append(m.devices, fmt.Sprintf("dev-%d", i))
	}
	for i := range users {
		u := fmt.Sprintf("%s-user-%02d", prefix, i)
		m.users = append(m.users, u)
		for _, d := range m.devices {
			m.seqs[u+"/"+d] = new(atomic.Int64)
		}
	}
	return m
}

// statusForms are the ways a client may name a meeting status.
var statusForms = []any{0, 1, 2, 3, 4, 5, 6, 7, -1, 100, "in_meeting", "MEETING_STATUS_INMEETING", "idle", "MEETING_STATUS_IDLE",
	"waiting", "connecting", "in_screen_sharing", "MEETING_STATUS_IN_WAITING_ROOM", "disconnecting", "failed", "in_meeting_minimized"}

func (m *loadModel) newRequest(r *rand.Rand) *request {
	n := 1
	if r.IntN(100) < 45 {
		n = 10 + r.IntN(41)
	}
	req := &request{}
	idem := r.IntN(100) < 30
	events := make([]map[string]any, n)
	for i := range events {
		tag := fmt.Sprintf("%s%d", m.prefix, m.tags.Add(1))
		user := m.users[r.IntN(len(m.users))]
		dev := m.devices[r.IntN(len(m.devices))]
		req.events = append(req.events, sentEvent{tag: tag, user: user})
		e := map[string]any{"user_id": user}
		d := map[string]any{"tag": tag}
		fromDevice := func() {
			e["device_id"] = dev
			e["client_seq"] = m.seqs[user+"/"+dev].Add(1)
		}
		switch k := r.IntN(100); {
		case k < 68: // a status change from a device
			e["type"] = meetsync.TypeMeetingStatusChanged
			fromDevice()
		case k < 76: // a status change from the business system, with its own id
			e["type"] = meetsync.TypeMeetingStatusChanged
			e["id"] = "id-" + tag
		case k < 86: // a custom event from a device
			e["type"] = "app.heartbeat"
			fromDevice()
		case k < 94: // a custom event with its own id
			e["type"] = "app.note"
			e["id"] = "id-" + tag
		default: // nothing but the Idempotency-Key makes a retry safe
			e["type"] = "app.note"
			idem = true
		}
		if e["type"] == meetsync.TypeMeetingStatusChanged {
			d["status"] = statusForms[r.IntN(len(statusForms))]
			d["arg"] = r.IntN(15)
			switch r.IntN(3) {
			case 0:
				d["meeting_num"] = fmt.Sprint(100000 + r.IntN(5))
			case 1:
				d["meeting_num"] = 200000 + r.IntN(5)
			}
			if r.IntN(5) == 0 { // reported late, from an offline queue
				at := time.Now().Add(-time.Duration(r.IntN(2000)) * time.Millisecond)
				e["occurred_at"] = at.UTC().Truncate(time.Microsecond).Format(time.RFC3339Nano)
			}
		}
		e["data"] = d
		events[i] = e
	}
	var err error
	if n == 1 {
		req.body, err = json.Marshal(events[0])
	} else {
		req.body, err = json.Marshal(map[string]any{"events": events})
	}
	if err != nil {
		panic(err)
	}
	if idem {
		req.idemKey = fmt.Sprintf("%s-req-%d", m.prefix, m.reqs.Add(1))
	}
	return req
}

type loadOptions struct {
	workers   int
	triggerAt int64 // close trigger after this many acknowledged requests
	allow503  bool  // a 503 ends a worker instead of failing the test
	seed      uint64
	clients   []*apiClient // when set, each request goes to one of these (replicas), at random
}

// loadRun is a running load.
type loadRun struct {
	trigger  chan struct{} // closed at opts.triggerAt acknowledged requests
	finished chan struct{} // closed when every worker has returned
	halt     atomic.Bool
	wg       sync.WaitGroup
	mu       sync.Mutex
	reqs     []*request
}

// start runs opts.workers goroutines posting requests until stop, ctx's
// end, a request without a complete answer (the server is gone), or 5000
// requests each.
func (m *loadModel) start(ctx context.Context, t *testing.T, c *apiClient, opts loadOptions) *loadRun {
	l := &loadRun{trigger: make(chan struct{}), finished: make(chan struct{})}
	var acks atomic.Int64
	for w := range opts.workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			rng := rand.New(rand.NewPCG(opts.seed, uint64(w)))
			for range 5000 {
				if l.halt.Load() || ctx.Err() != nil {
					return
				}
				req := m.newRequest(rng)
				l.mu.Lock()
				l.reqs = append(l.reqs, req)
				l.mu.Unlock()
				to := c
				if len(opts.clients) > 0 {
					to = opts.clients[rng.IntN(len(opts.clients))]
				}
				status, res, body, err := postRequest(ctx, to, req)
				switch {
				case errors.Is(err, errBadAnswer):
					t.Errorf("load: %v", err)
					return
				case err != nil:
					return
				case status == http.StatusServiceUnavailable && opts.allow503:
					return
				case status != http.StatusOK:
					t.Errorf("load: %d %s", status, body)
					return
				}
				req.acked, req.results = true, res
				if acks.Add(1) == opts.triggerAt {
					close(l.trigger)
				}
			}
		}()
	}
	go func() {
		l.wg.Wait()
		close(l.finished)
	}()
	return l
}

// stop ends the load and returns every request sent.
func (l *loadRun) stop() []*request {
	l.halt.Store(true)
	l.wg.Wait()
	return l.reqs
}

// feedEvent is an event as the feed shows it.
type feedEvent struct {
	ID         string          `json:"id"`
	Type       string          `json:"type"`
	UserID     string          `json:"user_id"`
	Seq        int64           `json:"seq"`
	OccurredAt time.Time       `json:"occurred_at"`
	ReceivedAt time.Time       `json:"received_at"`
	DeviceID   string          `json:"device_id"`
	ClientSeq  int64           `json:"client_seq"`
	Stale      bool            `json:"stale"`
	Data       json.RawMessage `json:"data"`
	Cursor     string          `json:"cursor"`

	data struct {
		Tag        string `json:"tag"`
		Status     string `json:"status"`
		ReasonCode int    `json:"reason_code"`
		MeetingNum string `json:"meeting_num"`
	}
}

type feedView struct {
	events []*feedEvent
	byTag  map[string]*feedEvent
}

// readFeed pages through GET /v1/events from the start to the end.
func readFeed(t *testing.T, c *apiClient) *feedView {
	t.Helper()
	f := &feedView{byTag: map[string]*feedEvent{}}
	ids := map[string]bool{}
	after := ""
	for page := 0; ; page++ {
		if page > 10000 {
			t.Fatal("the feed does not end")
		}
		var resp struct {
			Events []*feedEvent
			Next   string
		}
		c.get(t, "/v1/events?limit=1000&after="+url.QueryEscape(after), &resp)
		if len(resp.Events) == 0 {
			if resp.Next != after && after != "" {
				t.Errorf("an empty page moved the cursor from %q to %q", after, resp.Next)
			}
			return f
		}
		if resp.Next == after {
			t.Fatalf("the cursor %q did not move", after)
		}
		for _, e := range resp.Events {
			if ids[e.ID] {
				t.Errorf("event %s appears twice in the feed", e.ID)
			}
			ids[e.ID] = true
			if err := json.Unmarshal(e.Data, &e.data); err != nil {
				t.Fatalf("event %s: data %s: %v", e.ID, e.Data, err)
			}
			if e.data.Tag == "" {
				t.Errorf("event %s has no tag: %s", e.ID, e.Data)
			} else if prev, ok := f.byTag[e.data.Tag]; ok {
				t.Errorf("event %s is stored twice: %s (seq %d) and %s (seq %d)", e.data.Tag, prev.ID, prev.Seq, e.ID, e.Seq)
			} else {
				f.byTag[e.data.Tag] = e
			}
			f.events = append(f.events, e)
		}
		after = resp.Next
	}
}

// verifyLog reads the whole feed and checks it against what was sent and
// acknowledged, then checks every user's state against its log.
func verifyLog(t *testing.T, c *apiClient, reqs []*request) *feedView {
	t.Helper()
	feed := readFeed(t, c)
	errs := 0
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf(format, args...)
		if errs++; errs >= 20 {
			t.FailNow()
		}
	}
	sent := map[string]bool{}
	allAcked := true
	total := 0
	for _, r := range reqs {
		total += len(r.events)
		present := 0
		for i, ev := range r.events {
			sent[ev.tag] = true
			fe, ok := feed.byTag[ev.tag]
			if ok {
				present++
				if fe.UserID != ev.user {
					fail("event %s: user %q, sent for %q", ev.tag, fe.UserID, ev.user)
				}
			}
			if !r.acked {
				continue
			}
			res := r.results[i]
			switch {
			case !ok:
				fail("event %s was acknowledged as %+v but is not in the feed", ev.tag, res)
			case fe.ID != res.ID || fe.Seq != res.Seq || fe.Stale != res.Stale:
				fail("event %s was acknowledged as %+v, the feed has id %s seq %d stale %v", ev.tag, res, fe.ID, fe.Seq, fe.Stale)
			}
		}
		if !r.acked {
			allAcked = false
			if present != 0 && present != len(r.events) {
				fail("a request in flight at the crash is partly stored: %d of its %d events (first %s)", present, len(r.events), r.events[0].tag)
			}
		}
	}
	for tag := range feed.byTag {
		if !sent[tag] {
			fail("the feed has event %s, which was never sent", tag)
		}
	}
	if allAcked && len(feed.events) != total {
		fail("the feed has %d events, %d were sent and acknowledged", len(feed.events), total)
	}
	checkStates(t, c, feed, fail)
	return feed
}

// devReplay is what replaying a device's events implies.
type devReplay struct {
	maxClientSeq int64
	since        time.Time
	last         *feedEvent // newest non-stale status event
}

type meetingView struct {
	Status     string     `json:"status"`
	ReasonCode int        `json:"reason_code"`
	MeetingNum string     `json:"meeting_num"`
	DeviceID   string     `json:"device_id"`
	Since      *time.Time `json:"since"`
}

type userView struct {
	UserID  string      `json:"user_id"`
	Meeting meetingView `json:"meeting"`
	LastSeq int64       `json:"last_seq"`
	Devices []struct {
		DeviceID      string      `json:"device_id"`
		LastClientSeq int64       `json:"last_client_seq"`
		Meeting       meetingView `json:"meeting"`
	} `json:"devices"`
}

func active(status string) bool {
	st, _ := meetsync.StatusByName(status)
	return st.Active()
}

// checkStates replays every user's events in feed order: seqs must run
// 1..n, stale flags must follow the rules (a lower client_seq than the
// device's highest so far, or a status older than the device's current
// one), and GET /v1/users/{id} must agree with the replay.
func checkStates(t *testing.T, c *apiClient, feed *feedView, fail func(string, ...any)) {
	t.Helper()
	perUser := map[string][]*feedEvent{}
	for _, e := range feed.events {
		perUser[e.UserID] = append(perUser[e.UserID], e)
	}
	for user, evs := range perUser {
		devs := map[string]*devReplay{}
		for k, e := range evs {
			if e.Seq != int64(k+1) {
				fail("user %s: event %d in feed order (%s) has seq %d", user, k+1, e.ID, e.Seq)
			}
			isStatus := e.Type == meetsync.TypeMeetingStatusChanged
			var d *devReplay
			if e.DeviceID != "" || isStatus {
				if d = devs[e.DeviceID]; d == nil {
					d = &devReplay{}
					devs[e.DeviceID] = d
				}
			}
			stale := false
			if e.ClientSeq != 0 {
				if e.ClientSeq < d.maxClientSeq {
					stale = true
				} else {
					d.maxClientSeq = e.ClientSeq
				}
			}
			if isStatus && !stale {
				eff := e.OccurredAt
				if eff.After(e.ReceivedAt) {
					eff = e.ReceivedAt
				}
				// The log keeps microseconds; on a tie the store may have
				// compared finer times, so its verdict stands.
				if eff.Before(d.since) || (eff.Equal(d.since) && e.Stale) {
					stale = true
				} else {
					d.since, d.last = eff, e
				}
			}
			if e.Stale != stale {
				fail("user %s seq %d (%s, device %q, client_seq %d): stale is %v, replaying the log says %v", user, e.Seq, e.Type, e.DeviceID, e.ClientSeq, e.Stale, stale)
			}
		}

		var u userView
		c.get(t, "/v1/users/"+url.PathEscape(user), &u)
		if u.LastSeq != int64(len(evs)) {
			fail("user %s: last_seq %d, the feed has %d events", user, u.LastSeq, len(evs))
		}
		if len(u.Devices) != len(devs) {
			fail("user %s: %d devices, the log has %d", user, len(u.Devices), len(devs))
		}
		anyStatus := false
		for _, ud := range u.Devices {
			d, ok := devs[ud.DeviceID]
			if !ok {
				fail("user %s: device %q is not in the log", user, ud.DeviceID)
				continue
			}
			if ud.LastClientSeq != d.maxClientSeq {
				fail("user %s device %q: last_client_seq %d, the log says %d", user, ud.DeviceID, ud.LastClientSeq, d.maxClientSeq)
			}
			if d.last == nil {
				if ud.Meeting.Status != "idle" {
					fail("user %s device %q: status %q without a status event", user, ud.DeviceID, ud.Meeting.Status)
				}
				continue
			}
			anyStatus = true
			if msg := sameStatus(ud.Meeting, d.last); msg != "" {
				fail("user %s device %q: %s", user, ud.DeviceID, msg)
			}
			if ud.Meeting.Since == nil || !ud.Meeting.Since.Equal(d.since) {
				fail("user %s device %q: since %v, the log says %v", user, ud.DeviceID, ud.Meeting.Since, d.since)
			}
		}
		if !anyStatus {
			if u.Meeting.Status != "idle" {
				fail("user %s: status %q without any status event", user, u.Meeting.Status)
			}
			continue
		}
		d, ok := devs[u.Meeting.DeviceID]
		if !ok || d.last == nil {
			fail("user %s: its status comes from device %q, which reported none", user, u.Meeting.DeviceID)
			continue
		}
		if msg := sameStatus(u.Meeting, d.last); msg != "" {
			fail("user %s (from device %q): %s", user, u.Meeting.DeviceID, msg)
		}
		if !active(u.Meeting.Status) {
			for id, d := range devs {
				if d.last != nil && active(d.last.data.Status) {
					fail("user %s: status %q although device %q is %q", user, u.Meeting.Status, id, d.last.data.Status)
				}
			}
		}
	}
	var list struct{ Users []userView }
	c.get(t, "/v1/users?limit=1000", &list)
	if len(perUser) < 1000 && len(list.Users) != len(perUser) {
		fail("GET /v1/users lists %d users, the feed has %d", len(list.Users), len(perUser))
	}
}

// sameStatus compares a state's meeting with the status event that set it.
func sameStatus(m meetingView, e *feedEvent) string {
	if m.Status != e.data.Status || m.ReasonCode != e.data.ReasonCode || m.MeetingNum != e.data.MeetingNum {
		return fmt.Sprintf("state %s/%d/%q, but its newest status event %s (seq %d) says %s/%d/%q",
			m.Status, m.ReasonCode, m.MeetingNum, e.ID, e.Seq, e.data.Status, e.data.ReasonCode, e.data.MeetingNum)
	}
	return ""
}
