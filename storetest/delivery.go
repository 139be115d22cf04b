package storetest

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
)

const lease = time.Minute

// endpoint creates an endpoint of the env's app.
func (e *env) endpoint(types []string, debounce time.Duration) *meetsync.Endpoint {
	e.t.Helper()
	return e.endpointOf(e.app, types, debounce)
}

func (e *env) endpointOf(app string, types []string, debounce time.Duration) *meetsync.Endpoint {
	e.t.Helper()
	f, err := meetsync.ParseTypeFilter(types, "event_types")
	if err != nil {
		e.t.Fatal(err)
	}
	ep := &meetsync.Endpoint{ID: meetsync.NewID("ep"), AppID: app, URL: "https://hooks.example.com/" + fmt.Sprint(e.ids.Add(1)), EventTypes: f,
		Debounce: debounce, Secrets: []meetsync.EndpointSecret{{Secret: meetsync.NewEndpointSecret(), CreatedAt: e.now}},
		CreatedAt: e.now, UpdatedAt: e.now}
	if err := e.s.EndpointCreate(e.ctx, ep); err != nil {
		e.t.Fatalf("EndpointCreate: %v", err)
	}
	return ep
}

func (e *env) setDisabled(ep *meetsync.Endpoint, disabled bool) {
	e.t.Helper()
	c := *e.getEndpoint(ep.ID)
	c.Disabled, c.UpdatedAt = disabled, e.now
	if disabled {
		at := e.now
		c.DisabledReason, c.DisabledAt = "by the test", &at
	} else {
		c.DisabledReason, c.DisabledAt = "", nil
	}
	if err := e.s.EndpointUpdate(e.ctx, &c); err != nil {
		e.t.Fatalf("EndpointUpdate: %v", err)
	}
}

func (e *env) getEndpoint(id string) *meetsync.Endpoint {
	e.t.Helper()
	ep, err := e.s.EndpointGet(e.ctx, e.app, id)
	if err != nil {
		e.t.Fatalf("EndpointGet: %v", err)
	}
	return ep
}

func (e *env) claimAs(owner string, now time.Time, limit int) []*meetsync.DeliveryTask {
	e.t.Helper()
	tasks, err := e.s.DeliveriesClaim(e.ctx, meetsync.DeliveryClaimParams{Owner: owner, Now: now, Lease: lease, Limit: limit})
	if err != nil {
		e.t.Fatalf("DeliveriesClaim: %v", err)
	}
	return tasks
}

func (e *env) claim(now time.Time) []*meetsync.DeliveryTask {
	e.t.Helper()
	return e.claimAs("w1", now, 100)
}

func (e *env) complete(now time.Time, claimNext bool, outs ...*meetsync.DeliveryOutcome) []*meetsync.DeliveryTask {
	e.t.Helper()
	tasks, err := e.s.DeliveriesComplete(e.ctx, meetsync.DeliveryCompleteParams{Owner: "w1", Now: now, Lease: lease, Outcomes: outs, ClaimNext: claimNext})
	if err != nil {
		e.t.Fatalf("DeliveriesComplete: %v", err)
	}
	return tasks
}

func delivered(t *meetsync.DeliveryTask, at time.Time) *meetsync.DeliveryOutcome {
	return &meetsync.DeliveryOutcome{Task: t, Status: meetsync.DeliveryDelivered,
		Attempt: meetsync.Attempt{At: at, StatusCode: 204, Latency: 1500 * time.Microsecond, ResponseBody: "ok"}}
}

func failed(t *meetsync.DeliveryTask, at, next time.Time) *meetsync.DeliveryOutcome {
	return &meetsync.DeliveryOutcome{Task: t, Status: meetsync.DeliveryFailed, NextAttemptAt: next,
		Attempt: meetsync.Attempt{At: at, StatusCode: 500, Latency: time.Millisecond, Error: "HTTP 500", ResponseBody: "no"}}
}

func dead(t *meetsync.DeliveryTask, at time.Time) *meetsync.DeliveryOutcome {
	return &meetsync.DeliveryOutcome{Task: t, Status: meetsync.DeliveryDead,
		Attempt: meetsync.Attempt{At: at, Error: "connection refused"}}
}

// systemEvent is an event meetsync itself appends (delivery.exhausted, endpoint.disabled).
func (e *env) systemEvent(typ, user string, data map[string]any) *meetsync.Event {
	b, _ := json.Marshal(data)
	return &meetsync.Event{ID: meetsync.NewID("evt"), Type: typ, AppID: e.app, UserID: user, OccurredAt: e.now, ReceivedAt: e.now,
		Source: meetsync.SourceSystem, Data: b}
}

// deliveries lists an endpoint's deliveries with a status ("" for all), newest first.
func (e *env) deliveries(ep *meetsync.Endpoint, status string) []*meetsync.Delivery {
	e.t.Helper()
	var out []*meetsync.Delivery
	before := ""
	for {
		page, err := e.s.DeliveryList(e.ctx, meetsync.DeliveryListParams{AppID: ep.AppID, EndpointID: ep.ID, Status: status, Before: before, Limit: 3})
		if err != nil {
			e.t.Fatalf("DeliveryList: %v", err)
		}
		out = append(out, page...)
		if len(page) < 3 {
			return out
		}
		before = page[len(page)-1].ID
	}
}

// deliveryOf returns the endpoint's delivery of an event.
func (e *env) deliveryOf(ep *meetsync.Endpoint, eventID string) *meetsync.Delivery {
	e.t.Helper()
	for _, d := range e.deliveries(ep, "") {
		if d.EventID == eventID {
			return d
		}
	}
	e.t.Fatalf("endpoint %s has no delivery of event %s", ep.ID, eventID)
	return nil
}

func (e *env) delivery(id string) (*meetsync.Delivery, []*meetsync.Attempt) {
	e.t.Helper()
	d, as, err := e.s.DeliveryGet(e.ctx, e.app, id)
	if err != nil {
		e.t.Fatalf("DeliveryGet(%s): %v", id, err)
	}
	return d, as
}

// taskKeys describes tasks as "endpoint-index/user/seq", sorted.
func taskKeys(eps []*meetsync.Endpoint, tasks []*meetsync.DeliveryTask) []string {
	var out []string
	for _, t := range tasks {
		i := slices.IndexFunc(eps, func(ep *meetsync.Endpoint) bool { return ep.ID == t.Delivery.EndpointID })
		out = append(out, fmt.Sprintf("%d/%s/%d", i, t.Delivery.UserID, t.Delivery.Seq))
	}
	sort.Strings(out)
	return out
}

