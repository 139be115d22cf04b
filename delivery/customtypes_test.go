package delivery_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
)

// putType registers a custom event type through the API.
func (e *env) putType(t testing.TB, name, schemaJSON string, debounce bool) {
	t.Helper()
	var et struct {
		Version int `json:"version"`
	}
	r := e.do(t, "PUT", "/v1/event-types/"+name, map[string]any{"description": name, "schema": json.RawMessage(schemaJSON), "debounce": debounce})
	if r.Status != http.StatusCreated && r.Status != http.StatusOK {
		t.Fatalf("PUT /v1/event-types/%s: %s", name, r)
	}
	expect(t, r, r.Status, &et)
}

// TestCustomTypesDelivered: events of registered custom types are
// validated, filtered by endpoints like any type (myapp.* takes them and
// nothing else) and delivered per user in seq order, carrying the schema
// version they were validated against; a new version applies to the next
// events only.
func TestCustomTypesDelivered(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.putType(t, "myapp.order_paid", `{"type":"object","properties":{"amount":{"type":"integer","minimum":1}},"required":["amount"]}`, false)
	e.putType(t, "myapp.order_shipped", `{"type":"object","required":["carrier"]}`, false)
	mine, meetings, all := newReceiver(t), newReceiver(t), newReceiver(t)
	epMine := e.createEndpoint(t, mine.URL, map[string]any{"event_types": []string{"myapp.*"}})
	epMeetings := e.createEndpoint(t, meetings.URL, map[string]any{"event_types": []string{"meeting.*"}, "debounce_ms": 0})
	epAll := e.createEndpoint(t, all.URL, map[string]any{"debounce_ms": 0})
	mine.verifyWith(nil, epMine.Secret)
	meetings.verifyWith(nil, epMeetings.Secret)
	all.verifyWith(nil, epAll.Secret)

	paid := func(user string, amount int) map[string]any {
		return event(user, "myapp.order_paid", map[string]any{"amount": amount})
	}
	shipped := func(user string) map[string]any {
		return event(user, "myapp.order_shipped", map[string]any{"carrier": "sf"})
	}
	// A bad payload refuses the whole batch, naming the field.
	requireError(t, e.do(t, "POST", "/v1/events", map[string]any{"events": []map[string]any{paid("u1", 5), paid("u1", 0)}}),
		http.StatusBadRequest, meetsync.EINVALID, "events[1].data.amount")

	var res []result
	res = append(res, e.ingest(t,
		paid("u1", 10),
		statusEvent("u1", "in_meeting"),
		paid("u2", 20),
		event("u1", "otherapp.ping", nil),
		shipped("u1"),
	)...)
	res = append(res, e.ingest(t, paid("u2", 21), shipped("u2"), statusEvent("u2", "idle"))...)
	// Version 2 of order_paid: amounts in cents, at least 100.
	e.putType(t, "myapp.order_paid", `{"type":"object","properties":{"amount":{"type":"integer","minimum":100}},"required":["amount"]}`, false)
	requireError(t, e.do(t, "POST", "/v1/events", paid("u1", 99)), http.StatusBadRequest, meetsync.EINVALID, "data.amount")
	res = append(res, e.ingest(t, paid("u1", 1000))...)

	wantMine := map[string][]int{"u1": {0, 4, 8}, "u2": {2, 5, 6}} // indexes into res
	eventually(t, wait, func() bool {
		return len(mine.firsts()) == 6 && len(meetings.firsts()) == 2 && len(all.firsts()) == len(res) &&
			e.settled(t, epMine.ID) && e.settled(t, epMeetings.ID) && e.settled(t, epAll.ID)
	}, "every webhook")
	for user, idx := range wantMine {
		var got, want []string
		for _, r := range mine.firsts() {
			if r.Payload.UserID == user {
				got = append(got, r.ID)
			}
		}
		for _, i := range idx {
			want = append(want, res[i].ID)
		}
		if !slices.Equal(got, want) {
			t.Errorf("myapp.* endpoint got %s's webhooks %v, want %v in order", user, got, want)
		}
		if seqs := mine.seqs(user); !slices.IsSorted(seqs) {
			t.Errorf("myapp.* endpoint got %s's seqs %v out of order", user, seqs)
		}
	}
	for _, r := range mine.firsts() {
		want := 1
		if r.Payload.Type == "myapp.order_paid" && r.ID == res[8].ID {
			want = 2
		}
		if r.Payload.SchemaVersion != want {
			t.Errorf("webhook %s (%s) has schema_version %d, want %d", r.ID, r.Payload.Type, r.Payload.SchemaVersion, want)
		}
	}
	for _, r := range meetings.firsts() {
		if r.Payload.Type != meetsync.TypeMeetingStatusChanged || r.Payload.SchemaVersion != 0 {
			t.Errorf("meeting.* endpoint got %s %s (schema_version %d)", r.Payload.Type, r.ID, r.Payload.SchemaVersion)
		}
	}
	// The catch-all endpoint has every event, per user in seq order; the
	// unregistered otherapp.ping went through unchecked.
	for _, user := range []string{"u1", "u2"} {
		if seqs := all.seqs(user); !slices.IsSorted(seqs) {
			t.Errorf("catch-all endpoint got %s's seqs %v out of order", user, seqs)
		}
	}
	if rs := all.byID(res[3].ID); len(rs) != 1 || rs[0].Payload.Type != "otherapp.ping" || rs[0].Payload.SchemaVersion != 0 {
		t.Errorf("otherapp.ping webhooks = %+v", rs)
	}
	// The feed filters custom types like any other.
	feed := e.feed(t, "type=myapp.order_paid")
	if len(feed) != 4 || feed[3].SchemaVersion != 2 || feed[0].SchemaVersion != 1 {
		t.Errorf("feed of myapp.order_paid = %+v", feed)
	}
}

