package storetest

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
)

func (e *env) putType(s meetsync.Store, p meetsync.EventTypePutParams) (*meetsync.EventType, bool) {
	e.t.Helper()
	if p.AppID == "" {
		p.AppID = e.app
	}
	if p.Now.IsZero() {
		p.Now = e.now
	}
	et, created, err := s.(meetsync.TypeStore).EventTypePut(e.ctx, &p)
	if err != nil {
		e.t.Fatalf("EventTypePut(%s): %v", p.Name, err)
	}
	return et, created
}

// testEventTypeVersions: a type starts at version 1; a put with the same
// schema changes nothing (not even UpdatedAt), a new description or
// debounce changes the type in place, a new schema makes version n+1;
// every version stays readable.
func testEventTypeVersions(t *testing.T, su *suite) {
	e := su.setup(t)
	su.require(e, Types)
	ts := e.s.(meetsync.TypeStore)
	t0 := e.tick(1500 * time.Nanosecond)
	s1 := json.RawMessage(`{"type":"object"}`)
	s2 := json.RawMessage(`{"required":["amount"],"type":"object"}`)
	t0us := t0.Truncate(time.Microsecond)

	et, created := e.putType(e.s, meetsync.EventTypePutParams{Name: "crm.order_paid", Description: "paid", Schema: s1})
	if !created || et.Version != 1 || et.LatestVersion != 1 || string(et.Schema) != string(s1) || et.Description != "paid" || et.Debounce ||
		!et.CreatedAt.Equal(t0us) || !et.UpdatedAt.Equal(t0us) || !et.VersionCreatedAt.Equal(t0us) || et.AppID != e.app || et.Name != "crm.order_paid" {
		t.Fatalf("created type = %+v (created %v)", et, created)
	}
	// The same again, later: nothing is written.
	et, created = e.putType(e.s, meetsync.EventTypePutParams{Name: "crm.order_paid", Description: "paid", Schema: s1, Now: t0.Add(time.Minute)})
	if created || et.Version != 1 || !et.UpdatedAt.Equal(t0us) {
		t.Fatalf("unchanged put = %+v (created %v), want version 1 updated at %v", et, created, t0us)
	}
	// Description and debounce change in place.
	t1 := t0.Add(2 * time.Minute)
	et, _ = e.putType(e.s, meetsync.EventTypePutParams{Name: "crm.order_paid", Description: "an order was paid", Schema: s1, Debounce: true, Now: t1})
	if et.Version != 1 || et.Description != "an order was paid" || !et.Debounce || !et.UpdatedAt.Equal(t1.Truncate(time.Microsecond)) ||
		!et.VersionCreatedAt.Equal(t0us) {
		t.Fatalf("described type = %+v", et)
	}
	// A new schema is version 2.
	t2 := t0.Add(3 * time.Minute)
	et, created = e.putType(e.s, meetsync.EventTypePutParams{Name: "crm.order_paid", Description: "an order was paid", Schema: s2, Debounce: true, Now: t2})
	if created || et.Version != 2 || et.LatestVersion != 2 || string(et.Schema) != string(s2) || !et.VersionCreatedAt.Equal(t2.Truncate(time.Microsecond)) ||
		!et.CreatedAt.Equal(t0us) {
		t.Fatalf("new schema = %+v", et)
	}
	for _, c := range []struct {
		version, want int
		schema        json.RawMessage
	}{{0, 2, s2}, {2, 2, s2}, {1, 1, s1}} {
		et, err := ts.EventTypeGet(e.ctx, e.app, "crm.order_paid", c.version)
		if err != nil {
			t.Fatalf("get version %d: %v", c.version, err)
		}
		if et.Version != c.want || et.LatestVersion != 2 || string(et.Schema) != string(c.schema) || et.Description != "an order was paid" || !et.Debounce {
			t.Errorf("get version %d = %+v, want version %d with %s", c.version, et, c.want, c.schema)
		}
	}
	// Back to the first schema: a version of its own (3).
	et, _ = e.putType(e.s, meetsync.EventTypePutParams{Name: "crm.order_paid", Description: "an order was paid", Schema: s1, Debounce: true})
	if et.Version != 3 || string(et.Schema) != string(s1) {
		t.Errorf("the first schema again = %+v, want version 3", et)
	}
	_, err := ts.EventTypeGet(e.ctx, e.app, "crm.order_paid", 4)
	wantCode(t, "EventTypeGet(no such version)", err, meetsync.ENOTFOUND)
	_, err = ts.EventTypeGet(e.ctx, e.app, "crm.nothing", 0)
	wantCode(t, "EventTypeGet(no such type)", err, meetsync.ENOTFOUND)
}