func testEndpoints(t *testing.T, su *suite) {
	e := su.setup(t)
	other := e.newApp("other")
	a := e.endpoint([]string{"meeting.*", "app.note"}, 250*time.Millisecond)
	e.tick(time.Millisecond) // listed oldest first
	b := e.endpoint(nil, 0)
	got := e.getEndpoint(a.ID)
	if got.ID != a.ID || got.AppID != e.app || got.URL != a.URL || !slices.Equal(got.EventTypes, a.EventTypes) || got.Debounce != a.Debounce ||
		got.RateLimit != 0 || got.Disabled || got.DisabledAt != nil || got.FailingSince != nil || len(got.Secrets) != 1 ||
		got.Secrets[0].Secret != a.Secrets[0].Secret || !got.Secrets[0].CreatedAt.Equal(a.Secrets[0].CreatedAt) || got.Secrets[0].ExpiresAt != nil ||
		!got.CreatedAt.Equal(a.CreatedAt) || !got.UpdatedAt.Equal(a.UpdatedAt) {
		t.Errorf("EndpointGet = %+v, created %+v", got, a)
	}
	if len(e.getEndpoint(b.ID).EventTypes) != 0 {
		t.Errorf("an endpoint for every type read back with types %v", e.getEndpoint(b.ID).EventTypes)
	}
	list, err := e.s.EndpointList(e.ctx, e.app)
	if err != nil || len(list) != 2 || list[0].ID != a.ID || list[1].ID != b.ID {
		t.Errorf("EndpointList = %v, %v; want a, b", list, err)
	}
	if l, err := e.s.EndpointList(e.ctx, other); err != nil || len(l) != 0 {
		t.Errorf("EndpointList(other app) = %v, %v", l, err)
	}

	up := *got
	exp, at, fs := e.tick(time.Hour), e.tick(time.Second), t0.Add(-time.Hour)
	up.URL, up.Description, up.EventTypes, up.Debounce, up.RateLimit = "https://elsewhere.example.com/x?y=1", "déscription ✓", meetsync.TypeFilter{"app.*"}, 0, 7
	up.Secrets = []meetsync.EndpointSecret{{Secret: meetsync.NewEndpointSecret(), CreatedAt: at}, {Secret: a.Secrets[0].Secret, CreatedAt: a.Secrets[0].CreatedAt, ExpiresAt: &exp}}
	up.Disabled, up.DisabledReason, up.DisabledAt, up.FailingSince, up.UpdatedAt = true, "why not", &at, &fs, at
	up.CreatedAt = t0.Add(time.Hour) // not mutable
	if err := e.s.EndpointUpdate(e.ctx, &up); err != nil {
		t.Fatal(err)
	}
	got = e.getEndpoint(a.ID)
	if got.URL != up.URL || got.Description != up.Description || !slices.Equal(got.EventTypes, up.EventTypes) || got.Debounce != 0 ||
		got.RateLimit != 7 || !got.Disabled || got.DisabledReason != "why not" || got.DisabledAt == nil || !got.DisabledAt.Equal(at) ||
		got.FailingSince == nil || !got.FailingSince.Equal(fs) || !got.UpdatedAt.Equal(at) || !got.CreatedAt.Equal(a.CreatedAt) ||
		len(got.Secrets) != 2 || got.Secrets[1].ExpiresAt == nil || !got.Secrets[1].ExpiresAt.Equal(exp) || got.Secrets[0].Secret != up.Secrets[0].Secret {
		t.Errorf("after EndpointUpdate: %+v, want %+v", got, up)
	}

	_, err = e.s.EndpointGet(e.ctx, other, a.ID)
	wantCode(t, "EndpointGet(another app)", err, meetsync.ENOTFOUND)
	_, err = e.s.EndpointGet(e.ctx, e.app, "ep_missing")
	wantCode(t, "EndpointGet(unknown)", err, meetsync.ENOTFOUND)
	wrong := up
	wrong.AppID = other
	wantCode(t, "EndpointUpdate(another app)", e.s.EndpointUpdate(e.ctx, &wrong), meetsync.ENOTFOUND)
	wrong = up
	wrong.ID = "ep_missing"
	wantCode(t, "EndpointUpdate(unknown)", e.s.EndpointUpdate(e.ctx, &wrong), meetsync.ENOTFOUND)
	orphan := *b
	orphan.ID, orphan.AppID = meetsync.NewID("ep"), "app_missing"
	wantCode(t, "EndpointCreate(unknown app)", e.s.EndpointCreate(e.ctx, &orphan), meetsync.ENOTFOUND)
	wantCode(t, "EndpointDelete(another app)", e.s.EndpointDelete(e.ctx, other, b.ID), meetsync.ENOTFOUND)
	if err := e.s.EndpointDelete(e.ctx, e.app, b.ID); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "EndpointDelete(deleted)", e.s.EndpointDelete(e.ctx, e.app, b.ID), meetsync.ENOTFOUND)
	_, err = e.s.EndpointGet(e.ctx, e.app, b.ID)
	wantCode(t, "EndpointGet(deleted)", err, meetsync.ENOTFOUND)
}

