package schema_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/schema"
	"github.com/meetsync/meetsync/sqlite"
)

var ctx = context.Background()

// clock is a settable clock for the registries' caches.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type env struct {
	DB    *sqlite.DB
	R     *schema.Registry
	Clock *clock
	App   string

	closeOnce sync.Once
}

// closeDB closes the store (once).
func (e *env) closeDB() { e.closeOnce.Do(func() { e.DB.Close() }) }

// setup opens a real SQLite store with one app and a Registry over it.
func setup(t *testing.T) *env {
	t.Helper()
	db, err := sqlite.Open(filepath.Join(t.TempDir(), "meetsync.db"), sqlite.Config{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	e := &env{DB: db, Clock: &clock{now: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}}
	t.Cleanup(e.closeDB)
	e.R = e.registry()
	e.App = e.newApp(t, "app1")
	return e
}

// registry returns another Registry over the same store (another replica).
func (e *env) registry() *schema.Registry {
	return schema.New(e.DB, e.DB, schema.Config{CacheTTL: 5 * time.Second, Now: e.Clock.Now})
}

func (e *env) newApp(t *testing.T, name string) string {
	t.Helper()
	app := &meetsync.App{ID: meetsync.NewID("app"), Name: name, CreatedAt: e.Clock.Now()}
	k, _ := meetsync.NewAPIKey(app.ID, app.CreatedAt)
	if err := e.DB.AppCreate(ctx, app, k); err != nil {
		t.Fatalf("create app: %v", err)
	}
	return app.ID
}

func (e *env) put(t *testing.T, name, description, schemaJSON string, debounce bool) (*meetsync.EventType, bool) {
	t.Helper()
	et, created, err := e.R.EventTypePut(ctx, &meetsync.EventTypePutParams{AppID: e.App, Name: name, Description: description,
		Schema: json.RawMessage(schemaJSON), Debounce: debounce, Now: e.Clock.Now()})
	if err != nil {
		t.Fatalf("put %s: %v", name, err)
	}
	return et, created
}

func (e *env) check(r *schema.Registry, typ, data, prefix string) (int, error) {
	return r.CheckCustomEvent(e.App, typ, json.RawMessage(data), prefix)
}

const orderSchema = `{
  "type": "object",
  "properties": {
    "amount":   {"type": "number", "minimum": 0},
    "currency": {"enum": ["CNY", "USD"]},
    "paid_at":  {"type": "string", "format": "date-time"},
    "items":    {"type": "array", "items": {"$ref": "#/$defs/item"}},
    "pay":      {"anyOf": [{"type": "string"}, {"type": "object", "required": ["channel"]}]}
  },
  "required": ["amount"],
  "additionalProperties": false,
  "$defs": {"item": {"type": "object", "properties": {"sku": {"type": "string", "pattern": "^[A-Z0-9-]+$"}}, "required": ["sku"]}}
}`

// TestValidation: good data passes with the type's version; bad data is
// an EINVALID error whose field points at the failing value under the
// event's data and whose message names the type, version and rule.
func TestValidation(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.put(t, "crm.order_paid", "an order was paid", orderSchema, false)

	for _, good := range []string{
		`{"amount":0}`,
		`{"amount":12.5,"currency":"CNY","paid_at":"2026-05-01T12:00:00Z","items":[{"sku":"A-1"},{"sku":"B2"}],"pay":"alipay"}`,
		`{"amount":1e3,"pay":{"channel":"card"}}`,
	} {
		if v, err := e.check(e.R, "crm.order_paid", good, "events[0]"); err != nil || v != 1 {
			t.Errorf("%s: version %d, %v; want version 1 and no error", good, v, err)
		}
	}
	for _, c := range []struct {
		data, prefix, field, rule string
	}{
		{`{"amount":-5}`, "events[2]", "events[2].data.amount", "minimum"},
		{`{"amount":"5"}`, "", "data.amount", "type: got string, want number"},
		{`{}`, "events[0]", "events[0].data.amount", "missing property 'amount'"},
		{`{"amount":1,"currency":"EUR"}`, "", "data.currency", "enum"},
		{`{"amount":1,"paid_at":"yesterday"}`, "", "data.paid_at", "date-time"},
		{`{"amount":1,"items":[{"sku":"A"},{"sku":"bad sku"}]}`, "events[7]", "events[7].data.items[1].sku", "pattern"},
		{`{"amount":1,"items":[{"sku":"A"},{}]}`, "", "data.items[1].sku", "missing property 'sku'"},
		{`{"amount":1,"items":[3]}`, "", "data.items[0]", "want object"},
		{`{"amount":1,"tip":2}`, "", "data.tip", "additionalProperties"},
		{`{"amount":1,"a.b c":2}`, "", `data["a.b c"]`, "additionalProperties"},
		{`{"amount":1,"pay":{"card":"x"}}`, "", "data.pay", "anyOf: no alternative matched"},
	} {
		v, err := e.check(e.R, "crm.order_paid", c.data, c.prefix)
		if meetsync.ErrorCode(err) != meetsync.EINVALID || meetsync.ErrorField(err) != c.field {
			t.Errorf("%s: version %d, error %v; want invalid on %s", c.data, v, err, c.field)
			continue
		}
		msg := meetsync.ErrorMessage(err)
		if !strings.Contains(msg, "crm.order_paid") || !strings.Contains(msg, "version 1") || !strings.Contains(msg, c.rule) {
			t.Errorf("%s: message %q does not name the type, version 1 and %q", c.data, msg, c.rule)
		}
	}
}

// TestUnregistered: an unregistered custom type is accepted unchecked
// (version 0) unless the app turned strict_event_types on; the setting
// applies once the registry forgets the app (PATCH /v1/app does that).
func TestUnregistered(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.put(t, "crm.known", "", `{"type":"object"}`, false)
	if v, err := e.check(e.R, "crm.unknown", `{"anything":[1]}`, "events[1]"); err != nil || v != 0 {
		t.Fatalf("unregistered type: version %d, %v; want 0 and accepted", v, err)
	}
	set, err := e.DB.AppSettingsGet(ctx, e.App)
	if err != nil {
		t.Fatal(err)
	}
	set.StrictEventTypes = true
	if err := e.DB.AppSettingsPut(ctx, e.App, set); err != nil {
		t.Fatal(err)
	}
	e.R.Forget(e.App)
	_, err = e.check(e.R, "crm.unknown", `{}`, "events[1]")
	if meetsync.ErrorCode(err) != meetsync.EINVALID || meetsync.ErrorField(err) != "events[1].type" ||
		!strings.Contains(meetsync.ErrorMessage(err), "PUT /v1/event-types/crm.unknown") {
		t.Fatalf("strict app, unregistered type: %v; want invalid on events[1].type telling how to register", err)
	}
	if _, err := e.check(e.R, "crm.unknown", `{}`, ""); meetsync.ErrorField(err) != "type" {
		t.Errorf("single event: field %q, want type", meetsync.ErrorField(err))
	}
	if v, err := e.check(e.R, "crm.known", `{}`, ""); err != nil || v != 1 {
		t.Errorf("strict app, registered type: %d %v", v, err)
	}
	// Another app is not strict.
	other := e.newApp(t, "app2")
	if v, err := e.R.CheckCustomEvent(other, "crm.unknown", json.RawMessage(`{}`), ""); err != nil || v != 0 {
		t.Errorf("other app: %d %v", v, err)
	}
}

// TestVersioning: a changed schema is version 2 and enforced at once by
// the registry that put it; the old version stays readable; a schema
// equal up to formatting and key order makes no version; another replica
// (another Registry on the same store) follows within its CacheTTL.
func TestVersioning(t *testing.T) {
	t.Parallel()
	e := setup(t)
	replica := e.registry()
	// In canonical form (keys sorted), as the store keeps them.
	v1 := `{"properties":{"amount":{"type":"number"}},"type":"object"}`
	v2 := `{"properties":{"amount":{"type":"integer"}},"required":["amount"],"type":"object"}`
	et, created := e.put(t, "crm.order_paid", "paid", v1, false)
	if !created || et.Version != 1 {
		t.Fatalf("first put: %+v %v", et, created)
	}
	if v, err := e.check(replica, "crm.order_paid", `{"amount":1.5}`, ""); err != nil || v != 1 {
		t.Fatalf("replica, version 1: %d %v", v, err)
	}

	// The same schema, reformatted and reordered: no new version.
	et, created = e.put(t, "crm.order_paid", "paid", "{\n  \"type\": \"object\",\n  \"properties\": {\"amount\": {\"type\": \"number\"}}\n}", false)
	if created || et.Version != 1 || string(et.Schema) != v1 {
		t.Fatalf("reformatted put = %+v %v, want version 1 unchanged", et, created)
	}

	e.Clock.Advance(time.Second)
	et, _ = e.put(t, "crm.order_paid", "paid", v2, false)
	if et.Version != 2 {
		t.Fatalf("changed schema = version %d, want 2", et.Version)
	}
	if _, err := e.check(e.R, "crm.order_paid", `{"amount":1.5}`, ""); meetsync.ErrorField(err) != "data.amount" ||
		!strings.Contains(meetsync.ErrorMessage(err), "version 2") {
		t.Errorf("version 2 not enforced at once: %v", err)
	}
	if v, err := e.check(e.R, "crm.order_paid", `{"amount":2}`, ""); err != nil || v != 2 {
		t.Errorf("version 2, good data: %d %v", v, err)
	}
	old, err := e.R.EventTypeGet(ctx, e.App, "crm.order_paid", 1)
	if err != nil || string(old.Schema) != v1 || old.LatestVersion != 2 {
		t.Errorf("version 1 = %+v %v", old, err)
	}

	// The replica still has version 1 until its cache expires.
	if v, err := e.check(replica, "crm.order_paid", `{"amount":1.5}`, ""); err != nil || v != 1 {
		t.Errorf("replica inside its TTL: %d %v, want version 1", v, err)
	}
	e.Clock.Advance(5 * time.Second)
	if _, err := e.check(replica, "crm.order_paid", `{"amount":1.5}`, ""); !strings.Contains(meetsync.ErrorMessage(err), "version 2") {
		t.Errorf("replica after its TTL: %v, want version 2 enforced", err)
	}
}

// TestPutRefused: bad names, reserved namespaces, bad descriptions and bad
// or oversized schemas are refused with the field at fault, and nothing is
// stored.
func TestPutRefused(t *testing.T) {
	t.Parallel()
	e := setup(t)
	big := `{"description":"` + strings.Repeat("x", meetsync.MaxSchemaBytes) + `"}`
	for _, c := range []struct {
		name, description, schema string
		code, field, msg          string
	}{
		{"", "", `{}`, meetsync.EINVALID, "name", "required"},
		{"Crm.order", "", `{}`, meetsync.EINVALID, "name", "lowercase"},
		{"crm..order", "", `{}`, meetsync.EINVALID, "name", "empty segment"},
		{"crm.*", "", `{}`, meetsync.EINVALID, "name", ""},
		{"1crm.order", "", `{}`, meetsync.EINVALID, "name", ""},
		{strings.Repeat("a", 129), "", `{}`, meetsync.EINVALID, "name", "128"},
		{"meeting.custom", "", `{}`, meetsync.EINVALID, "name", "meeting.* is reserved"},
		{"session.logged_in", "", `{}`, meetsync.EINVALID, "name", "session.* is reserved"},
		{"delivery", "", `{}`, meetsync.EINVALID, "name", "reserved"},
		{"crm.order", strings.Repeat("d", meetsync.MaxTypeDescriptionBytes+1), `{}`, meetsync.EINVALID, "description", "longer"},
		{"crm.order", "", ``, meetsync.EINVALID, "schema", "required"},
		{"crm.order", "", `null`, meetsync.EINVALID, "schema", "required"},
		{"crm.order", "", `"object"`, meetsync.EINVALID, "schema", "JSON object"},
		{"crm.order", "", `{"type":"objekt"}`, meetsync.EINVALID, "schema", "/type"},
		{"crm.order", "", `{"minimum":"0"}`, meetsync.EINVALID, "schema", "/minimum"},
		{"crm.order", "", `{"pattern":"(?=lookahead)"}`, meetsync.EINVALID, "schema", "regex"},
		{"crm.order", "", `{"$ref":"#/$defs/missing"}`, meetsync.EINVALID, "schema", "not found"},
		{"crm.order", "", `{"$ref":"file:///etc/passwd"}`, meetsync.EINVALID, "schema", "references outside the schema"},
		{"crm.order", "", `{"$ref":"https://example.com/order.json"}`, meetsync.EINVALID, "schema", "references outside the schema"},
		{"crm.order", "", `{"type":`, meetsync.EINVALID, "schema", "not valid JSON"},
		{"crm.order", "", `{"$schema":"http://json-schema.org/draft-03/schema#"}`, meetsync.EINVALID, "schema", "not a JSON Schema draft meetsync supports"},
		{"crm.order", "", `{"$schema":"https://example.com/my-meta.json"}`, meetsync.EINVALID, "schema", "not a JSON Schema draft meetsync supports"},
		{"crm.order", "", `{"$schema":7}`, meetsync.EINVALID, "schema", "$schema"},
		{"crm.order", "", big, meetsync.ETOOLARGE, "schema", "limit"},
	} {
		_, _, err := e.R.EventTypePut(ctx, &meetsync.EventTypePutParams{AppID: e.App, Name: c.name, Description: c.description,
			Schema: json.RawMessage(c.schema), Now: e.Clock.Now()})
		label := fmt.Sprintf("put %.40q %.40q", c.name, c.schema)
		if meetsync.ErrorCode(err) != c.code || meetsync.ErrorField(err) != c.field || !strings.Contains(meetsync.ErrorMessage(err), c.msg) {
			t.Errorf("%s: %v; want %s on %s mentioning %q", label, err, c.code, c.field, c.msg)
		}
	}
	if list, err := e.R.EventTypeList(ctx, e.App); err != nil || len(list) != 0 {
		t.Errorf("types after refused puts: %+v %v, want none", list, err)
	}
	// Just under the limit is fine (the limit is on the compact form).
	okBig := `{"description": "` + strings.Repeat("x", meetsync.MaxSchemaBytes-len(`{"description":""}`)) + `"}`
	if _, _, err := e.R.EventTypePut(ctx, &meetsync.EventTypePutParams{AppID: e.App, Name: "crm.big", Schema: json.RawMessage(okBig), Now: e.Clock.Now()}); err != nil {
		t.Errorf("schema of exactly %d compact bytes: %v", meetsync.MaxSchemaBytes, err)
	}
}

// TestOtherDrafts: a schema declaring an older draft is read by its rules;
// true and false schemas work.
func TestOtherDrafts(t *testing.T) {
	t.Parallel()
	e := setup(t)
	// In draft-07, "dependencies" is a keyword (2020-12 ignores it).
	e.put(t, "crm.d7", "", `{"$schema":"http://json-schema.org/draft-07/schema#","dependencies":{"a":["b"]}}`, false)
	if _, err := e.check(e.R, "crm.d7", `{"a":1}`, ""); meetsync.ErrorField(err) != "data.b" {
		t.Errorf("draft-07 dependencies: %v, want invalid on data.b", err)
	}
	e.put(t, "crm.any", "", `true`, false)
	e.put(t, "crm.none", "", `false`, false)
	if v, err := e.check(e.R, "crm.any", `{"x":1}`, ""); err != nil || v != 1 {
		t.Errorf("true schema: %d %v", v, err)
	}
	if _, err := e.check(e.R, "crm.none", `{}`, ""); meetsync.ErrorField(err) != "data" {
		t.Errorf("false schema: %v, want invalid on data", err)
	}
}

// TestStoreFailure: when the store fails, a registry rides out on the
// types it knows (for another TTL); with nothing known, the check fails
// (an internal error: nothing is let in unchecked).
func TestStoreFailure(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.put(t, "crm.order_paid", "", `{"required":["amount"]}`, false)
	if _, err := e.check(e.R, "crm.order_paid", `{}`, ""); meetsync.ErrorCode(err) != meetsync.EINVALID {
		t.Fatalf("before the failure: %v", err)
	}
	fresh := e.registry()
	e.closeDB()
	e.Clock.Advance(time.Minute)
	if _, err := e.check(e.R, "crm.order_paid", `{}`, ""); meetsync.ErrorField(err) != "data.amount" {
		t.Errorf("store down, cached types: %v; want the cached schema enforced", err)
	}
	if v, err := e.check(e.R, "crm.order_paid", `{"amount":1}`, ""); err != nil || v != 1 {
		t.Errorf("store down, cached types, good data: %d %v", v, err)
	}
	if _, err := e.check(fresh, "crm.order_paid", `{"amount":1}`, ""); meetsync.ErrorCode(err) != meetsync.EINTERNAL {
		t.Errorf("store down, nothing cached: %v; want an internal error", err)
	}
}

// TestConcurrentChecks: checks from many goroutines while the schema
// changes see one version or the other, never a mix (run with -race).
func TestConcurrentChecks(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.put(t, "crm.n", "", `{"properties":{"n":{"maximum":0}}}`, false)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				v, err := e.check(e.R, "crm.n", `{"n":1}`, "")
				// Version 1 refuses n=1 (maximum 0); version 2 and later accept it.
				if (v == 0 && err == nil) || (err != nil && !strings.Contains(meetsync.ErrorMessage(err), "version 1")) || (err == nil && v < 2) {
					errs <- fmt.Errorf("check = %d, %v", v, err)
					return
				}
			}
		}()
	}
	for i := 2; i <= 20; i++ {
		e.put(t, "crm.n", "", fmt.Sprintf(`{"properties":{"n":{"maximum":%d}}}`, i), false)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
