package httpapi_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
)

// eventTypeJSON is an event type as the API shows it.
type eventTypeJSON struct {
	Name             string          `json:"name"`
	Description      string          `json:"description"`
	Builtin          bool            `json:"builtin"`
	Ingestible       bool            `json:"ingestible"`
	Debounce         bool            `json:"debounce"`
	Schema           json.RawMessage `json:"schema"`
	Version          int             `json:"version"`
	LatestVersion    int             `json:"latest_version"`
	CreatedAt        *time.Time      `json:"created_at"`
	UpdatedAt        *time.Time      `json:"updated_at"`
	VersionCreatedAt *time.Time      `json:"version_created_at"`
}

type eventTypeList struct {
	EventTypes         []eventTypeJSON `json:"event_types"`
	ReservedNamespaces []string        `json:"reserved_namespaces"`
}

// putType sends PUT /v1/event-types/{name} and requires status.
func (e *env) putType(t *testing.T, key, name string, body any, status int) eventTypeJSON {
	t.Helper()
	r := e.do(t, "PUT", "/v1/event-types/"+name, key, body)
	if r.Status != status {
		t.Fatalf("PUT /v1/event-types/%s: got %s, want %d", name, r, status)
	}
	var et eventTypeJSON
	decodeStrict(t, r.Body, &et)
	return et
}

func (e *env) getType(t *testing.T, key, path string) eventTypeJSON {
	t.Helper()
	r := e.do(t, "GET", "/v1/event-types/"+path, key, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("GET /v1/event-types/%s: got %s, want 200", path, r)
	}
	var et eventTypeJSON
	decodeStrict(t, r.Body, &et)
	return et
}

func (e *env) listTypes(t *testing.T, key string) eventTypeList {
	t.Helper()
	r := e.do(t, "GET", "/v1/event-types", key, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("GET /v1/event-types: got %s, want 200", r)
	}
	var l eventTypeList
	decodeStrict(t, r.Body, &l)
	return l
}

// customTypes returns the custom types of a list by name.
func (l eventTypeList) customTypes() map[string]eventTypeJSON {
	out := map[string]eventTypeJSON{}
	for _, et := range l.EventTypes {
		if !et.Builtin {
			out[et.Name] = et
		}
	}
	return out
}

const paidV1 = `{"type":"object","properties":{"amount":{"type":"number","minimum":0},"currency":{"type":"string"}},"required":["amount"]}`

// canonical is paidV1 as meetsync stores it (compact, keys sorted).
const paidV1Canonical = `{"properties":{"amount":{"minimum":0,"type":"number"},"currency":{"type":"string"}},"required":["amount"],"type":"object"}`