func testOutbox(t *testing.T, su *suite) {
	e := su.setup(t)
	all := e.endpoint(nil, 0)
	meet := e.endpoint([]string{"meeting.*"}, 0)
	notes := e.endpoint([]string{"app.note"}, 0)
	off := e.endpoint(nil, 0)
	e.setDisabled(off, true)
	eps := []*meetsync.Endpoint{all, meet, notes, off}
	if due, ok, err := e.s.DeliveryNextDue(e.ctx); err != nil || ok {
		t.Errorf("DeliveryNextDue with nothing queued = %v, %v, %v", due, ok, err)
	}

	r1 := req(e.status("u1", "d", 1, "in_meeting"), e.event(in{user: "u1", typ: "app.note"}))
	r2 := req(e.event(in{user: "u2", typ: "app.other"}))
	e.append(r1, r2)
	if r1.Deliveries != 4 || r2.Deliveries != 1 {
		t.Errorf("requests made %d and %d deliveries, want 4 and 1", r1.Deliveries, r2.Deliveries)
	}
	counts := map[*meetsync.Endpoint]int{all: 3, meet: 1, notes: 1, off: 0}
	results := append(append([]meetsync.EventResult{}, r1.Results...), r2.Results...)
	events := append(append([]*meetsync.Event{}, r1.Events...), r2.Events...)
	for ep, n := range counts {
		ds := e.deliveries(ep, "")
		if len(ds) != n {
			t.Errorf("endpoint %v got %d deliveries, want %d", ep.EventTypes, len(ds), n)
		}
		for _, d := range ds {
			i := slices.IndexFunc(results, func(r meetsync.EventResult) bool { return r.ID == d.EventID })
			if i < 0 {
				t.Fatalf("delivery %+v of an unknown event", d)
			}
			ev := events[i]
			if d.AppID != e.app || d.EventType != ev.Type || d.UserID != ev.UserID || d.Seq != results[i].Seq || d.EventPos != results[i].Pos ||
				d.Status != meetsync.DeliveryPending || d.Attempts != 0 || d.NextAttemptAt == nil || !d.NextAttemptAt.Equal(t0) ||
				!d.CreatedAt.Equal(t0) || d.DeliveredAt != nil || !strings.HasPrefix(d.ID, "del_") {
				t.Errorf("delivery %+v of event %+v", d, ev)
			}
		}
	}
	depths, err := e.s.DeliveryQueueDepths(e.ctx)
	if err != nil || depths[all.ID] != 3 || depths[meet.ID] != 1 || depths[notes.ID] != 1 || depths[off.ID] != 0 {
		t.Errorf("DeliveryQueueDepths = %v, %v", depths, err)
	}
	if due, ok, err := e.s.DeliveryNextDue(e.ctx); err != nil || !ok || !due.Equal(t0) {
		t.Errorf("DeliveryNextDue = %v, %v, %v; want %v", due, ok, err, t0)
	}

	// Only queue heads are claimed: one per (endpoint, user), the lowest seq.
	now := e.tick(time.Second)
	tasks := e.claim(now)
	if got, want := taskKeys(eps, tasks), []string{"0/u1/1", "0/u2/1", "1/u1/1", "2/u1/2"}; !slices.Equal(got, want) {
		t.Fatalf("claimed %v, want the heads %v", got, want)
	}
	for _, tk := range tasks {
		i := slices.IndexFunc(events, func(ev *meetsync.Event) bool { return ev.ID == tk.Delivery.EventID })
		ev, ep := events[i], eps[slices.IndexFunc(eps, func(ep *meetsync.Endpoint) bool { return ep.ID == tk.Delivery.EndpointID })]
		if tk.Event.ID != ev.ID || tk.Event.Type != ev.Type || tk.Event.UserID != ev.UserID || tk.Event.Seq != results[i].Seq ||
			tk.Event.Pos != results[i].Pos || string(tk.Event.Data) != string(ev.Data) || !tk.Event.ReceivedAt.Equal(t0) {
			t.Errorf("task event %+v, appended %+v", tk.Event, ev)
		}
		if tk.Endpoint == nil || tk.Endpoint.ID != ep.ID || tk.Endpoint.URL != ep.URL || len(tk.Endpoint.Secrets) != 1 ||
			tk.Endpoint.Secrets[0].Secret != ep.Secrets[0].Secret {
			t.Errorf("task endpoint %+v, want %+v", tk.Endpoint, ep)
		}
		if !tk.ClaimedUntil.Equal(now.Add(lease)) || tk.ClaimID == 0 {
			t.Errorf("task claimed until %v with claim id %d, want %v and an id", tk.ClaimedUntil, tk.ClaimID, now.Add(lease))
		}
	}
	if again := e.claim(now); len(again) != 0 {
		t.Errorf("claimed heads were claimed again: %v", taskKeys(eps, again))
	}
	if due, ok, err := e.s.DeliveryNextDue(e.ctx); err != nil || !ok || !due.Equal(now.Add(lease)) {
		t.Errorf("DeliveryNextDue with every head claimed = %v, %v, %v; want the end of the leases %v", due, ok, err, now.Add(lease))
	}

	// A repeat (duplicate) makes no delivery.
	dup := req(e.status("u1", "d", 1, "in_meeting"))
	e.append(dup)
	if !dup.Results[0].Duplicate || dup.Deliveries != 0 {
		t.Errorf("repeat: %+v and %d deliveries, want a duplicate and none", dup.Results[0], dup.Deliveries)
	}
}

func testCoalescing(t *testing.T, su *suite) {
	e := su.setup(t)
	deb := 300 * time.Millisecond
	meet := e.endpoint([]string{"meeting.*"}, deb)
	plain := e.endpoint([]string{"meeting.*"}, 0)
	all := e.endpoint(nil, deb)
	eps := []*meetsync.Endpoint{meet, plain, all}
	start := e.now
	s1, s2, note, s3 := e.status("u", "d", 1, "connecting"), e.status("u", "d", 2, "in_meeting"), e.event(in{user: "u", typ: "app.note"}), e.status("u", "d", 3, "idle")
	e.appendOne(s1, s2, note, s3)
	id := func(ep *meetsync.Endpoint, ev *meetsync.Event) string { return e.deliveryOf(ep, ev.ID).ID }
	check := func(ep *meetsync.Endpoint, ev *meetsync.Event, status, by string, next time.Time) {
		t.Helper()
		d := e.deliveryOf(ep, ev.ID)
		if d.Status != status || d.SupersededBy != by {
			t.Errorf("endpoint %d, seq %d: %s superseded by %q; want %s by %q", slices.Index(eps, ep), d.Seq, d.Status, d.SupersededBy, status, by)
		}
		if !next.IsZero() && (d.NextAttemptAt == nil || !d.NextAttemptAt.Equal(next)) {
			t.Errorf("endpoint %d, seq %d: due at %v, want %v", slices.Index(eps, ep), d.Seq, d.NextAttemptAt, next)
		}
	}
	// Each newer status supersedes the older pending ones; the newest waits
	// the debounce window from the first one's arrival.
	check(meet, s1, meetsync.DeliverySuperseded, id(meet, s2), time.Time{})
	check(meet, s2, meetsync.DeliverySuperseded, id(meet, s3), time.Time{})
	check(meet, s3, meetsync.DeliveryPending, "", start.Add(deb))
	// Without a debounce window, nothing coalesces.
	for _, ev := range []*meetsync.Event{s1, s2, s3} {
		check(plain, ev, meetsync.DeliveryPending, "", start)
	}
	// Other events are never superseded; the queue's head is its lowest
	// active delivery.
	check(all, s2, meetsync.DeliverySuperseded, id(all, s3), time.Time{})
	check(all, note, meetsync.DeliveryPending, "", start)
	check(all, s3, meetsync.DeliveryPending, "", start.Add(deb))
	if got := taskKeys(eps, e.claim(start)); !slices.Equal(got, []string{"1/u/1", "2/u/3"}) {
		t.Errorf("claimed %v before the debounce window ends, want plain's first and all's note", got)
	}
	if got := taskKeys(eps, e.claim(start.Add(deb))); !slices.Equal(got, []string{"0/u/4"}) {
		t.Errorf("claimed %v after the window, want meet's newest status", got)
	}

	// A stale status neither supersedes nor waits.
	e.tick(time.Second)
	fresh := e.status("w", "d", 2, "in_meeting")
	stale := e.status("w", "d", 1, "idle")
	rs := e.appendOne(fresh, stale)
	if !rs[1].Stale {
		t.Fatalf("want the second status stale: %s", fmtResults(rs))
	}
	check(meet, fresh, meetsync.DeliveryPending, "", e.now.Add(deb))
	check(meet, stale, meetsync.DeliveryPending, "", e.now)
}

