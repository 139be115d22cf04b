package meetsync_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/meetsync/meetsync"
)

func TestCheckCustomTypeName(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"crm.order_paid", "myapp", "_x.y-z", "a.b.c.d", "order.v2", strings.Repeat("a", 128), "meetings.x", "crm.meeting"} {
		if err := meetsync.CheckCustomTypeName(ok, "name"); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for name, msg := range map[string]string{
		"": "required", "Crm.a": "lowercase", "crm..a": "empty segment", "crm.": "empty segment", "1crm": "lowercase",
		"crm.*": "lowercase", "crm a": "lowercase", strings.Repeat("a", 129): "128",
		"meeting.custom": "meeting.* is reserved", "session": "session.* is reserved", "delivery.x.y": "delivery.* is reserved",
		"meeting.status_changed": "reserved",
	} {
		err := meetsync.CheckCustomTypeName(name, "name")
		if meetsync.ErrorCode(err) != meetsync.EINVALID || meetsync.ErrorField(err) != "name" || !strings.Contains(meetsync.ErrorMessage(err), msg) {
			t.Errorf("%.20q: %v, want invalid on name mentioning %q", name, err, msg)
		}
	}
}

// versioned is a TypeChecker that accepts everything as version 3.
type versioned struct{}

func (versioned) CheckCustomEvent(appID, typ string, data json.RawMessage, prefix string) (int, error) {
	return 3, nil
}

// TestSchemaVersion: PrepareEvent records the checker's version; the
// public JSON and the webhook body carry it only when set.
func TestSchemaVersion(t *testing.T) {
	t.Parallel()
	ev, err := prepare(&meetsync.EventInput{Type: "crm.a", UserID: "u"}, func(p *meetsync.PrepareParams) { p.Types = versioned{} })
	if err != nil || ev.SchemaVersion != 3 {
		t.Fatalf("prepared = %+v %v, want schema version 3", ev, err)
	}
	b, _ := json.Marshal(ev)
	var back meetsync.Event
	if !strings.Contains(string(b), `"schema_version":3`) || json.Unmarshal(b, &back) != nil || back.SchemaVersion != 3 {
		t.Errorf("JSON %s (decoded version %d)", b, back.SchemaVersion)
	}
	if p, _ := meetsync.WebhookPayload(ev); !strings.Contains(string(p), `"schema_version":3`) {
		t.Errorf("webhook body %s has no schema_version", p)
	}
	// Built-in types are not the checker's: no version, and none shown.
	ev, err = prepare(&meetsync.EventInput{Type: meetsync.TypeMeetingStarted, UserID: "u"}, func(p *meetsync.PrepareParams) { p.Types = versioned{} })
	if err != nil || ev.SchemaVersion != 0 {
		t.Fatalf("built-in = %+v %v", ev, err)
	}
	b, _ = json.Marshal(ev)
	p, _ := meetsync.WebhookPayload(ev)
	if strings.Contains(string(b), "schema_version") || strings.Contains(string(p), "schema_version") {
		t.Errorf("built-in event shows a schema version: %s / %s", b, p)
	}
}