// testEventTypeApps: types belong to one app, listed by name (bytewise);
// a put for an app that does not exist is ENOTFOUND.
func testEventTypeApps(t *testing.T, su *suite) {
	e := su.setup(t)
	su.require(e, Types)
	ts := e.s.(meetsync.TypeStore)
	other := e.newApp("other")
	for _, name := range []string{"crm.b", "crm.a", "zeta", "Crm.c"} {
		e.putType(e.s, meetsync.EventTypePutParams{Name: name, Schema: json.RawMessage(`true`)})
	}
	e.putType(e.s, meetsync.EventTypePutParams{AppID: other, Name: "crm.a", Schema: json.RawMessage(`false`)})
	list, err := ts.EventTypeList(e.ctx, e.app)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, et := range list {
		names = append(names, et.Name+" "+string(et.Schema))
	}
	if got := fmt.Sprint(names); got != "[Crm.c true crm.a true crm.b true zeta true]" {
		t.Errorf("the app's types = %s", got)
	}
	list, err = ts.EventTypeList(e.ctx, other)
	if err != nil || len(list) != 1 || string(list[0].Schema) != "false" {
		t.Errorf("the other app's types = %+v %v, want its own crm.a only", list, err)
	}
	_, err = ts.EventTypeGet(e.ctx, other, "crm.b", 0)
	wantCode(t, "EventTypeGet(another app's type)", err, meetsync.ENOTFOUND)
	_, _, err = ts.EventTypePut(e.ctx, &meetsync.EventTypePutParams{AppID: "app_missing", Name: "crm.a", Schema: json.RawMessage(`true`), Now: e.now})
	wantCode(t, "EventTypePut(unknown app)", err, meetsync.ENOTFOUND)
	if list, err := ts.EventTypeList(e.ctx, "app_missing"); err != nil || len(list) != 0 {
		t.Errorf("a missing app has types: %+v %v", list, err)
	}
}