func testCoalescingAcrossTransactions(t *testing.T, su *suite) {
	e := su.setup(t)
	deb := time.Second
	ep := e.endpoint(nil, deb)
	start := e.now
	s1 := e.status("u", "d", 1, "connecting")
	e.appendOne(s1)
	e.tick(100 * time.Millisecond)
	s2 := e.status("u", "d", 2, "in_meeting")
	e.appendOne(s2)
	d1, d2 := e.deliveryOf(ep, s1.ID), e.deliveryOf(ep, s2.ID)
	if d1.Status != meetsync.DeliverySuperseded || d1.SupersededBy != d2.ID || d2.NextAttemptAt == nil || !d2.NextAttemptAt.Equal(start.Add(deb)) {
		t.Fatalf("a stored pending status superseded by a newer one: %+v / %+v", d1, d2)
	}
	// A claimed head is not superseded; the newer status waits its turn.
	tasks := e.claim(start.Add(deb))
	if len(tasks) != 1 || tasks[0].Delivery.ID != d2.ID {
		t.Fatalf("claimed %v, want %s", tasks, d2.ID)
	}
	e.tick(time.Second)
	s3 := e.status("u", "d", 3, "idle")
	n := e.event(in{user: "u", typ: "app.note"})
	e.appendOne(s3, n)
	if d := e.deliveryOf(ep, s2.ID); d.Status != meetsync.DeliveryPending {
		t.Errorf("a claimed status was superseded: %+v", d)
	}
	// An attempted one neither.
	e.complete(e.now, false, failed(tasks[0], e.now, e.now.Add(time.Hour)))
	e.tick(time.Millisecond)
	s4 := e.status("u", "d", 4, "in_meeting")
	e.appendOne(s4)
	d3, d4 := e.deliveryOf(ep, s3.ID), e.deliveryOf(ep, s4.ID)
	if d := e.deliveryOf(ep, s2.ID); d.Status != meetsync.DeliveryFailed {
		t.Errorf("an attempted status was superseded: %+v", d)
	}
	if d3.Status != meetsync.DeliverySuperseded || d3.SupersededBy != d4.ID || d4.Status != meetsync.DeliveryPending ||
		!d4.NextAttemptAt.Equal(s3.ReceivedAt.Add(deb)) {
		t.Errorf("the pending status behind the head: %+v superseded by %+v", d3, d4)
	}
	if d := e.deliveryOf(ep, n.ID); d.Status != meetsync.DeliveryPending {
		t.Errorf("a note was superseded: %+v", d)
	}
	// The failed head still holds the queue.
	if got := e.claim(e.now.Add(30 * time.Minute)); len(got) != 0 {
		t.Errorf("claimed %d behind the failed head", len(got))
	}
	if got := e.claim(e.now.Add(2 * time.Hour)); len(got) != 1 || got[0].Delivery.ID != d2.ID {
		t.Errorf("after its retry time the failed head is claimed again: %v", got)
	}
}

func testClaims(t *testing.T, su *suite) {
	e := su.setup(t)
	ep := e.endpoint(nil, 0)
	off := e.endpoint(nil, 0)
	eps := []*meetsync.Endpoint{ep, off}
	for _, u := range []string{"u1", "u2", "u3"} {
		e.appendOne(e.note(u), e.note(u))
	}
	e.setDisabled(off, true)
	later := e.event(in{user: "u4", received: t0.Add(10 * time.Second)})
	earlier := e.event(in{user: "u5", received: t0.Add(5 * time.Second)})
	e.append(req(later), req(earlier))

	first := e.claimAs("a", t0, 2)
	second := e.claimAs("b", t0, 10)
	if len(first) != 2 || len(second) != 1 {
		t.Fatalf("claims with limits 2 and 10: %v then %v; want 2 then the last due head", taskKeys(eps, first), taskKeys(eps, second))
	}
	if got := taskKeys(eps, append(first, second...)); !slices.Equal(got, []string{"0/u1/1", "0/u2/1", "0/u3/1"}) {
		t.Errorf("claimed %v, want the due heads of the enabled endpoint", got)
	}
	// Earliest due first.
	if got := e.claimAs("c", t0.Add(20*time.Second), 1); len(got) != 1 || got[0].Delivery.UserID != "u5" {
		t.Errorf("limit 1: claimed %v, want the earliest due (u5)", taskKeys(eps, got))
	}
	// A claim lasts its lease, then the delivery is due again, with a new claim id.
	if got := e.claimAs("d", t0.Add(lease-time.Microsecond), 10); !slices.Equal(taskKeys(eps, got), []string{"0/u4/1"}) {
		t.Errorf("before the leases end: claimed %v, want only u4", taskKeys(eps, got))
	}
	again := e.claimAs("e", t0.Add(lease), 10)
	if got := taskKeys(eps, again); !slices.Equal(got, []string{"0/u1/1", "0/u2/1", "0/u3/1"}) {
		t.Fatalf("at the end of the leases: claimed %v", got)
	}
	old := map[string]int64{}
	for _, tk := range append(first, second...) {
		old[tk.Delivery.ID] = tk.ClaimID
	}
	for _, tk := range again {
		if tk.ClaimID == old[tk.Delivery.ID] || !tk.ClaimedUntil.Equal(t0.Add(2*lease)) {
			t.Errorf("re-claim of %s: claim id %d (was %d), until %v", tk.Delivery.ID, tk.ClaimID, old[tk.Delivery.ID], tk.ClaimedUntil)
		}
	}
	// The disabled endpoint's queues are parked.
	if got := e.claim(t0.Add(time.Hour * 24)); len(got) != 0 {
		for _, tk := range got {
			if tk.Endpoint.ID == off.ID {
				t.Errorf("claimed a delivery of a disabled endpoint: %+v", tk.Delivery)
			}
		}
	}
}

