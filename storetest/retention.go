package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
)

func (e *env) purge(before time.Time, limit int) int {
	e.t.Helper()
	n, err := e.s.(meetsync.Purger).PurgeBefore(e.ctx, e.app, before, limit)
	if err != nil {
		e.t.Fatalf("PurgeBefore: %v", err)
	}
	return n
}

// testPurge: an app's events received before the cutoff go, oldest first
// and at most limit at a time, with their finished deliveries and those
// deliveries' attempts, their caller-id records and the app's older
// idempotency records; users keep their state and seqs; other apps and
// newer events stay.
func testPurge(t *testing.T, su *suite) {
	e := su.setup(t)
	su.require(e, Purge)
	ep := e.endpoint(nil, 0)
	now := e.now
	old, cutoff := now.Add(-2*time.Hour), now.Add(-time.Hour)
	appendAt := func(app string, n int, at time.Time, key, hash string) *meetsync.AppendRequest {
		t.Helper()
		r := &meetsync.AppendRequest{AppID: app, IdempotencyKey: key, RequestHash: []byte(hash)}
		for i := range n {
			r.Events = append(r.Events, e.event(in{app: app, user: fmt.Sprint("u", i%3), received: at, data: fmt.Sprintf(`{"i":%d}`, i)}))
		}
		e.append(r)
		return r
	}
	appendAt(e.app, 10, old, "k-old", "a")
	withID := e.event(in{id: "ext-1", user: "u0", received: old})
	e.append(req(withID))
	appendAt(e.app, 5, now, "k-new", "b")
	other := e.newApp("other")
	appendAt(other, 4, old, "k-old", "a")

	// Every delivery of the old events is delivered (one attempt each).
	var attemptOf string
	for tasks := e.claim(now); len(tasks) > 0; {
		tk := tasks[0]
		if attemptOf == "" {
			attemptOf = tk.Delivery.ID
		}
		next := e.complete(now, true, delivered(tk, now))
		tasks = append(tasks[1:], next...)
	}
	if ds := e.deliveries(ep, meetsync.DeliveryPending); len(ds) != 0 {
		t.Fatalf("%d deliveries still pending", len(ds))
	}

	if n := e.purge(cutoff, 4); n != 4 {
		t.Errorf("the first chunk purged %d events, want 4", n)
	}
	if n := e.purge(cutoff, 100); n != 7 {
		t.Errorf("the second chunk purged %d events, want 7", n)
	}
	if n := e.purge(cutoff, 100); n != 0 {
		t.Errorf("a third purge deleted %d events", n)
	}
	feed := e.feed(e.app, 0, 100)
	if len(feed) != 5 {
		t.Fatalf("after the purge the feed has %d events, want the 5 recent ones", len(feed))
	}
	for _, ev := range feed {
		if ev.ReceivedAt.Before(cutoff) {
			t.Errorf("an old event survived: %+v", ev)
		}
	}
	if n := len(e.feed(other, 0, 100)); n != 4 {
		t.Errorf("the other app has %d events, want its 4 (not purged)", n)
	}
	if n := len(e.deliveries(ep, "")); n != 5 {
		t.Errorf("the endpoint has %d deliveries, want those of the 5 recent events", n)
	}
	if _, _, err := e.s.DeliveryGet(e.ctx, e.app, attemptOf); meetsync.ErrorCode(err) != meetsync.ENOTFOUND {
		t.Errorf("a purged event's delivery is still there: %v", err)
	}
	// Users keep their state: the next event continues the log.
	if u := e.user("u0"); u.LastSeq != 7 {
		t.Errorf("u0's last seq after the purge: %d, want 7", u.LastSeq)
	}
	if res := e.appendOne(e.note("u0")); res[0].Seq != 8 {
		t.Errorf("u0's next event has seq %d, want 8", res[0].Seq)
	}
	// The purged records: the old key and caller id are free again; the
	// newer key is still taken; the other app's old key too.
	r := &meetsync.AppendRequest{AppID: e.app, IdempotencyKey: "k-old", RequestHash: []byte("c"), Events: []*meetsync.Event{e.note("u1")}}
	e.append(r)
	if r.Results[0].Duplicate {
		t.Errorf("a purged Idempotency-Key still answers: %s", fmtResults(r.Results))
	}
	if res := e.appendOne(e.event(in{id: "ext-1", user: "u0"})); res[0].Duplicate {
		t.Errorf("a purged event id is still taken: %s", fmtResults(res))
	}
	r = &meetsync.AppendRequest{AppID: e.app, IdempotencyKey: "k-new", RequestHash: []byte("x"), Events: []*meetsync.Event{e.note("u1")}}
	if err := e.s.EventsAppend(e.ctx, []*meetsync.AppendRequest{r}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "a newer Idempotency-Key with another body", r.Err, meetsync.ECONFLICT)
	r = &meetsync.AppendRequest{AppID: other, IdempotencyKey: "k-old", RequestHash: []byte("x"), Events: []*meetsync.Event{e.event(in{app: other, user: "u1"})}}
	if err := e.s.EventsAppend(e.ctx, []*meetsync.AppendRequest{r}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "the other app's old Idempotency-Key with another body", r.Err, meetsync.ECONFLICT)
}

