package schema_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/schema"
	"github.com/meetsync/meetsync/sqlite"
)

// FuzzCheckCustomEvent: whatever the data, a check never panics, and it
// either accepts with the type's version or refuses with an EINVALID error
// whose field lies under the event's data.
func FuzzCheckCustomEvent(f *testing.F) {
	db, err := sqlite.Open(filepath.Join(f.TempDir(), "meetsync.db"), sqlite.Config{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { db.Close() })
	app := &meetsync.App{ID: meetsync.NewID("app"), Name: "fuzz"}
	k, _ := meetsync.NewAPIKey(app.ID, app.CreatedAt)
	if err := db.AppCreate(ctx, app, k); err != nil {
		f.Fatal(err)
	}
	r := schema.New(db, nil, schema.Config{})
	if _, _, err := r.EventTypePut(ctx, &meetsync.EventTypePutParams{AppID: app.ID, Name: "crm.order_paid", Schema: json.RawMessage(orderSchema)}); err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{`{"amount":1}`, `{}`, `{"amount":-1,"items":[{"sku":"x y"},7]}`, `{"a.b":{"c":[1]}}`,
		`{"pay":{"x":1},"amount":1}`, `{"amount":1e999}`, `{"amount":`, `[]`, `{"amount":1,"paid_at":"2026-13-01T00:00:00Z"}`} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data string) {
		v, err := r.CheckCustomEvent(app.ID, "crm.order_paid", json.RawMessage(data), "events[1]")
		if err == nil {
			if v != 1 {
				t.Fatalf("accepted %q as version %d", data, v)
			}
			return
		}
		if meetsync.ErrorCode(err) != meetsync.EINVALID || !strings.HasPrefix(meetsync.ErrorField(err), "events[1].data") {
			t.Fatalf("%q: %v, want invalid under events[1].data", data, err)
		}
	})
}