func testCompleteDelivered(t *testing.T, su *suite) {
	e := su.setup(t)
	ep := e.endpoint(nil, 0)
	eps := []*meetsync.Endpoint{ep}
	e.appendOne(e.note("u"), e.note("u"), e.note("u"), e.note("v"))
	tasks := e.claim(t0)
	if got := taskKeys(eps, tasks); !slices.Equal(got, []string{"0/u/1", "0/v/1"}) {
		t.Fatalf("claimed %v", got)
	}
	u1 := tasks[slices.IndexFunc(tasks, func(tk *meetsync.DeliveryTask) bool { return tk.Delivery.UserID == "u" })]
	now := e.tick(time.Second)
	next := e.complete(now, true, delivered(u1, now))
	if got := taskKeys(eps, next); !slices.Equal(got, []string{"0/u/2"}) {
		t.Fatalf("ClaimNext returned %v, want u's next delivery", got)
	}
	if next[0].ClaimID == 0 || !next[0].ClaimedUntil.Equal(now.Add(lease)) || next[0].Endpoint == nil || next[0].Event == nil || next[0].Event.Seq != 2 {
		t.Errorf("next task %+v", next[0])
	}
	d, as := e.delivery(u1.Delivery.ID)
	if d.Status != meetsync.DeliveryDelivered || d.Attempts != 1 || d.DeliveredAt == nil || !d.DeliveredAt.Equal(now) || d.NextAttemptAt != nil ||
		!d.UpdatedAt.Equal(now) || d.LastCode != 204 || d.LastError != "" {
		t.Errorf("delivered delivery %+v", d)
	}
	if len(as) != 1 || as[0].N != 1 || !as[0].At.Equal(now) || as[0].StatusCode != 204 || as[0].Latency != 1500*time.Microsecond ||
		as[0].LatencyMS != 1.5 || as[0].ResponseBody != "ok" || as[0].Error != "" || as[0].DeliveryID != u1.Delivery.ID {
		t.Errorf("attempts %+v", as)
	}
	// Without ClaimNext the next head is promoted, not claimed.
	now = e.tick(time.Second)
	if got := e.complete(now, false, delivered(next[0], now)); len(got) != 0 {
		t.Errorf("without ClaimNext: %v", taskKeys(eps, got))
	}
	third := e.claim(now)
	if got := taskKeys(eps, third); !slices.Equal(got, []string{"0/u/3"}) {
		t.Fatalf("after a completion without ClaimNext: claimed %v", got)
	}
	// A next delivery not yet due is promoted, not claimed.
	e.appendOne(e.event(in{user: "u", received: t0.Add(time.Hour)}))
	if got := e.complete(now, true, delivered(third[0], now)); len(got) != 0 {
		t.Errorf("ClaimNext with the next one not due: %v", taskKeys(eps, got))
	}
	if due, ok, err := e.s.DeliveryNextDue(e.ctx); err != nil || !ok || !due.Equal(t0.Add(lease)) {
		t.Errorf("DeliveryNextDue = %v %v %v; want v's lease end %v", due, ok, err, t0.Add(lease))
	}
	if got := taskKeys(eps, e.claim(t0.Add(time.Hour))); !slices.Equal(got, []string{"0/u/4", "0/v/1"}) {
		t.Errorf("at t0+1h: claimed %v", got)
	}
	depths, err := e.s.DeliveryQueueDepths(e.ctx)
	if err != nil || depths[ep.ID] != 2 {
		t.Errorf("DeliveryQueueDepths = %v, %v; want 2 active", depths, err)
	}
}

func testCompleteFailedAndDead(t *testing.T, su *suite) {
	e := su.setup(t)
	ep := e.endpoint(nil, 0)
	eps := []*meetsync.Endpoint{ep}
	e.appendOne(e.note("u"), e.note("u"))
	tasks := e.claim(t0)
	now := e.tick(time.Second)
	retry := now.Add(5 * time.Second)
	if got := e.complete(now, true, failed(tasks[0], now, retry)); len(got) != 0 {
		t.Errorf("a failure claimed %v", taskKeys(eps, got))
	}
	d, as := e.delivery(tasks[0].Delivery.ID)
	if d.Status != meetsync.DeliveryFailed || d.Attempts != 1 || d.NextAttemptAt == nil || !d.NextAttemptAt.Equal(retry) || d.LastCode != 500 ||
		d.LastError != "HTTP 500" || d.DeliveredAt != nil || len(as) != 1 || as[0].Error != "HTTP 500" || as[0].ResponseBody != "no" {
		t.Errorf("failed delivery %+v, attempts %+v", d, as)
	}
	// It stays its queue's head.
	if got := e.claim(retry.Add(-time.Microsecond)); len(got) != 0 {
		t.Errorf("claimed %v before the retry time", taskKeys(eps, got))
	}
	again := e.claim(retry)
	if len(again) != 1 || again[0].Delivery.ID != tasks[0].Delivery.ID || again[0].Delivery.Attempts != 1 {
		t.Fatalf("at the retry time: claimed %v, want the failed head again", taskKeys(eps, again))
	}
	// Dead: the next one is promoted; the outcome's events are appended
	// with their deliveries, in the same transaction.
	now = e.tick(10 * time.Second)
	ex := e.systemEvent(meetsync.TypeDeliveryExhausted, "u", map[string]any{"delivery_id": tasks[0].Delivery.ID})
	o := dead(again[0], now)
	o.Events = []*meetsync.Event{ex}
	next := e.complete(now, true, o)
	if got := taskKeys(eps, next); !slices.Equal(got, []string{"0/u/2"}) {
		t.Errorf("after a dead letter: claimed %v, want the next delivery", got)
	}
	d, as = e.delivery(tasks[0].Delivery.ID)
	if d.Status != meetsync.DeliveryDead || d.Attempts != 2 || d.NextAttemptAt != nil || d.LastError != "connection refused" || d.LastCode != 0 ||
		len(as) != 2 || as[1].N != 2 || as[1].Error != "connection refused" {
		t.Errorf("dead delivery %+v, attempts %+v", d, as)
	}
	feed := e.feed(e.app, 0, 10)
	if len(feed) != 3 || feed[2].ID != ex.ID || feed[2].Seq != 3 || feed[2].Source != meetsync.SourceSystem {
		t.Fatalf("the feed after a dead letter: %v", feed)
	}
	if u := e.user("u"); u.LastSeq != 3 {
		t.Errorf("user u's last seq %d, want 3", u.LastSeq)
	}
	if x := e.deliveryOf(ep, ex.ID); x.Seq != 3 || x.Status != meetsync.DeliveryPending {
		t.Errorf("the exhausted event's delivery %+v", x)
	}
}

func testFencing(t *testing.T, su *suite) {
	e := su.setup(t)
	ep := e.endpoint(nil, 0)
	eps := []*meetsync.Endpoint{ep}
	e.appendOne(e.note("u"), e.note("u"))
	a := e.claim(t0)
	b := e.claim(t0.Add(lease)) // a's lease ended: claimed again
	if len(a) != 1 || len(b) != 1 || a[0].Delivery.ID != b[0].Delivery.ID || a[0].ClaimID == b[0].ClaimID {
		t.Fatalf("claims %v and %v", a, b)
	}
	now := t0.Add(lease + time.Second)
	// The lost claim's outcome changes nothing and promotes nothing.
	if got := e.complete(now, true, delivered(a[0], now)); len(got) != 0 {
		t.Errorf("a lost claim's completion claimed %v", taskKeys(eps, got))
	}
	rel := &meetsync.DeliveryOutcome{Task: a[0], Release: true, NextAttemptAt: now}
	e.complete(now, true, rel)
	d, as := e.delivery(a[0].Delivery.ID)
	if d.Status != meetsync.DeliveryPending || d.Attempts != 0 || len(as) != 0 {
		t.Errorf("after a lost claim's outcomes: %+v, %d attempts", d, len(as))
	}
	if got := e.claim(now); len(got) != 0 {
		t.Errorf("after a lost claim's outcomes: claimed %v", taskKeys(eps, got))
	}
	next := e.complete(now, true, delivered(b[0], now))
	if got := taskKeys(eps, next); !slices.Equal(got, []string{"0/u/2"}) {
		t.Errorf("the live claim's completion: %v", got)
	}
	if d, as := e.delivery(b[0].Delivery.ID); d.Status != meetsync.DeliveryDelivered || d.Attempts != 1 || len(as) != 1 {
		t.Errorf("after the live claim's outcome: %+v, %d attempts", d, len(as))
	}
}