// TestEventTypeRegistry: PUT registers a type (201), repeats idempotently
// (200, nothing changes), a changed schema is version 2 with version 1
// still readable; GET lists the built-ins and the custom types with their
// schemas; GET one type, built-in or custom, with ?version=.
func TestEventTypeRegistry(t *testing.T) {
	t.Parallel()
	e := setup(t)
	body := map[string]any{"description": "An order was paid.", "schema": json.RawMessage(paidV1)}

	r := e.do(t, "PUT", "/v1/event-types/crm.order_paid", e.Key, body)
	if r.Status != http.StatusCreated || r.Header.Get("Location") != "/v1/event-types/crm.order_paid" {
		t.Fatalf("first PUT: %s (Location %q), want 201 with a Location", r, r.Header.Get("Location"))
	}
	var v1 eventTypeJSON
	decodeStrict(t, r.Body, &v1)
	if v1.Name != "crm.order_paid" || v1.Builtin || !v1.Ingestible || v1.Debounce || v1.Version != 1 || v1.LatestVersion != 1 ||
		string(v1.Schema) != paidV1Canonical || v1.Description != "An order was paid." || v1.CreatedAt == nil || v1.UpdatedAt == nil {
		t.Fatalf("created type = %+v (schema %s)", v1, v1.Schema)
	}

	// The same PUT again: 200, the same type, nothing updated.
	again := e.putType(t, e.Key, "crm.order_paid", body, http.StatusOK)
	if again.Version != 1 || !again.UpdatedAt.Equal(*v1.UpdatedAt) || string(again.Schema) != paidV1Canonical {
		t.Fatalf("repeated PUT = %+v, want version 1 unchanged", again)
	}

	// A new schema: version 2; debounce and description replaced too.
	v2Schema := `{"type":"object","properties":{"amount":{"type":"integer","minimum":1}},"required":["amount","currency"]}`
	v2 := e.putType(t, e.Key, "crm.order_paid", map[string]any{"description": "Paid.", "schema": json.RawMessage(v2Schema), "debounce": true}, http.StatusOK)
	if v2.Version != 2 || v2.LatestVersion != 2 || v2.Description != "Paid." || !v2.Debounce || !v2.CreatedAt.Equal(*v1.CreatedAt) {
		t.Fatalf("second schema = %+v", v2)
	}
	if got := e.getType(t, e.Key, "crm.order_paid?version=1"); got.Version != 1 || got.LatestVersion != 2 || string(got.Schema) != paidV1Canonical {
		t.Errorf("GET ?version=1 = %+v (schema %s)", got, got.Schema)
	}
	if got := e.getType(t, e.Key, "crm.order_paid"); got.Version != 2 || !strings.Contains(string(got.Schema), `"integer"`) {
		t.Errorf("GET current = %+v (schema %s)", got, got.Schema)
	}
	requireError(t, e.do(t, "GET", "/v1/event-types/crm.order_paid?version=3", e.Key, nil), 404, meetsync.ENOTFOUND, "")
	requireError(t, e.do(t, "GET", "/v1/event-types/crm.order_paid?version=0", e.Key, nil), 400, meetsync.EINVALID, "version")
	requireError(t, e.do(t, "GET", "/v1/event-types/crm.order_paid?version=two", e.Key, nil), 400, meetsync.EINVALID, "version")
	requireError(t, e.do(t, "GET", "/v1/event-types/crm.nothing", e.Key, nil), 404, meetsync.ENOTFOUND, "")
	requireError(t, e.do(t, "GET", "/v1/event-types/meeting.bogus", e.Key, nil), 404, meetsync.ENOTFOUND, "")
	requireError(t, e.do(t, "GET", "/v1/event-types/Bad.Name", e.Key, nil), 400, meetsync.EINVALID, "name")

	// Built-in types: listed and readable one by one, not versioned.
	st := e.getType(t, e.Key, meetsync.TypeMeetingStatusChanged)
	if !st.Builtin || !st.Ingestible || !st.Debounce || st.Description == "" || st.Schema != nil || st.Version != 0 {
		t.Errorf("GET built-in = %+v", st)
	}
	requireError(t, e.do(t, "GET", "/v1/event-types/meeting.status_changed?version=1", e.Key, nil), 400, meetsync.EINVALID, "version")

	e.putType(t, e.Key, "alpha", map[string]any{"schema": true}, http.StatusCreated)
	l := e.listTypes(t, e.Key)
	if len(l.EventTypes) != len(meetsync.BuiltinTypes)+2 || strings.Join(l.ReservedNamespaces, ",") != strings.Join(meetsync.ReservedNamespaces, ",") {
		t.Fatalf("list has %d types (want %d) and reserved %v", len(l.EventTypes), len(meetsync.BuiltinTypes)+2, l.ReservedNamespaces)
	}
	for i, bt := range meetsync.BuiltinTypes {
		if got := l.EventTypes[i]; got.Name != bt.Name || !got.Builtin || got.Ingestible != bt.Ingestible {
			t.Errorf("list[%d] = %+v, want built-in %s", i, got, bt.Name)
		}
	}
	custom := l.EventTypes[len(meetsync.BuiltinTypes):]
	if custom[0].Name != "alpha" || string(custom[0].Schema) != "true" || custom[1].Name != "crm.order_paid" || custom[1].Version != 2 ||
		string(custom[1].Schema) != string(v2.Schema) || custom[1].Description != "Paid." {
		t.Errorf("custom types in the list = %+v", custom)
	}
}