// TestCustomDebounce: a custom type registered with "debounce": true is
// coalesced like meeting.status_changed (per endpoint and user, inside the
// endpoint's window, only with events of the same type); a type without it
// is delivered event by event; the feed keeps every event.
func TestCustomDebounce(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.putType(t, "myapp.typing", `{"type":"object","properties":{"n":{"type":"integer"}}}`, true)
	e.putType(t, "myapp.order_paid", `{"type":"object"}`, false)
	rc := newReceiver(t)
	ep := e.createEndpoint(t, rc.URL, map[string]any{"debounce_ms": 300, "event_types": []string{"myapp.*"}})
	rc.verifyWith(nil, ep.Secret)
	typing := func(user string, n int) map[string]any {
		return event(user, "myapp.typing", map[string]any{"n": n})
	}

	e.Clock.Freeze()
	var res []result
	for _, ev := range []map[string]any{
		typing("u1", 1), typing("u1", 2), event("u1", "myapp.order_paid", nil), typing("u2", 1), typing("u1", 3),
		event("u1", "myapp.order_paid", nil),
	} {
		res = append(res, e.ingest(t, ev)...)
	}
	// u1's first order goes out at once: the typing before it was
	// superseded and the order became its queue's head. The newest typing
	// waits out the window, and u1's second order waits behind it
	// (per-user order); u2's typing waits alone.
	eventually(t, wait, func() bool { return e.deliveryOf(t, ep.ID, res[2].ID).Status == "delivered" }, "the first order")
	var pendingIDs []string
	for _, d := range e.deliveries(t, ep.ID, "pending") {
		pendingIDs = append(pendingIDs, d.EventID)
	}
	slices.Sort(pendingIDs)
	want := []string{res[3].ID, res[4].ID, res[5].ID}
	slices.Sort(want)
	if !slices.Equal(pendingIDs, want) {
		t.Fatalf("pending deliveries %v, want u1's newest typing and second order and u2's typing %v", pendingIDs, want)
	}
	if n := rc.count(); n != 1 {
		t.Fatalf("%d webhooks before the window ended, want only the first order", n)
	}
	for _, i := range []int{0, 1} {
		if d := e.deliveryOf(t, ep.ID, res[i].ID); d.Status != "superseded" || d.Attempts != 0 {
			t.Errorf("typing %d: %+v, want superseded", i, d)
		}
	}

	e.Clock.Advance(300 * time.Millisecond)
	e.D.Wake()
	eventually(t, wait, func() bool { return rc.count() == 4 && e.settled(t, ep.ID) }, "the coalesced typing")
	if got := rc.seqs("u1"); !slices.Equal(got, []int64{3, 4, 5}) {
		t.Errorf("u1 webhooks have seqs %v, want [3 4 5] (order, newest typing, order)", got)
	}
	if got := rc.seqs("u2"); !slices.Equal(got, []int64{1}) {
		t.Errorf("u2 webhooks have seqs %v, want [1]", got)
	}
	if got := dataOf(t, rc.byID(res[4].ID)[0].Payload.Data)["n"]; got != float64(3) {
		t.Errorf("coalesced typing carries n=%v, want the newest (3)", got)
	}
	if n := len(e.feed(t, "type=myapp.typing")); n != 4 {
		t.Errorf("feed has %d typing events, want all 4", n)
	}

	// Without debounce, a burst of one type is delivered event by event.
	e.putType(t, "myapp.typing", `{"type":"object","properties":{"n":{"type":"integer"}}}`, false)
	var burst []result
	for n := range 3 {
		burst = append(burst, e.ingest(t, typing("u3", n))...)
	}
	eventually(t, wait, func() bool { return e.settled(t, ep.ID) && len(rc.seqs("u3")) == 3 }, "the burst without debounce")
	if got, want := ids(filterUser(rc.firsts(), "u3")), []string{burst[0].ID, burst[1].ID, burst[2].ID}; !slices.Equal(got, want) {
		t.Errorf("u3 webhooks %v, want %v", got, want)
	}
	if n := e.countDeliveries(t, ep.ID, "superseded"); n != 2 {
		t.Errorf("%d superseded deliveries, want still 2", n)
	}
}

func filterUser(reqs []*webhookReq, user string) []*webhookReq {
	var out []*webhookReq
	for _, r := range reqs {
		if r.Payload.UserID == user {
			out = append(out, r)
		}
	}
	return out
}