func testRelease(t *testing.T, su *suite) {
	e := su.setup(t)
	ep := e.endpoint(nil, 0)
	e.appendOne(e.note("u"), e.note("u"))
	tasks := e.claim(t0)
	at := t0.Add(30 * time.Second)
	if got := e.complete(t0, true, &meetsync.DeliveryOutcome{Task: tasks[0], Release: true, NextAttemptAt: at}); len(got) != 0 {
		t.Errorf("a release claimed %d", len(got))
	}
	d, as := e.delivery(tasks[0].Delivery.ID)
	if d.Status != meetsync.DeliveryPending || d.Attempts != 0 || len(as) != 0 || d.NextAttemptAt == nil || !d.NextAttemptAt.Equal(at) {
		t.Errorf("released delivery %+v, %d attempts", d, len(as))
	}
	if got := e.claim(at.Add(-time.Microsecond)); len(got) != 0 {
		t.Errorf("claimed before the release time: %d", len(got))
	}
	got := e.claim(at)
	if len(got) != 1 || got[0].Delivery.ID != tasks[0].Delivery.ID || got[0].ClaimID == tasks[0].ClaimID {
		t.Errorf("after the release time: %v", got)
	}
	_ = ep
}

func testDisableByOutcome(t *testing.T, su *suite) {
	e := su.setup(t)
	ep := e.endpoint(nil, 0)
	watcher := e.endpoint([]string{"endpoint.*"}, 0)
	eps := []*meetsync.Endpoint{ep, watcher}
	e.appendOne(e.note("u"), e.note("u"), e.note("v"), e.note("v"))
	tasks := e.claim(t0)
	if len(tasks) != 2 {
		t.Fatalf("claimed %v", taskKeys(eps, tasks))
	}
	now := e.tick(time.Second)
	retry := now.Add(5 * time.Second)
	o1 := failed(tasks[0], now, retry)
	o1.DisableEndpoint = "gone"
	o1.DisabledEvent = e.systemEvent(meetsync.TypeEndpointDisabled, meetsync.SystemUserID, map[string]any{"endpoint_id": ep.ID, "n": 1})
	o2 := dead(tasks[1], now)
	o2.DisableEndpoint = "gone again"
	o2.DisabledEvent = e.systemEvent(meetsync.TypeEndpointDisabled, meetsync.SystemUserID, map[string]any{"endpoint_id": ep.ID, "n": 2})
	if got := e.complete(now, true, o1, o2); len(got) != 0 {
		t.Errorf("outcomes that disable their endpoint claimed %v", taskKeys(eps, got))
	}
	got := e.getEndpoint(ep.ID)
	if !got.Disabled || got.DisabledReason != "gone" || got.DisabledAt == nil || !got.DisabledAt.Equal(now) {
		t.Errorf("endpoint after the disabling outcomes: %+v", got)
	}
	var disabledEvents []*meetsync.Event
	for _, ev := range e.feed(e.app, 0, 100) {
		if ev.Type == meetsync.TypeEndpointDisabled {
			disabledEvents = append(disabledEvents, ev)
		}
	}
	if len(disabledEvents) != 1 || disabledEvents[0].ID != o1.DisabledEvent.ID || disabledEvents[0].UserID != meetsync.SystemUserID {
		t.Fatalf("endpoint.disabled events: %v; want only the first outcome's", disabledEvents)
	}
	if ds := e.deliveries(watcher, ""); len(ds) != 1 || ds[0].EventID != o1.DisabledEvent.ID {
		t.Errorf("the watcher's deliveries: %v", ds)
	}
	// Its queues are parked: only the watcher's delivery is claimable.
	if got := taskKeys(eps, e.claim(now.Add(time.Hour))); !slices.Equal(got, []string{"1/@system/1"}) {
		t.Errorf("claimed %v with the endpoint disabled", got)
	}
	if due, ok, err := e.s.DeliveryNextDue(e.ctx); err != nil || !ok || !due.Equal(now.Add(time.Hour).Add(lease)) {
		t.Errorf("DeliveryNextDue = %v %v %v; want only the watcher's claimed head", due, ok, err)
	}
	// Enabling resumes the queues in order: u's failed head when due, v's next.
	e.tick(time.Second)
	e.setDisabled(ep, false)
	if got := taskKeys(eps, e.claim(now)); !slices.Equal(got, []string{"0/v/2"}) {
		t.Errorf("enabled, before u's retry time: claimed %v", got)
	}
	if got := taskKeys(eps, e.claim(retry)); !slices.Equal(got, []string{"0/u/1"}) {
		t.Errorf("enabled, at u's retry time: claimed %v", got)
	}
	// Events while an endpoint is disabled are not queued for it.
	e.setDisabled(ep, true)
	e.appendOne(e.note("w"))
	if ds := e.deliveries(ep, ""); len(ds) != 4 {
		t.Errorf("the disabled endpoint has %d deliveries, want the 4 from before", len(ds))
	}
}

func testDisableWhileClaimed(t *testing.T, su *suite) {
	e := su.setup(t)
	ep := e.endpoint(nil, 0)
	eps := []*meetsync.Endpoint{ep}
	e.appendOne(e.note("u"), e.note("u"), e.note("v"), e.note("v"))
	tasks := e.claim(t0)
	e.tick(time.Second)
	e.setDisabled(ep, true)
	now := e.tick(time.Second)
	var outs []*meetsync.DeliveryOutcome
	for _, tk := range tasks {
		if tk.Delivery.UserID == "u" {
			outs = append(outs, delivered(tk, now))
		} else {
			outs = append(outs, failed(tk, now, now))
		}
	}
	if got := e.complete(now, true, outs...); len(got) != 0 {
		t.Errorf("completions on a disabled endpoint claimed %v", taskKeys(eps, got))
	}
	if got := e.claim(now.Add(time.Hour)); len(got) != 0 {
		t.Errorf("claimed %v on a disabled endpoint", taskKeys(eps, got))
	}
	if n, err := e.s.DeliveriesReleaseClaims(e.ctx, "", now); err != nil || n != 0 {
		t.Errorf("DeliveriesReleaseClaims = %d, %v", n, err)
	}
	e.setDisabled(ep, false)
	if got := taskKeys(eps, e.claim(now)); !slices.Equal(got, []string{"0/u/2", "0/v/1"}) {
		t.Errorf("enabled again: claimed %v", got)
	}
}

