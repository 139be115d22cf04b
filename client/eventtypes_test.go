package client_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/client"
)

// The schemas of TestEventTypes as sent (indented, keys in any order) and
// in the server's canonical form (compact, keys sorted).
const (
	orderV1 = `{
		"type": "object",
		"required": ["order_id", "amount"],
		"properties": {"order_id": {"type": "string"}, "amount": {"type": "integer", "minimum": 1}}
	}`
	orderV1Canonical = `{"properties":{"amount":{"minimum":1,"type":"integer"},"order_id":{"type":"string"}},"required":["order_id","amount"],"type":"object"}`
	orderV2          = `{"type":"object","required":["order_id","amount"],"properties":{"order_id":{"type":"string"},"amount":{"type":"integer","minimum":10}}}`
	orderV2Canonical = `{"properties":{"amount":{"minimum":10,"type":"integer"},"order_id":{"type":"string"}},"required":["order_id","amount"],"type":"object"}`
)

// TestEventTypes: PUT and GET /v1/event-types/{name} — create, repeat,
// a new version, reading old versions, errors, and validation on ingest.
func TestEventTypes(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := context.Background()
	app := s.app()
	const name = "crm.order_paid"

	// Create: 201, version 1, the schema in canonical form.
	et, created, err := app.PutEventType(ctx, name, client.EventTypeParams{Description: "An order was paid.", Schema: json.RawMessage(orderV1)})
	if err != nil {
		t.Fatal(err)
	}
	if !created {
		t.Fatal("first put: created = false")
	}
	if et.Name != name || et.Description != "An order was paid." || et.Builtin || !et.Ingestible || et.Debounce ||
		et.Version != 1 || et.LatestVersion != 1 || string(et.Schema) != orderV1Canonical {
		t.Fatalf("created type = %+v (schema %s)", et, et.Schema)
	}
	if et.CreatedAt.IsZero() || et.UpdatedAt.IsZero() || et.VersionCreatedAt.IsZero() {
		t.Fatalf("created type without its times: %+v", et)
	}
	first := *et

	// The same body again (re-indented: not a change): 200, nothing changes.
	again := client.EventTypeParams{Description: "An order was paid.", Schema: json.RawMessage(orderV1Canonical)}
	et, created, err = app.PutEventType(ctx, name, again)
	if err != nil {
		t.Fatal(err)
	}
	if created || et.Version != 1 || et.LatestVersion != 1 || !et.UpdatedAt.Equal(first.UpdatedAt) || string(et.Schema) != orderV1Canonical {
		t.Fatalf("repeated put: created %v, type %+v", created, et)
	}

	// A changed schema makes version 2; the type keeps its creation time.
	et, created, err = app.PutEventType(ctx, name, client.EventTypeParams{Description: "Paid.", Schema: json.RawMessage(orderV2), Debounce: true})
	if err != nil {
		t.Fatal(err)
	}
	if created || et.Version != 2 || et.LatestVersion != 2 || !et.Debounce || et.Description != "Paid." ||
		string(et.Schema) != orderV2Canonical || !et.CreatedAt.Equal(first.CreatedAt) {
		t.Fatalf("second version: created %v, type %+v (schema %s)", created, et, et.Schema)
	}

	// GET: the latest version, and version 1 on request.
	latest, err := app.GetEventType(ctx, name, 0)
	if err != nil {
		t.Fatal(err)
	}
	if latest.Version != 2 || latest.LatestVersion != 2 || string(latest.Schema) != orderV2Canonical || !latest.Debounce {
		t.Fatalf("latest = %+v (schema %s)", latest, latest.Schema)
	}
	v1, err := app.GetEventType(ctx, name, 1)
	if err != nil {
		t.Fatal(err)
	}
	if v1.Version != 1 || v1.LatestVersion != 2 || string(v1.Schema) != orderV1Canonical || !v1.VersionCreatedAt.Equal(first.VersionCreatedAt) {
		t.Fatalf("version 1 = %+v (schema %s)", v1, v1.Schema)
	}
	_, err = app.GetEventType(ctx, name, 3)
	requireCode(t, err, meetsync.ENOTFOUND, "")
	_, err = app.GetEventType(ctx, name, -1)
	requireCode(t, err, meetsync.EINVALID, "version")
	_, err = app.GetEventType(ctx, "crm.never_registered", 0)
	requireCode(t, err, meetsync.ENOTFOUND, "")
	bt, err := app.GetEventType(ctx, meetsync.TypeMeetingStatusChanged, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !bt.Builtin || !bt.Debounce || bt.Version != 0 || bt.Schema != nil {
		t.Fatalf("built-in type = %+v", bt)
	}

	// The list shows the custom type with its current schema.
	types, _, err := app.EventTypes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var listed *client.EventType
	for i := range types {
		if types[i].Name == name {
			listed = &types[i]
		}
	}
	if listed == nil || listed.Builtin || listed.Version != 2 || string(listed.Schema) != orderV2Canonical {
		t.Fatalf("listed custom type = %+v", listed)
	}

	// Refused puts.
	_, _, err = app.PutEventType(ctx, "session.custom", client.EventTypeParams{Schema: json.RawMessage(`true`)})
	requireCode(t, err, meetsync.EINVALID, "name")
	_, _, err = app.PutEventType(ctx, "crm.bad_schema", client.EventTypeParams{Schema: json.RawMessage(`{"type":"nonsense"}`)})
	requireCode(t, err, meetsync.EINVALID, "schema")
	_, _, err = app.PutEventType(ctx, "crm.no_schema", client.EventTypeParams{Description: "no schema"})
	requireCode(t, err, meetsync.EINVALID, "schema")
	_, err = app.GetEventType(ctx, "crm.bad_schema", 0)
	requireCode(t, err, meetsync.ENOTFOUND, "") // nothing stored by a refused put

	// Ingest validates against the current version (minimum 10) and
	// names the failing value.
	_, err = app.PostEvent(ctx, meetsync.EventInput{Type: name, UserID: "u1", Data: json.RawMessage(`{"order_id":"o-1","amount":5}`)})
	requireCode(t, err, meetsync.EINVALID, "data.amount")
	_, err = app.PostEvents(ctx, []meetsync.EventInput{
		{Type: name, UserID: "u1", Data: json.RawMessage(`{"order_id":"o-1","amount":12}`)},
		{Type: name, UserID: "u1", Data: json.RawMessage(`{"amount":12}`)},
	})
	requireCode(t, err, meetsync.EINVALID, "events[1].data.order_id")
	if evs := s.events(t, "u1", name); len(evs) != 0 {
		t.Fatalf("%d events stored by refused posts", len(evs))
	}
	if _, err := app.PostEvent(ctx, meetsync.EventInput{Type: name, UserID: "u1", Data: json.RawMessage(`{"order_id":"o-1","amount":12}`)}); err != nil {
		t.Fatal(err)
	}
	evs := s.events(t, "u1", name)
	if len(evs) != 1 || evs[0].SchemaVersion != 2 {
		t.Fatalf("stored events = %+v", evs)
	}
}

// TestAppEventTypeSettings: the settings of PATCH /v1/app beyond the
// session ones — strict_event_types, retention, reconcile_grace — are
// set by UpdateApp, read back by GetApp, and take effect.
func TestAppEventTypeSettings(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := context.Background()
	app := s.app()

	a, err := app.GetApp(ctx)
	if err != nil {
		t.Fatal(err)
	}
	def := meetsync.DefaultAppSettings()
	if a.StrictEventTypes || a.Retention != def.Retention || a.ReconcileGrace != def.ReconcileGrace || a.CallbackPaths[meetsync.ProviderSim] == "" {
		t.Fatalf("default app = %+v", a)
	}
	// Off: an unregistered custom type is accepted unchecked.
	if _, err := app.PostEvent(ctx, meetsync.EventInput{Type: "crm.unregistered", UserID: "u1"}); err != nil {
		t.Fatal(err)
	}

	a, err = app.UpdateApp(ctx, client.AppParams{StrictEventTypes: client.Ptr(true),
		Retention: client.Ptr(client.Duration(48 * time.Hour)), ReconcileGrace: client.Ptr(client.Duration(10 * time.Second))})
	if err != nil {
		t.Fatal(err)
	}
	if !a.StrictEventTypes || time.Duration(a.Retention) != 48*time.Hour || time.Duration(a.ReconcileGrace) != 10*time.Second {
		t.Fatalf("updated app = %+v", a)
	}
	a, err = app.GetApp(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !a.StrictEventTypes || time.Duration(a.Retention) != 48*time.Hour || time.Duration(a.ReconcileGrace) != 10*time.Second {
		t.Fatalf("app read back = %+v", a)
	}

	// Strict: an unregistered custom type is refused, a registered one
	// accepted, built-in types are unaffected.
	_, err = app.PostEvent(ctx, meetsync.EventInput{Type: "crm.unregistered", UserID: "u1"})
	requireCode(t, err, meetsync.EINVALID, "type")
	if _, _, err := app.PutEventType(ctx, "crm.registered", client.EventTypeParams{Schema: json.RawMessage(`true`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := app.PostEvent(ctx, meetsync.EventInput{Type: "crm.registered", UserID: "u1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := app.PostEvent(ctx, statusEvent("u1", "d1", 1, "in_meeting")); err != nil {
		t.Fatal(err)
	}

	// Fields left nil keep their value; a pointer to zero is sent.
	a, err = app.UpdateApp(ctx, client.AppParams{Retention: client.Ptr(client.Duration(0))})
	if err != nil {
		t.Fatal(err)
	}
	if a.Retention != 0 || !a.StrictEventTypes || time.Duration(a.ReconcileGrace) != 10*time.Second {
		t.Fatalf("app after resetting retention = %+v", a)
	}
	a, err = app.UpdateApp(ctx, client.AppParams{StrictEventTypes: client.Ptr(false)})
	if err != nil || a.StrictEventTypes {
		t.Fatalf("app after turning strict off = %+v, %v", a, err)
	}
	if _, err := app.PostEvent(ctx, meetsync.EventInput{Type: "crm.unregistered", UserID: "u1"}); err != nil {
		t.Fatal(err)
	}

	_, err = app.UpdateApp(ctx, client.AppParams{Retention: client.Ptr(client.Duration(30 * time.Minute))})
	requireCode(t, err, meetsync.EINVALID, "retention")
	_, err = app.UpdateApp(ctx, client.AppParams{ReconcileGrace: client.Ptr(client.Duration(2 * time.Hour))})
	requireCode(t, err, meetsync.EINVALID, "reconcile_grace")
}