// TestEventTypeRefused: a reserved namespace, a bad name, an invalid,
// missing or oversized schema, a bad body: each a clear 4xx naming the
// field, with nothing registered and nothing changed.
func TestEventTypeRefused(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.putType(t, e.Key, "crm.order_paid", map[string]any{"description": "kept", "schema": json.RawMessage(paidV1)}, http.StatusCreated)
	big := `{"description":"` + strings.Repeat("x", meetsync.MaxSchemaBytes) + `"}`
	for _, c := range []struct {
		name   string
		body   any
		status int
		code   string
		field  string
		msg    string
	}{
		{"meeting.custom", map[string]any{"schema": json.RawMessage(`{}`)}, 400, meetsync.EINVALID, "name", "reserved"},
		{"session.logged_in", map[string]any{"schema": json.RawMessage(`{}`)}, 400, meetsync.EINVALID, "name", "reserved"},
		{"invitation.sent", map[string]any{"schema": json.RawMessage(`{}`)}, 400, meetsync.EINVALID, "name", "reserved"},
		{"Crm.Order", map[string]any{"schema": json.RawMessage(`{}`)}, 400, meetsync.EINVALID, "name", "lowercase"},
		{"crm..order", map[string]any{"schema": json.RawMessage(`{}`)}, 400, meetsync.EINVALID, "name", "empty segment"},
		{"crm.order_paid", map[string]any{"schema": json.RawMessage(`{"type":"objekt"}`)}, 400, meetsync.EINVALID, "schema", "/type"},
		{"crm.order_paid", map[string]any{"schema": json.RawMessage(`{"properties":{"a":{"pattern":"(?<=x)"}}}`)}, 400, meetsync.EINVALID, "schema", "regex"},
		{"crm.order_paid", map[string]any{"schema": json.RawMessage(`{"$ref":"https://example.com/s.json"}`)}, 400, meetsync.EINVALID, "schema", "outside"},
		{"crm.order_paid", map[string]any{"schema": json.RawMessage(`[1]`)}, 400, meetsync.EINVALID, "schema", "JSON object"},
		{"crm.order_paid", map[string]any{"description": "no schema"}, 400, meetsync.EINVALID, "schema", "required"},
		{"crm.order_paid", map[string]any{"schema": json.RawMessage(big)}, 413, meetsync.ETOOLARGE, "schema", "limit"},
		{"crm.order_paid", map[string]any{"schema": json.RawMessage(`{}`), "debounce": "yes"}, 400, meetsync.EINVALID, "debounce", ""},
		{"crm.order_paid", map[string]any{"schema": json.RawMessage(`{}`), "version": 7}, 400, meetsync.EINVALID, "version", ""},
		{"crm.order_paid", `{"schema":`, 400, meetsync.EINVALID, "", ""},
		{"crm.order_paid", `{"schema":"` + strings.Repeat("x", meetsync.MaxBodyBytes) + `"}`, 413, meetsync.ETOOLARGE, "", ""},
	} {
		msg := requireError(t, e.do(t, "PUT", "/v1/event-types/"+c.name, e.Key, c.body), c.status, c.code, c.field)
		if !strings.Contains(msg, c.msg) {
			t.Errorf("PUT %s: message %q does not mention %q", c.name, msg, c.msg)
		}
	}
	custom := e.listTypes(t, e.Key).customTypes()
	if len(custom) != 1 || custom["crm.order_paid"].Version != 1 || custom["crm.order_paid"].Description != "kept" ||
		string(custom["crm.order_paid"].Schema) != paidV1Canonical {
		t.Fatalf("custom types after refused PUTs = %+v, want crm.order_paid version 1 unchanged", custom)
	}
	// No key, no registration.
	requireError(t, e.do(t, "PUT", "/v1/event-types/crm.x", "", map[string]any{"schema": true}), 401, meetsync.EUNAUTHORIZED, "")
}