func testFailingSince(t *testing.T, su *suite) {
	e := su.setup(t)
	ep := e.endpoint(nil, 0)
	e.appendOne(e.note("a"), e.note("b"), e.note("c"), e.note("d"), e.note("e"))
	tasks := e.claim(t0)
	by := map[string]*meetsync.DeliveryTask{}
	for _, tk := range tasks {
		by[tk.Delivery.UserID] = tk
	}
	t1 := e.tick(time.Second)
	e.complete(t1, false, failed(by["a"], t1, t1.Add(time.Hour)))
	if fs := e.getEndpoint(ep.ID).FailingSince; fs == nil || !fs.Equal(t1) {
		t.Errorf("after a failure: failing since %v, want %v", fs, t1)
	}
	t2 := e.tick(time.Second)
	e.complete(t2, false, failed(by["b"], t2, t2.Add(time.Hour)))
	if fs := e.getEndpoint(ep.ID).FailingSince; fs == nil || !fs.Equal(t1) {
		t.Errorf("after a second failure: failing since %v, want still %v", fs, t1)
	}
	t3 := e.tick(time.Second)
	e.complete(t3, false, delivered(by["c"], t3))
	if fs := e.getEndpoint(ep.ID).FailingSince; fs != nil {
		t.Errorf("after a success: failing since %v, want none", fs)
	}
	t4 := e.tick(time.Second)
	e.complete(t4, false, failed(by["d"], t4, t4.Add(time.Hour)), delivered(by["e"], t4))
	if fs := e.getEndpoint(ep.ID).FailingSince; fs != nil {
		t.Errorf("after a batch with a success: failing since %v, want none", fs)
	}
}

func testRequeue(t *testing.T, su *suite) {
	e := su.setup(t)
	ep := e.endpoint(nil, 0)
	eps := []*meetsync.Endpoint{ep}
	e.appendOne(e.note("u"), e.note("u"), e.note("u"))
	d1 := e.claim(t0)[0]
	now := e.tick(time.Second)
	d2 := e.complete(now, true, dead(d1, now))[0]
	e.complete(now, false, delivered(d2, now))

	// Replaying the dead one puts it back first in its queue.
	at := e.tick(time.Minute)
	n, err := e.s.DeliveriesRequeue(e.ctx, meetsync.DeliveryRequeueParams{AppID: e.app, DeliveryID: d1.Delivery.ID, Now: at})
	if err != nil || n != 1 {
		t.Fatalf("replay: %d, %v", n, err)
	}
	d, _ := e.delivery(d1.Delivery.ID)
	if d.Status != meetsync.DeliveryPending || d.NextAttemptAt == nil || !d.NextAttemptAt.Equal(at) || !d.UpdatedAt.Equal(at) || d.Attempts != 1 {
		t.Errorf("replayed delivery %+v", d)
	}
	claimed := e.claim(at)
	if got := taskKeys(eps, claimed); !slices.Equal(got, []string{"0/u/1"}) {
		t.Fatalf("after the replay: claimed %v, want the replayed one before seq 3", got)
	}
	_, err = e.s.DeliveriesRequeue(e.ctx, meetsync.DeliveryRequeueParams{AppID: e.app, DeliveryID: d1.Delivery.ID, Now: at})
	wantCode(t, "replay of a delivery being attempted", err, meetsync.ECONFLICT)
	for _, id := range []string{"del_999999", "bogus", "del_x"} {
		_, err = e.s.DeliveriesRequeue(e.ctx, meetsync.DeliveryRequeueParams{AppID: e.app, DeliveryID: id, Now: at})
		wantCode(t, "replay of "+id, err, meetsync.ENOTFOUND)
	}
	other := e.newApp("other")
	_, err = e.s.DeliveriesRequeue(e.ctx, meetsync.DeliveryRequeueParams{AppID: other, DeliveryID: d2.Delivery.ID, Now: at})
	wantCode(t, "replay of another app's delivery", err, meetsync.ENOTFOUND)
	// A delivered one can be replayed too.
	if n, err := e.s.DeliveriesRequeue(e.ctx, meetsync.DeliveryRequeueParams{AppID: e.app, DeliveryID: d2.Delivery.ID, Now: at}); err != nil || n != 1 {
		t.Errorf("replay of a delivered delivery: %d, %v", n, err)
	}
	e.complete(at, false, delivered(claimed[0], at))
	if got := taskKeys(eps, e.claim(at)); !slices.Equal(got, []string{"0/u/2"}) {
		t.Errorf("after the replayed one: claimed %v, want the replayed delivered one (seq 2)", got)
	}

	// Recovery: the failed and dead deliveries created since a time.
	rec := e.endpoint(nil, 0)
	eps = append(eps, rec)
	old := e.tick(time.Minute)
	e.appendOne(e.event(in{user: "a"}))
	since := e.tick(time.Minute)
	e.appendOne(e.event(in{user: "b"}), e.event(in{user: "c"}), e.event(in{user: "c"}))
	now = e.tick(time.Second)
	var outs []*meetsync.DeliveryOutcome
	for _, tk := range e.claim(now) {
		if tk.Endpoint.ID != rec.ID {
			continue
		}
		switch tk.Delivery.UserID {
		case "a", "b":
			outs = append(outs, dead(tk, now))
		case "c":
			outs = append(outs, failed(tk, now, now.Add(time.Hour)))
		}
	}
	e.complete(now, false, outs...)
	_ = old
	at = e.tick(time.Second)
	n, err = e.s.DeliveriesRequeue(e.ctx, meetsync.DeliveryRequeueParams{AppID: e.app, EndpointID: rec.ID, Since: since, Now: at})
	if err != nil || n != 2 {
		t.Fatalf("recover since %v: %d, %v; want b's dead and c's failed", since, n, err)
	}
	if got := taskKeys(eps, e.claim(at)); !slices.Equal(got, []string{"1/b/1", "1/c/1"}) {
		t.Errorf("after recovery: claimed %v", got)
	}
	if d := e.deliveries(rec, meetsync.DeliveryDead); len(d) != 1 || d[0].UserID != "a" {
		t.Errorf("the dead letter before Since: %v", d)
	}
	_, err = e.s.DeliveriesRequeue(e.ctx, meetsync.DeliveryRequeueParams{AppID: e.app, EndpointID: "ep_missing", Since: since, Now: at})
	wantCode(t, "recover on an unknown endpoint", err, meetsync.ENOTFOUND)
	_, err = e.s.DeliveriesRequeue(e.ctx, meetsync.DeliveryRequeueParams{AppID: other, EndpointID: rec.ID, Since: since, Now: at})
	wantCode(t, "recover on another app's endpoint", err, meetsync.ENOTFOUND)

	// On a disabled endpoint, requeued deliveries wait for it to be enabled.
	e.setDisabled(rec, true)
	n, err = e.s.DeliveriesRequeue(e.ctx, meetsync.DeliveryRequeueParams{AppID: e.app, EndpointID: rec.ID, Since: old, Now: at})
	if err != nil || n != 1 {
		t.Fatalf("recover on a disabled endpoint: %d, %v", n, err)
	}
	if got := e.claim(at.Add(time.Hour)); slices.ContainsFunc(got, func(tk *meetsync.DeliveryTask) bool { return tk.Endpoint.ID == rec.ID }) {
		t.Errorf("claimed from a disabled endpoint: %v", taskKeys(eps, got))
	}
	e.setDisabled(rec, false)
	if got := taskKeys(eps, e.claim(at.Add(time.Hour))); !slices.Contains(got, "1/a/1") {
		t.Errorf("enabled after recovery: claimed %v, want a's requeued delivery", got)
	}
}

