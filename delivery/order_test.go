package delivery_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/delivery"
)

// TestPerUserOrder is the order property: many users' events, fanned out to
// several endpoints whose receivers fail at random (500s, requests hanging
// past the timeout, a whole-endpoint outage) and then recover. Every
// endpoint must see each user's webhooks in seq order, retries included,
// and after the recovery nothing may be missing: every subscribed event is
// received, except status changes an endpoint's debounce superseded.
//
// The failures are drawn from a seeded generator and tied to event ids,
// not to timing, so a seed replays the same failures
// (MEETSYNC_ORDER_SEED=… go test -run TestPerUserOrder ./delivery/).
func TestPerUserOrder(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("MEETSYNC_ORDER_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("MEETSYNC_ORDER_SEED=%q: %v", s, err)
		}
	}
	t.Logf("seed %d (replay with MEETSYNC_ORDER_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0x6d656574))
	// 50 users × 20 events; under the race detector, which slows the
	// embedded SQLite (pure Go) down about tenfold, 30 × 16.
	users, perUser := 50, 20
	if raceEnabled() {
		users, perUser = 30, 16
	}

	// Retries come fast, and there are enough of them that no delivery
	// runs out during the test's failures (about 25 s of retrying; the
	// outage lasts as long as the ingestion, a few seconds).
	schedule := meetsync.RetrySchedule{0, 10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond, 80 * time.Millisecond}
	for range 100 {
		schedule = append(schedule, 250*time.Millisecond)
	}
	e := setup(t, withConfig(func(c *delivery.Config) {
		c.Timeout, c.Lease, c.Schedule, c.Workers = 200*time.Millisecond, 2*time.Second, schedule, 64
	}))

	type endpointSpec struct {
		types    []string
		debounce int
		outage   bool // answers 503 to everything until the test ends the outage
	}
	specs := []endpointSpec{
		{types: []string{"meeting.*"}},
		{outage: true},
		{types: []string{"meeting.status_changed", "order.*"}, debounce: 25},
	}

	// The events, with ids chosen here so that the failure plan is a
	// function of the seed alone.
	type plannedEvent struct {
		id, user, typ string
		data          map[string]any
	}
	statuses := []string{"connecting", "waiting", "in_meeting", "in_meeting_minimized", "in_screen_sharing", "disconnecting", "idle"}
	events := make([][]plannedEvent, users)
	for u := range users {
		user := fmt.Sprintf("user-%02d", u)
		for k := range perUser {
			ev := plannedEvent{id: fmt.Sprintf("o-%02d-%02d", u, k), user: user}
			switch x := rng.IntN(100); {
			case x < 50:
				ev.typ, ev.data = meetsync.TypeMeetingStatusChanged, map[string]any{"status": statuses[rng.IntN(len(statuses))]}
			case x < 65:
				ev.typ, ev.data = meetsync.TypeMeetingStarted, map[string]any{"meeting_num": strconv.Itoa(rng.IntN(1e6))}
			case x < 85:
				ev.typ, ev.data = meetsync.TypeMeetingMemberJoined, map[string]any{"meeting_num": "42", "member": user}
			default:
				ev.typ, ev.data = "order.paid", map[string]any{"order": ev.id, "amount": rng.IntN(1000)}
			}
			events[u] = append(events[u], ev)
		}
	}
	// The plan: per endpoint and event, the failures its first attempts
	// get (after any outage) before the receiver accepts it.
	plans := make([]map[string][]reply, len(specs))
	injected := 0
	for i := range specs {
		plans[i] = map[string][]reply{}
		for _, evs := range events {
			for _, ev := range evs {
				n := 0
				switch x := rng.IntN(100); {
				case x < 60:
				case x < 80:
					n = 1
				case x < 92:
					n = 2
				default:
					n = 3
				}
				for range n {
					if rng.IntN(100) < 20 {
						plans[i][ev.id] = append(plans[i][ev.id], reply{Hang: true})
					} else {
						plans[i][ev.id] = append(plans[i][ev.id], reply{Status: http.StatusInternalServerError, Body: "planned failure"})
					}
					injected++
				}
			}
		}
	}

	type state struct {
		mu      sync.Mutex
		outage  bool
		refused int
		after   map[string]int // receipts per webhook-id after the outage
	}
	states := make([]*state, len(specs))
	recv := make([]*receiver, len(specs))
	eps := make([]endpointJSON, len(specs))
	for i, spec := range specs {
		st := &state{outage: spec.outage, after: map[string]int{}}
		plan := plans[i]
		states[i] = st
		recv[i] = newReceiver(t)
		fields := map[string]any{"debounce_ms": spec.debounce}
		if spec.types != nil {
			fields["event_types"] = spec.types
		}
		eps[i] = e.createEndpoint(t, recv[i].URL, fields)
		recv[i].verifyWith(nil, eps[i].Secret)
		recv[i].setRespond(func(r *webhookReq) reply {
			st.mu.Lock()
			defer st.mu.Unlock()
			if st.outage {
				st.refused++
				return reply{Status: http.StatusServiceUnavailable, Body: "down for maintenance"}
			}
			st.after[r.ID]++
			if k := st.after[r.ID]; k <= len(plan[r.ID]) {
				return plan[r.ID][k-1]
			}
			return reply{Status: http.StatusNoContent}
		})
	}

	start := time.Now()
	// Ingest round by round, users shuffled in each round, while the
	// dispatcher is already at work.
	seqOf := map[string]int64{}
	var ingested []plannedEvent
	for k := range perUser {
		order := rng.Perm(users)
		batch := make([]map[string]any, 0, users)
		var evs []plannedEvent
		for _, u := range order {
			ev := events[u][k]
			evs = append(evs, ev)
			batch = append(batch, withID(ev.id, event(ev.user, ev.typ, ev.data)))
		}
		for i, r := range e.ingest(t, batch...) {
			if r.ID != evs[i].id || r.Seq != int64(k+1) {
				t.Fatalf("ingest of %s: got id %s seq %d, want seq %d", evs[i].id, r.ID, r.Seq, k+1)
			}
			seqOf[r.ID] = r.Seq
		}
		ingested = append(ingested, evs...)
	}
	t.Logf("ingested after %s", time.Since(start))
	// The outage ends once the receiver has turned away a good number of
	// requests.
	for i, st := range states {
		if !specs[i].outage {
			continue
		}
		eventually(t, wait, func() bool {
			st.mu.Lock()
			defer st.mu.Unlock()
			return st.refused >= 2*users
		}, "the outage to refuse %d requests", 2*users)
		st.mu.Lock()
		st.outage = false
		st.mu.Unlock()
	}
	t.Logf("outage over after %s", time.Since(start))
	for i := range specs {
		eventually(t, 90*time.Second, func() bool { return e.settled(t, eps[i].ID) }, "endpoint %d to settle (seed %d)", i, seed)
	}

	t.Logf("settled after %s", time.Since(start))
	feed := e.feed(t, "")
	if len(feed) != users*perUser {
		t.Fatalf("feed has %d events, want %d (a system event means a delivery was exhausted or an endpoint disabled)", len(feed), users*perUser)
	}
	dataOfEvent := map[string][]byte{}
	for _, ev := range feed {
		dataOfEvent[ev.ID] = ev.Data
	}
	byID := map[string]plannedEvent{}
	for _, ev := range ingested {
		byID[ev.id] = ev
	}

	totalFirsts, totalReceipts := 0, 0
	for i, spec := range specs {
		filter, err := meetsync.ParseTypeFilter(spec.types, "event_types")
		if err != nil {
			t.Fatal(err)
		}
		// The outbox: one delivery per subscribed event, no other.
		want := map[string]bool{}
		for _, ev := range ingested {
			if filter.Match(ev.typ) {
				want[ev.id] = true
			}
		}
		ds := e.deliveries(t, eps[i].ID, "")
		deliveries := map[string]deliveryJSON{}
		for _, d := range ds {
			deliveries[d.ID] = d
		}
		delivered := map[string]bool{}
		superseded := 0
		for _, d := range ds {
			if !want[d.EventID] {
				t.Errorf("endpoint %d: delivery of %s (%s), which it does not subscribe to", i, d.EventID, d.EventType)
			}
			switch d.Status {
			case "delivered":
				delivered[d.EventID] = true
			case "superseded":
				superseded++
				next, ok := deliveries[d.SupersededBy]
				if spec.debounce == 0 || d.EventType != meetsync.TypeMeetingStatusChanged || !ok || next.UserID != d.UserID || next.Seq <= d.Seq {
					t.Errorf("endpoint %d (debounce %d): %s superseded by %+v", i, spec.debounce, d.EventID, next)
				}
			default:
				t.Errorf("endpoint %d: delivery of %s is %s after the recovery (seed %d)", i, d.EventID, d.Status, seed)
			}
		}
		if len(ds) != len(want) {
			t.Errorf("endpoint %d has %d deliveries, want one per subscribed event (%d)", i, len(ds), len(want))
		}

		// The receiver: everything delivered arrived, per user in seq
		// order counting every receipt (retries included), and a repeat
		// is the same webhook (same id, same body).
		rc := recv[i]
		firstBody := map[string][]byte{}
		lastSeq := map[string]int64{}
		for _, r := range rc.requests() {
			totalReceipts++
			ev, ok := byID[r.ID]
			if !ok {
				t.Errorf("endpoint %d got unknown webhook-id %q", i, r.ID)
				continue
			}
			p := r.Payload
			if p.UserID != ev.user || p.Type != ev.typ || p.Seq != seqOf[r.ID] || !bytes.Equal(p.Data, dataOfEvent[r.ID]) {
				t.Errorf("endpoint %d: webhook %s = %s, want user %s type %s seq %d data %s", i, r.ID, r.Body, ev.user, ev.typ, seqOf[r.ID], dataOfEvent[r.ID])
			}
			if p.Seq < lastSeq[p.UserID] {
				t.Errorf("endpoint %d: %s got seq %d after seq %d (seed %d)", i, p.UserID, p.Seq, lastSeq[p.UserID], seed)
			}
			lastSeq[p.UserID] = p.Seq
			if b, seen := firstBody[r.ID]; !seen {
				firstBody[r.ID] = r.Body
				totalFirsts++
			} else if !bytes.Equal(b, r.Body) {
				t.Errorf("endpoint %d: webhook %s sent again with another body:\n%s\n%s", i, r.ID, b, r.Body)
			}
		}
		for id := range delivered {
			if _, ok := firstBody[id]; !ok {
				t.Errorf("endpoint %d: %s is delivered but never arrived", i, id)
			}
			states[i].mu.Lock()
			n := states[i].after[id]
			states[i].mu.Unlock()
			if n < len(plans[i][id])+1 {
				t.Errorf("endpoint %d: %s accepted after %d receipts, but its plan fails the first %d", i, id, n, len(plans[i][id]))
			}
		}
		for id := range firstBody {
			if !delivered[id] {
				t.Errorf("endpoint %d: %s arrived but its delivery is not delivered", i, id)
			}
		}
		t.Logf("endpoint %d %v debounce %d: %d deliveries, %d delivered, %d superseded, %d requests",
			i, spec.types, spec.debounce, len(ds), len(delivered), superseded, rc.count())
		if spec.debounce == 0 && superseded != 0 {
			t.Errorf("endpoint %d without debounce has %d superseded deliveries", i, superseded)
		}
	}
	t.Logf("%d failures planned; %d first receipts, %d receipts in all", injected, totalFirsts, totalReceipts)
	if totalReceipts <= totalFirsts {
		t.Errorf("no retries happened: the test exercised nothing")
	}
}

// raceEnabled reports whether the test binary was built with -race.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}