// TestCustomEventValidation: ingest validates the data of registered
// custom types (a batch with one bad event is refused whole, the field
// pointing into it); events keep the schema version they were validated
// against, and a new version leaves them as they were.
func TestCustomEventValidation(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.putType(t, e.Key, "crm.order_paid", map[string]any{"schema": json.RawMessage(paidV1)}, http.StatusCreated)
	ev := func(user string, data string) map[string]any {
		return map[string]any{"type": "crm.order_paid", "user_id": user, "data": json.RawMessage(data)}
	}

	res := e.ingest(t, batch(ev("u1", `{"amount":10,"currency":"CNY"}`), ev("u2", `{"amount":0}`),
		map[string]any{"type": "crm.unregistered", "user_id": "u1", "data": map[string]any{"free": "form"}}))
	if len(res) != 3 {
		t.Fatalf("ingest results = %+v", res)
	}

	before := e.feedCount(t, e.Key)
	for _, c := range []struct {
		body  any
		field string
		rule  string
	}{
		{batch(ev("u1", `{"amount":1}`), ev("u1", `{"amount":2}`), ev("u1", `{"amount":-3}`)), "events[2].data.amount", "minimum"},
		{batch(ev("u1", `{"amount":1}`), ev("u1", `{"currency":"CNY"}`)), "events[1].data.amount", "missing property 'amount'"},
		{ev("u1", `{"amount":"ten"}`), "data.amount", "type"},
		{ev("u1", `{"amount":1,"currency":7}`), "data.currency", "type"},
		{map[string]any{"type": "crm.order_paid", "user_id": "u1"}, "data.amount", "missing property"},
	} {
		msg := requireError(t, e.do(t, "POST", "/v1/events", e.Key, c.body), 400, meetsync.EINVALID, c.field)
		if !strings.Contains(msg, "crm.order_paid") || !strings.Contains(msg, "version 1") || !strings.Contains(msg, c.rule) {
			t.Errorf("%s: message %q does not name the type, its version and %q", c.field, msg, c.rule)
		}
	}
	if n := e.feedCount(t, e.Key); n != before {
		t.Fatalf("refused requests changed the feed: %d events, want %d", n, before)
	}

	// Version 2 requires a currency and an integer amount.
	e.putType(t, e.Key, "crm.order_paid", map[string]any{"schema": json.RawMessage(
		`{"type":"object","properties":{"amount":{"type":"integer"}},"required":["amount","currency"]}`)}, http.StatusOK)
	requireError(t, e.do(t, "POST", "/v1/events", e.Key, ev("u3", `{"amount":10}`)), 400, meetsync.EINVALID, "data.currency")
	e.ingest(t, ev("u3", `{"amount":10,"currency":"USD"}`))

	// The feed keeps every event as it was, with its version: the events
	// of version 1 are never validated again (u2's has no currency, which
	// version 2 requires, and stays as it was).
	feed := e.feedAll(t, e.Key, "type=crm.*", 100)
	want := []struct {
		user, data string
		version    int
	}{
		{"u1", `{"amount":10,"currency":"CNY"}`, 1},
		{"u2", `{"amount":0}`, 1},
		{"u1", `{"free":"form"}`, 0},
		{"u3", `{"amount":10,"currency":"USD"}`, 2},
	}
	if len(feed) != len(want) {
		t.Fatalf("feed has %d custom events, want %d", len(feed), len(want))
	}
	for i, w := range want {
		if feed[i].UserID != w.user || string(feed[i].Data) != w.data || feed[i].SchemaVersion != w.version {
			t.Errorf("feed[%d] = %s %s version %d, want %s %s version %d", i, feed[i].UserID, feed[i].Data, feed[i].SchemaVersion, w.user, w.data, w.version)
		}
	}
	// The stream shows the same.
	s := e.openStream(t, e.Key, "after=0&type=crm.order_paid", "")
	if got := s.next(t, 10*time.Second).event(t); got.SchemaVersion != 1 || got.UserID != "u1" {
		t.Errorf("first streamed event = %+v, want u1's with version 1", got)
	}
}