// testEventTypeConcurrentPuts puts types through several handles at once:
// each registers the same new type with its own schema (one creates it,
// each other schema makes one version), then all put one same schema (a
// version once).
func testEventTypeConcurrentPuts(t *testing.T, su *suite) {
	e := su.setup(t)
	su.require(e, Types)
	hs := e.handles(su, 4)
	const writers = 4
	var wg sync.WaitGroup
	var mu sync.Mutex
	created := 0
	errs := make(chan error, writers)
	start := make(chan struct{})
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ts := hs[w].(meetsync.TypeStore)
			<-start
			for _, schema := range []string{fmt.Sprintf(`{"title":"w%d"}`, w), `{"title":"same"}`} {
				_, c, err := ts.EventTypePut(e.ctx, &meetsync.EventTypePutParams{AppID: e.app, Name: "crm.race", Schema: json.RawMessage(schema), Now: e.now})
				if err != nil {
					errs <- err
					return
				}
				if c {
					mu.Lock()
					created++
					mu.Unlock()
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatalf("EventTypePut: %v", err)
	default:
	}
	if created != 1 {
		t.Errorf("the type was created %d times", created)
	}
	ts := e.s.(meetsync.TypeStore)
	seen := map[string]int{}
	et, err := ts.EventTypeGet(e.ctx, e.app, "crm.race", 0)
	if err != nil {
		t.Fatal(err)
	}
	for v := 1; v <= et.LatestVersion; v++ {
		x, err := ts.EventTypeGet(e.ctx, e.app, "crm.race", v)
		if err != nil {
			t.Fatalf("version %d: %v", v, err)
		}
		seen[string(x.Schema)]++
	}
	// Each writer's own schema once, the shared one at least once (a put
	// after another writer's own schema makes it again).
	for w := range writers {
		if s := fmt.Sprintf(`{"title":"w%d"}`, w); seen[s] != 1 {
			t.Errorf("schema %s is %d versions, want 1", s, seen[s])
		}
	}
	if seen[`{"title":"same"}`] < 1 || et.LatestVersion != writers+seen[`{"title":"same"}`] {
		t.Errorf("versions: %v, latest %d", seen, et.LatestVersion)
	}
}

// testCustomTypeDebounce: an endpoint with a debounce window coalesces
// the pending deliveries of a custom type registered with debounce (with
// events of the same type and user only) as it does status changes; a
// change of the type's debounce takes effect at the next append, also
// through another handle (replica).
func testCustomTypeDebounce(t *testing.T, su *suite) {
	e := su.setup(t)
	su.require(e, Types)
	hs := e.handles(su, 2)
	ep := e.endpoint(nil, 300*time.Millisecond)
	plain := e.endpoint([]string{"crm.*"}, 0)
	schema := json.RawMessage(`{"type":"object"}`)
	e.putType(e.s, meetsync.EventTypePutParams{Name: "crm.typing", Schema: schema, Debounce: true})
	e.putType(e.s, meetsync.EventTypePutParams{Name: "crm.order_paid", Schema: schema})
	// Another app's type of the same name is not debounced.
	other := e.newApp("other")
	otherEP := e.endpointOf(other, nil, 300*time.Millisecond)

	add := func(s meetsync.Store, app, user, typ string) string {
		t.Helper()
		ev := e.event(in{app: app, typ: typ, user: user, data: fmt.Sprintf(`{"n":%d}`, e.ids.Add(1))})
		if err := s.EventsAppend(e.ctx, []*meetsync.AppendRequest{req(ev)}); err != nil {
			t.Fatal(err)
		}
		return ev.ID
	}
	statuses := func(ep *meetsync.Endpoint) map[string]string {
		t.Helper()
		out := map[string]string{}
		for _, d := range e.deliveries(ep, "") {
			out[d.EventID] = d.Status
		}
		return out
	}
	a1 := add(e.s, e.app, "u1", "crm.typing")
	o1 := add(e.s, e.app, "u1", "crm.order_paid")
	b1 := add(e.s, e.app, "u2", "crm.typing")
	a2 := add(hs[1], e.app, "u1", "crm.typing")
	o2 := add(e.s, e.app, "u1", "crm.order_paid")
	x1 := add(e.s, other, "u1", "crm.typing")
	x2 := add(e.s, other, "u1", "crm.typing")
	want := map[string]string{a1: "superseded", o1: "pending", b1: "pending", a2: "pending", o2: "pending"}
	if got := statuses(ep); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("deliveries = %v, want %v (only u1's older crm.typing superseded)", got, want)
	}
	if d := e.deliveryOf(ep, a2); !d.NextAttemptAt.Equal(e.deliveryOf(ep, a1).CreatedAt.Add(300 * time.Millisecond)) {
		t.Errorf("the coalesced delivery is due at %v, want the superseded one's due time", d.NextAttemptAt)
	}
	for id, st := range statuses(plain) {
		if st != meetsync.DeliveryPending {
			t.Errorf("an endpoint without a debounce window has %s %s", id, st)
		}
	}
	if got, want := fmt.Sprint(statuses(otherEP)), fmt.Sprint(map[string]string{x1: "pending", x2: "pending"}); got != want {
		t.Errorf("the other app's deliveries = %s, want %s (its crm.typing is not registered)", got, want)
	}

	// Debounce off (put here), appended through the other handle: the next
	// crm.typing supersedes nothing.
	e.putType(e.s, meetsync.EventTypePutParams{Name: "crm.typing", Schema: schema, Debounce: false})
	a3 := add(hs[1], e.app, "u1", "crm.typing")
	want[a3] = "pending"
	if got := statuses(ep); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after debounce off: deliveries = %v, want %v", got, want)
	}
	// On again, through the other handle: u1's pending crm.typing go.
	e.putType(hs[1], meetsync.EventTypePutParams{Name: "crm.typing", Schema: schema, Debounce: true})
	a4 := add(e.s, e.app, "u1", "crm.typing")
	want[a2], want[a3], want[a4] = "superseded", "superseded", "pending"
	if got := statuses(ep); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after debounce on: deliveries = %v, want %v", got, want)
	}
	// Within one transaction too; a delivery already attempted stays.
	t1 := add(e.s, e.app, "u3", "crm.typing")
	now := e.tick(time.Hour)
	var attempted bool
	for _, tk := range e.claim(now) {
		if tk.Delivery.EventID == t1 && tk.Delivery.EndpointID == ep.ID {
			e.complete(now, false, failed(tk, now, now.Add(time.Hour)))
			attempted = true
		} else {
			e.complete(now, false, delivered(tk, now))
		}
	}
	if !attempted {
		t.Fatal("the head of u3's queue was not claimed")
	}
	t2, t3 := e.event(in{typ: "crm.typing", user: "u3", data: `{"n":2}`}), e.event(in{typ: "crm.typing", user: "u3", data: `{"n":3}`})
	e.appendOne(t2, t3)
	if d := e.deliveryOf(ep, t1); d.Status != meetsync.DeliveryFailed {
		t.Errorf("the attempted delivery is %s, want failed", d.Status)
	}
	if d := e.deliveryOf(ep, t2.ID); d.Status != meetsync.DeliverySuperseded || d.SupersededBy != e.deliveryOf(ep, t3.ID).ID {
		t.Errorf("t2 in the same transaction as t3: %s by %q", d.Status, d.SupersededBy)
	}
}