func testReleaseClaims(t *testing.T, su *suite) {
	e := su.setup(t)
	ep := e.endpoint(nil, 0)
	off := e.endpoint(nil, 0)
	eps := []*meetsync.Endpoint{ep, off}
	e.appendOne(e.note("u"), e.note("v"), e.note("w"))
	a := e.claimAs("A", t0, 4) // two endpoints × three users: A and B share them
	b := e.claimAs("B", t0, 10)
	if len(a)+len(b) != 6 {
		t.Fatalf("claimed %d + %d", len(a), len(b))
	}
	e.setDisabled(off, true)
	now := e.tick(time.Second)
	n, err := e.s.DeliveriesReleaseClaims(e.ctx, "A", now)
	if err != nil || n != 4 {
		t.Fatalf("release A's claims: %d, %v; want 4", n, err)
	}
	wantA := 0
	for _, tk := range a {
		if tk.Endpoint.ID == ep.ID {
			wantA++
		}
	}
	// Released claims are due at once, except those of the disabled endpoint (parked).
	if got := e.claimAs("C", now, 10); len(got) != wantA {
		t.Errorf("after releasing A's claims: claimed %v, want A's %d of the enabled endpoint", taskKeys(eps, got), wantA)
	}
	n, err = e.s.DeliveriesReleaseClaims(e.ctx, "", now)
	if err != nil || n != 2+wantA {
		t.Errorf("release every claim: %d, %v; want %d", n, err, 2+wantA)
	}
	if got := taskKeys(eps, e.claimAs("D", now, 10)); !slices.Equal(got, []string{"0/u/1", "0/v/1", "0/w/1"}) {
		t.Errorf("after releasing everything: claimed %v", got)
	}
}

func testDeliveryList(t *testing.T, su *suite) {
	e := su.setup(t)
	ep := e.endpoint(nil, 0)
	other := e.newApp("other")
	for _, u := range []string{"a", "b", "c", "d", "e"} {
		e.appendOne(e.note(u))
	}
	now := e.tick(time.Second)
	var outs []*meetsync.DeliveryOutcome
	for _, tk := range e.claim(now) {
		switch tk.Delivery.UserID {
		case "a", "c":
			outs = append(outs, delivered(tk, now))
		case "b":
			outs = append(outs, failed(tk, now, now.Add(time.Hour)))
		}
	}
	e.complete(now, false, outs...)
	all := e.deliveries(ep, "")
	var users []string
	for i, d := range all {
		users = append(users, d.UserID)
		if i > 0 && d.ID == all[i-1].ID {
			t.Errorf("delivery %s listed twice", d.ID)
		}
	}
	if !slices.Equal(users, []string{"e", "d", "c", "b", "a"}) {
		t.Errorf("DeliveryList = %v, want newest first", users)
	}
	count := func(status string) int { return len(e.deliveries(ep, status)) }
	if count(meetsync.DeliveryDelivered) != 2 || count(meetsync.DeliveryFailed) != 1 || count(meetsync.DeliveryPending) != 2 || count(meetsync.DeliveryDead) != 0 {
		t.Errorf("by status: delivered %d, failed %d, pending %d, dead %d", count(meetsync.DeliveryDelivered), count(meetsync.DeliveryFailed),
			count(meetsync.DeliveryPending), count(meetsync.DeliveryDead))
	}
	_, err := e.s.DeliveryList(e.ctx, meetsync.DeliveryListParams{AppID: e.app, EndpointID: ep.ID, Before: "nope", Limit: 10})
	wantCode(t, "DeliveryList with a bad cursor", err, meetsync.EINVALID)
	if ds, err := e.s.DeliveryList(e.ctx, meetsync.DeliveryListParams{AppID: other, EndpointID: ep.ID, Limit: 10}); err != nil || len(ds) != 0 {
		t.Errorf("another app's view of the endpoint's deliveries: %v, %v", ds, err)
	}
	_, _, err = e.s.DeliveryGet(e.ctx, other, all[0].ID)
	wantCode(t, "DeliveryGet(another app)", err, meetsync.ENOTFOUND)
	for _, id := range []string{"del_999999", "x"} {
		_, _, err = e.s.DeliveryGet(e.ctx, e.app, id)
		wantCode(t, "DeliveryGet("+id+")", err, meetsync.ENOTFOUND)
	}
}

func testEndpointDelete(t *testing.T, su *suite) {
	e := su.setup(t)
	ep := e.endpoint(nil, 0)
	keep := e.endpoint(nil, 0)
	e.appendOne(e.note("u"), e.note("u"))
	tasks := e.claim(t0)
	now := e.tick(time.Second)
	var outs []*meetsync.DeliveryOutcome
	var gone string
	for _, tk := range tasks {
		outs = append(outs, failed(tk, now, now))
		if tk.Endpoint.ID == ep.ID {
			gone = tk.Delivery.ID
		}
	}
	e.complete(now, false, outs...)
	if err := e.s.EndpointDelete(e.ctx, e.app, ep.ID); err != nil {
		t.Fatal(err)
	}
	_, _, err := e.s.DeliveryGet(e.ctx, e.app, gone)
	wantCode(t, "DeliveryGet of a deleted endpoint's delivery", err, meetsync.ENOTFOUND)
	depths, err := e.s.DeliveryQueueDepths(e.ctx)
	if err != nil || depths[ep.ID] != 0 || depths[keep.ID] != 2 {
		t.Errorf("DeliveryQueueDepths = %v, %v", depths, err)
	}
	for _, tk := range e.claim(now) {
		if tk.Endpoint.ID == ep.ID {
			t.Errorf("claimed a deleted endpoint's delivery %+v", tk.Delivery)
		}
	}
	e.appendOne(e.note("u"))
	if ds, err := e.s.DeliveryList(e.ctx, meetsync.DeliveryListParams{AppID: e.app, EndpointID: ep.ID, Limit: 10}); err != nil || len(ds) != 0 {
		t.Errorf("deliveries for a deleted endpoint: %v, %v", ds, err)
	}
}