// TestEventTypesPerApp: an app sees and enforces only its own types;
// another app may register the same name with its own schema.
func TestEventTypesPerApp(t *testing.T) {
	t.Parallel()
	e := setup(t)
	_, otherKey, _ := e.newApp(t, "other-"+strings.ToLower(t.Name()))
	e.putType(t, e.Key, "crm.order_paid", map[string]any{"schema": json.RawMessage(paidV1)}, http.StatusCreated)

	if custom := e.listTypes(t, otherKey).customTypes(); len(custom) != 0 {
		t.Errorf("the other app sees %+v", custom)
	}
	requireError(t, e.do(t, "GET", "/v1/event-types/crm.order_paid", otherKey, nil), 404, meetsync.ENOTFOUND, "")
	// Not registered for the other app: accepted unchecked.
	if res := e.ingestAs(t, otherKey, map[string]any{"type": "crm.order_paid", "user_id": "u1", "data": map[string]any{"amount": "free"}}); len(res) != 1 {
		t.Fatalf("other app ingest = %+v", res)
	}
	// Its own registration of the same name is its own version 1.
	mine := e.putType(t, otherKey, "crm.order_paid", map[string]any{"schema": json.RawMessage(`{"required":["sku"]}`)}, http.StatusCreated)
	if mine.Version != 1 {
		t.Errorf("other app's type = %+v", mine)
	}
	requireError(t, e.do(t, "POST", "/v1/events", otherKey, map[string]any{"type": "crm.order_paid", "user_id": "u1", "data": map[string]any{"amount": 1}}),
		400, meetsync.EINVALID, "data.sku")
	e.ingest(t, map[string]any{"type": "crm.order_paid", "user_id": "u1", "data": map[string]any{"amount": 1}})
	if got := e.getType(t, e.Key, "crm.order_paid"); got.Version != 1 || string(got.Schema) != paidV1Canonical {
		t.Errorf("first app's type changed: %+v", got)
	}
}

// TestStrictEventTypes: with strict_event_types on (PATCH /v1/app), an
// unregistered custom type is refused naming events[i].type; registered
// types and built-ins are unaffected; turning it off accepts them again.
func TestStrictEventTypes(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.putType(t, e.Key, "crm.order_paid", map[string]any{"schema": json.RawMessage(paidV1)}, http.StatusCreated)
	unregistered := map[string]any{"type": "crm.typo", "user_id": "u1"}
	e.ingest(t, unregistered)

	patch := func(on bool) {
		t.Helper()
		r := e.do(t, "PATCH", "/v1/app", e.Key, map[string]any{"strict_event_types": on})
		var app struct {
			Strict bool `json:"strict_event_types"`
		}
		if r.Status != http.StatusOK || json.Unmarshal(r.Body, &app) != nil || app.Strict != on {
			t.Fatalf("PATCH /v1/app strict_event_types=%v: %s", on, r)
		}
	}
	patch(true)
	before := e.feedCount(t, e.Key)
	msg := requireError(t, e.do(t, "POST", "/v1/events", e.Key, batch(
		map[string]any{"type": "crm.order_paid", "user_id": "u1", "data": map[string]any{"amount": 1}},
		statusEvent("u1", "d1", 1, "in_meeting"),
		unregistered)), 400, meetsync.EINVALID, "events[2].type")
	if !strings.Contains(msg, "strict_event_types") || !strings.Contains(msg, "PUT /v1/event-types/crm.typo") {
		t.Errorf("strict refusal message %q", msg)
	}
	if n := e.feedCount(t, e.Key); n != before {
		t.Fatalf("a refused batch changed the feed")
	}
	e.ingest(t, batch(map[string]any{"type": "crm.order_paid", "user_id": "u1", "data": map[string]any{"amount": 1}},
		statusEvent("u1", "d1", 1, "in_meeting")))

	patch(false)
	e.ingest(t, unregistered)
}