// testPurgeKeepsActiveDeliveries: nothing from an app's oldest pending or
// failed delivery on is purged, however old; delivered, dead and
// superseded deliveries do not hold the purge back; a replayed delivery
// does again.
func testPurgeKeepsActiveDeliveries(t *testing.T, su *suite) {
	e := su.setup(t)
	su.require(e, Purge)
	ep := e.endpoint(nil, 0)
	deb := e.endpoint([]string{meetsync.TypeMeetingStatusChanged}, time.Minute)
	now := e.now
	old, cutoff := now.Add(-2*time.Hour), now.Add(-time.Hour)
	ev := func(user string) *meetsync.Event {
		return e.event(in{user: user, received: old, data: fmt.Sprintf(`{"n":%d}`, e.ids.Add(1))})
	}
	e1, e2, e3, e4, e5 := ev("u1"), ev("u2"), ev("u1"), ev("u2"), ev("u1")
	for _, x := range []*meetsync.Event{e1, e2, e3, e4, e5} {
		e.appendOne(x)
	}
	// Two status changes of u3 at the debounced endpoint: the first is
	// superseded (finished), the second pending at both endpoints.
	s1 := e.event(in{typ: meetsync.TypeMeetingStatusChanged, user: "u3", device: "d", received: old, data: `{"status":"connecting"}`})
	s2 := e.event(in{typ: meetsync.TypeMeetingStatusChanged, user: "u3", device: "d", received: old, data: `{"status":"in_meeting"}`})
	e.appendOne(s1)
	e.appendOne(s2)
	if d := e.deliveryOf(deb, s1.ID); d.Status != meetsync.DeliverySuperseded {
		t.Fatalf("s1 at the debounced endpoint: %s", d.Status)
	}
	// Deliver everything of u2 and u3, u1's e1; e3 fails (e5 waits behind it).
	for tasks := e.claim(now); len(tasks) > 0; {
		tk := tasks[0]
		tasks = tasks[1:]
		if tk.Delivery.EventID == e3.ID {
			e.complete(now, false, failed(tk, now, now.Add(time.Hour)))
			continue
		}
		tasks = append(tasks, e.complete(now, true, delivered(tk, now))...)
	}
	if n := e.purge(cutoff, 100); n != 2 {
		t.Errorf("with e3's delivery failed: purged %d events, want 2 (e1, e2)", n)
	}
	ids := func() string {
		var out []string
		for _, x := range e.feed(e.app, 0, 100) {
			out = append(out, x.ID)
		}
		return fmt.Sprint(out)
	}
	if got, want := ids(), fmt.Sprint([]string{e3.ID, e4.ID, e5.ID, s1.ID, s2.ID}); got != want {
		t.Errorf("after the first purge the feed is %s, want %s", got, want)
	}
	// e3 dead: e5, pending behind it, holds the purge back.
	now = e.tick(2 * time.Hour)
	tasks := e.claim(now)
	if len(tasks) != 1 || tasks[0].Delivery.EventID != e3.ID {
		t.Fatalf("claimed %v, want e3's retry", taskKeys([]*meetsync.Endpoint{ep, deb}, tasks))
	}
	e.complete(now, false, dead(tasks[0], now))
	if n := e.purge(cutoff, 100); n != 2 {
		t.Errorf("with e5 pending: purged %d events, want 2 (e3, e4)", n)
	}
	for tasks := e.claim(now); len(tasks) > 0; tasks = tasks[1:] {
		e.complete(now, false, delivered(tasks[0], now))
	}
	// A replay makes e5's delivery pending again: it stays.
	if _, err := e.s.DeliveriesRequeue(e.ctx, meetsync.DeliveryRequeueParams{AppID: e.app, DeliveryID: e.deliveryOf(ep, e5.ID).ID, Now: now}); err != nil {
		t.Fatal(err)
	}
	if n := e.purge(cutoff, 100); n != 0 {
		t.Errorf("with e5 replayed: purged %d events, want 0", n)
	}
	for tasks := e.claim(now); len(tasks) > 0; tasks = tasks[1:] {
		e.complete(now, false, delivered(tasks[0], now))
	}
	if n := e.purge(cutoff, 100); n != 3 {
		t.Errorf("with everything delivered: purged %d events, want 3 (e5, s1, s2)", n)
	}
	if got := ids(); got != "[]" {
		t.Errorf("the feed after the last purge: %s", got)
	}
}

// testPurgeConcurrentReplays purges an app's old, delivered events in
// small chunks while another handle (replica, when the store has peers)
// replays their deliveries: a replayed delivery either keeps its event
// (the purge stops before it) or was purged before the replay (ENOTFOUND);
// no delivery is ever left without its event, and every replay is sent.
func testPurgeConcurrentReplays(t *testing.T, su *suite) {
	e := su.setup(t)
	su.require(e, Purge)
	hs := e.handles(su, 2)
	ep := e.endpoint(nil, 0)
	now := e.now
	old, cutoff := now.Add(-2*time.Hour), now.Add(-time.Hour)
	const n = 40
	for i := range n {
		e.appendOne(e.event(in{user: fmt.Sprint("u", i%4), received: old, data: fmt.Sprintf(`{"i":%d}`, i)}))
	}
	deliverAll := func(at time.Time) {
		t.Helper()
		for tasks := e.claim(at); len(tasks) > 0; {
			tk := tasks[0]
			tasks = append(tasks[1:], e.complete(at, true, delivered(tk, at))...)
		}
	}
	deliverAll(now)
	var ids []string
	for _, d := range e.deliveries(ep, "") {
		ids = append(ids, d.ID)
	}
	type result struct {
		n   int
		err error
	}
	replays, purges := make(chan result, 1), make(chan result, 1)
	go func() {
		// Every other delivery, newest first (the purge goes oldest first).
		k := 0
		for i := 0; i < len(ids); i += 2 {
			_, err := hs[1].DeliveriesRequeue(e.ctx, meetsync.DeliveryRequeueParams{AppID: e.app, DeliveryID: ids[i], Now: now})
			switch meetsync.ErrorCode(err) {
			case "":
				k++
			case meetsync.ENOTFOUND:
			default:
				replays <- result{k, err}
				return
			}
		}
		replays <- result{k, nil}
	}()
	go func() {
		total := 0
		for range 2 * n {
			m, err := hs[0].(meetsync.Purger).PurgeBefore(e.ctx, e.app, cutoff, 3)
			if err != nil {
				purges <- result{total, err}
				return
			}
			total += m
		}
		purges <- result{total, nil}
	}()
	r, p := <-replays, <-purges
	if r.err != nil || p.err != nil {
		t.Fatalf("replays: %v; purges: %v", r.err, p.err)
	}
	k, purged := r.n, p.n
	t.Logf("%d replays, %d events purged meanwhile", k, purged)
	deliverAll(now.Add(time.Minute))
	depths, err := e.s.DeliveryQueueDepths(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if depths[ep.ID] != 0 {
		t.Errorf("%d deliveries are still active after delivering everything: a replayed delivery lost its event", depths[ep.ID])
	}
	events := map[string]bool{}
	for _, ev := range e.feed(e.app, 0, 1000) {
		events[ev.ID] = true
	}
	for _, d := range e.deliveries(ep, "") {
		if !events[d.EventID] {
			t.Errorf("delivery %s (%s) is left without its event %s", d.ID, d.Status, d.EventID)
		}
	}
	if m := e.purge(cutoff, 1000); purged+m != n {
		t.Errorf("purged %d events in all, want %d", purged+m, n)
	}
}
