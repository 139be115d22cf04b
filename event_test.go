package meetsync_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
)

var received = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func prepare(in *meetsync.EventInput, mod ...func(*meetsync.PrepareParams)) (*meetsync.Event, error) {
	p := meetsync.PrepareParams{AppID: "app_1", Source: meetsync.SourceBusiness, ReceivedAt: received,
		NewID: func() string { return "evt_new" }}
	for _, m := range mod {
		m(&p)
	}
	return meetsync.PrepareEvent(in, p)
}

func i64(v int64) *int64 { return &v }

func TestPrepareEventValid(t *testing.T) {
	t.Parallel()
	ev, err := prepare(&meetsync.EventInput{
		Type: "meeting.status_changed", UserID: "u1", DeviceID: "d1", ClientSeq: i64(17),
		OccurredAt: "2026-05-01T19:59:58.5+08:00",
		Data:       json.RawMessage(`{"status":"MEETING_STATUS_INMEETING","arg":2,"meeting_num":123,"from":"forged","from_code":9,"extra":[1]}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	if ev.ID != "evt_new" || ev.CallerID || ev.AppID != "app_1" || ev.UserID != "u1" || ev.DeviceID != "d1" || ev.ClientSeq != 17 ||
		ev.Source != meetsync.SourceBusiness || ev.Seq != 0 || ev.Stale {
		t.Errorf("event = %+v", ev)
	}
	if want := time.Date(2026, 5, 1, 11, 59, 58, 5e8, time.UTC); !ev.OccurredAt.Equal(want) || ev.OccurredAt.Location() != time.UTC {
		t.Errorf("occurred_at = %v, want %v in UTC", ev.OccurredAt, want)
	}
	if !ev.ReceivedAt.Equal(received) || !ev.EffectiveTime().Equal(ev.OccurredAt) {
		t.Errorf("received_at %v, effective %v", ev.ReceivedAt, ev.EffectiveTime())
	}
	var d map[string]any
	if err := json.Unmarshal(ev.Data, &d); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"status": "in_meeting", "status_code": 3.0, "reason": "closed_by_host", "reason_code": 2.0,
		"meeting_num": "123", "device_id": "d1", "extra": []any{1.0}}
	if fmt.Sprint(d) != fmt.Sprint(want) {
		t.Errorf("normalised data = %v, want %v (no client-supplied from)", d, want)
	}
	st, r, num, ok := ev.StatusChange()
	if !ok || st != meetsync.StatusInMeeting || r != meetsync.ReasonClosedByHost || num != "123" {
		t.Errorf("StatusChange = %v %v %q %v", st, r, num, ok)
	}

	// Defaults: occurred_at = received_at, data = {}, a caller id kept.
	ev, err = prepare(&meetsync.EventInput{ID: "order-9", Type: "crm.order_paid", UserID: "ü 1"})
	if err != nil {
		t.Fatal(err)
	}
	if ev.ID != "order-9" || !ev.CallerID || !ev.OccurredAt.Equal(received) || string(ev.Data) != "{}" {
		t.Errorf("event = %+v data %s", ev, ev.Data)
	}
	if _, _, _, ok := ev.StatusChange(); ok {
		t.Error("a custom event has a status change")
	}
	ev, err = prepare(&meetsync.EventInput{Type: "client.initialized", UserID: "u", Data: json.RawMessage(" null ")})
	if err != nil || string(ev.Data) != "{}" {
		t.Errorf("null data: %v %s", err, ev.Data)
	}
	// A far-future occurred_at is kept as sent but ordered as received.
	ev, err = prepare(&meetsync.EventInput{Type: "crm.a", UserID: "u", OccurredAt: "2099-01-01T00:00:00Z"})
	if err != nil || ev.OccurredAt.Year() != 2099 || !ev.EffectiveTime().Equal(received) {
		t.Errorf("future event: %v %v %v", err, ev.OccurredAt, ev.EffectiveTime())
	}
}

func TestPrepareEventErrors(t *testing.T) {
	t.Parallel()
	status := func(s string) json.RawMessage { return json.RawMessage(`{"status":` + s + `}`) }
	for _, tc := range []struct {
		name  string
		in    meetsync.EventInput
		code  string
		field string
	}{
		{"missing type", meetsync.EventInput{UserID: "u"}, "invalid", "events[4].type"},
		{"upper-case type", meetsync.EventInput{Type: "CRM.a", UserID: "u"}, "invalid", "events[4].type"},
		{"type with a space", meetsync.EventInput{Type: "crm.a b", UserID: "u"}, "invalid", "events[4].type"},
		{"type with empty segment", meetsync.EventInput{Type: "crm.", UserID: "u"}, "invalid", "events[4].type"},
		{"type starting with a digit", meetsync.EventInput{Type: "9crm.a", UserID: "u"}, "invalid", "events[4].type"},
		{"type starting with '-'", meetsync.EventInput{Type: "crm.-a", UserID: "u"}, "invalid", "events[4].type"},
		{"type too long", meetsync.EventInput{Type: strings.Repeat("a", 129), UserID: "u"}, "invalid", "events[4].type"},
		{"unknown type in reserved namespace", meetsync.EventInput{Type: "meeting.bogus", UserID: "u"}, "invalid", "events[4].type"},
		{"unknown type in client namespace", meetsync.EventInput{Type: "client.bogus", UserID: "u"}, "invalid", "events[4].type"},
		{"system-only delivery type", meetsync.EventInput{Type: "delivery.exhausted", UserID: "u"}, "invalid", "events[4].type"},
		{"system-only endpoint type", meetsync.EventInput{Type: "endpoint.disabled", UserID: "u"}, "invalid", "events[4].type"},
		{"system-only session type", meetsync.EventInput{Type: "session.logged_in", UserID: "u"}, "invalid", "events[4].type"},
		{"system-only invitation type", meetsync.EventInput{Type: "invitation.created", UserID: "u"}, "invalid", "events[4].type"},
		{"missing user_id", meetsync.EventInput{Type: "crm.a"}, "invalid", "events[4].user_id"},
		{"user_id too long", meetsync.EventInput{Type: "crm.a", UserID: strings.Repeat("u", 129)}, "invalid", "events[4].user_id"},
		{"user_id not UTF-8", meetsync.EventInput{Type: "crm.a", UserID: "u\xff"}, "invalid", "events[4].user_id"},
		{"user_id with a control character", meetsync.EventInput{Type: "crm.a", UserID: "u\t1"}, "invalid", "events[4].user_id"},
		{"user_id with DEL", meetsync.EventInput{Type: "crm.a", UserID: "u\x7f"}, "invalid", "events[4].user_id"},
		{"device_id with a control character", meetsync.EventInput{Type: "crm.a", UserID: "u", DeviceID: "d\n"}, "invalid", "events[4].device_id"},
		{"client_seq zero", meetsync.EventInput{Type: "crm.a", UserID: "u", DeviceID: "d", ClientSeq: i64(0)}, "invalid", "events[4].client_seq"},
		{"client_seq negative", meetsync.EventInput{Type: "crm.a", UserID: "u", DeviceID: "d", ClientSeq: i64(-1)}, "invalid", "events[4].client_seq"},
		{"client_seq without device", meetsync.EventInput{Type: "crm.a", UserID: "u", ClientSeq: i64(1)}, "invalid", "events[4].device_id"},
		{"occurred_at not RFC 3339", meetsync.EventInput{Type: "crm.a", UserID: "u", OccurredAt: "2026-05-01 12:00:00"}, "invalid", "events[4].occurred_at"},
		{"occurred_at without zone", meetsync.EventInput{Type: "crm.a", UserID: "u", OccurredAt: "2026-05-01T12:00:00"}, "invalid", "events[4].occurred_at"},
		{"occurred_at before 2000", meetsync.EventInput{Type: "crm.a", UserID: "u", OccurredAt: "1999-12-31T23:59:59Z"}, "invalid", "events[4].occurred_at"},
		{"caller id with a control character", meetsync.EventInput{ID: "a\x00", Type: "crm.a", UserID: "u"}, "invalid", "events[4].id"},
		{"caller id too long", meetsync.EventInput{ID: strings.Repeat("i", 129), Type: "crm.a", UserID: "u"}, "invalid", "events[4].id"},
		{"data an array", meetsync.EventInput{Type: "crm.a", UserID: "u", Data: json.RawMessage(`[]`)}, "invalid", "events[4].data"},
		{"data a string", meetsync.EventInput{Type: "crm.a", UserID: "u", Data: json.RawMessage(`"x"`)}, "invalid", "events[4].data"},
		{"status missing", meetsync.EventInput{Type: "meeting.status_changed", UserID: "u", Data: json.RawMessage(`{"arg":0}`)}, "invalid", "events[4].data.status"},
		{"status unknown", meetsync.EventInput{Type: "meeting.status_changed", UserID: "u", Data: status(`"MEETING_STATUS_NOPE"`)}, "invalid", "events[4].data.status"},
		{"status null", meetsync.EventInput{Type: "meeting.status_changed", UserID: "u", Data: status(`null`)}, "invalid", "events[4].data.status"},
		{"status event without data", meetsync.EventInput{Type: "meeting.status_changed", UserID: "u"}, "invalid", "events[4].data.status"},
		{"arg unknown", meetsync.EventInput{Type: "meeting.status_changed", UserID: "u", Data: json.RawMessage(`{"status":3,"arg":15}`)}, "invalid", "events[4].data.arg"},
		{"reason unknown", meetsync.EventInput{Type: "meeting.status_changed", UserID: "u", Data: json.RawMessage(`{"status":3,"reason":"x"}`)}, "invalid", "events[4].data.reason"},
		{"meeting_num too long", meetsync.EventInput{Type: "meeting.status_changed", UserID: "u",
			Data: json.RawMessage(`{"status":3,"meeting_num":"` + strings.Repeat("9", 65) + `"}`)}, "invalid", "events[4].data.meeting_num"},
		{"meeting_num an object", meetsync.EventInput{Type: "meeting.status_changed", UserID: "u",
			Data: json.RawMessage(`{"status":3,"meeting_num":{"n":1}}`)}, "invalid", "events[4].data.meeting_num"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in
			_, err := prepare(&in, func(p *meetsync.PrepareParams) { p.Field = "events[4]" })
			var me *meetsync.Error
			if !errors.As(err, &me) {
				t.Fatalf("PrepareEvent error = %v, want a *meetsync.Error", err)
			}
			if me.Code != tc.code || me.Field != tc.field || me.Message == "" {
				t.Errorf("error = %+v, want %s on %s", me, tc.code, tc.field)
			}
		})
	}
	// Without a batch prefix the field is the bare name.
	_, err := prepare(&meetsync.EventInput{Type: "meeting.status_changed", UserID: "u", Data: status(`8`)})
	if meetsync.ErrorField(err) != "data.status" || meetsync.ErrorCode(err) != meetsync.EINVALID {
		t.Errorf("error = %v", err)
	}
}

func TestPrepareEventClientToken(t *testing.T) {
	t.Parallel()
	token := func(p *meetsync.PrepareParams) {
		p.ForceUserID, p.ForceDeviceID, p.Source = "u1", "d1", meetsync.SourceClient
	}
	ev, err := prepare(&meetsync.EventInput{Type: "crm.a"}, token)
	if err != nil || ev.UserID != "u1" || ev.DeviceID != "d1" || ev.Source != meetsync.SourceClient {
		t.Fatalf("event = %+v, %v", ev, err)
	}
	if ev, err := prepare(&meetsync.EventInput{Type: "crm.a", UserID: "u1", DeviceID: "d1"}, token); err != nil || ev.UserID != "u1" {
		t.Errorf("own user and device: %v", err)
	}
	for _, tc := range []struct {
		in    meetsync.EventInput
		field string
	}{
		{meetsync.EventInput{Type: "crm.a", UserID: "u2"}, "user_id"},
		{meetsync.EventInput{Type: "crm.a", DeviceID: "d2"}, "device_id"},
	} {
		_, err := prepare(&tc.in, token)
		if meetsync.ErrorCode(err) != meetsync.EFORBIDDEN || meetsync.ErrorField(err) != tc.field {
			t.Errorf("%+v: error %v, want forbidden on %s", tc.in, err, tc.field)
		}
	}
}

type rejectAll struct{ calls []string }

func (r *rejectAll) CheckCustomEvent(appID, typ string, data json.RawMessage, prefix string) (int, error) {
	r.calls = append(r.calls, appID+" "+typ+" "+string(data)+" "+prefix)
	return 0, meetsync.FieldErrorf(prefix+".data", "does not match the schema of %s", typ)
}

func TestPrepareEventCustomTypes(t *testing.T) {
	t.Parallel()
	tc := &rejectAll{}
	withTypes := func(p *meetsync.PrepareParams) { p.Types, p.Field = tc, "events[1]" }
	_, err := prepare(&meetsync.EventInput{Type: "crm.order_paid", UserID: "u"}, withTypes)
	if meetsync.ErrorField(err) != "events[1].data" {
		t.Errorf("custom type error = %v", err)
	}
	// Built-in types are not the checker's business.
	if _, err := prepare(&meetsync.EventInput{Type: "meeting.member_joined", UserID: "u"}, withTypes); err != nil {
		t.Errorf("built-in type: %v", err)
	}
	if want := []string{"app_1 crm.order_paid {} events[1]"}; fmt.Sprint(tc.calls) != fmt.Sprint(want) {
		t.Errorf("checker calls = %q, want %q", tc.calls, want)
	}
}

func TestReservedTypes(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]bool{
		"meeting.status_changed": true, "meeting.bogus": true, "session.x": true, "client.x": true, "invitation.x": true,
		"endpoint.x": true, "delivery.x": true, "meetings.x": false, "crm.meeting": false, "meetingroom.booked": false,
	} {
		if got := meetsync.IsReservedType(name); got != want {
			t.Errorf("IsReservedType(%q) = %v", name, got)
		}
	}
	for _, bt := range meetsync.BuiltinTypes {
		got, ok := meetsync.LookupBuiltinType(bt.Name)
		if !ok || got != bt || !meetsync.IsReservedType(bt.Name) || bt.Description == "" {
			t.Errorf("built-in type %+v: lookup %+v %v", bt, got, ok)
		}
		_, err := prepare(&meetsync.EventInput{Type: bt.Name, UserID: "u", Data: json.RawMessage(`{"status":0}`)})
		if (err == nil) != bt.Ingestible {
			t.Errorf("posting %s: %v, ingestible %v", bt.Name, err, bt.Ingestible)
		}
	}
}

func TestTypeFilter(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		patterns []string
		match    []string
		noMatch  []string
	}{
		{nil, []string{"meeting.status_changed", "crm.a"}, nil},
		{[]string{"*"}, []string{"meeting.status_changed", "crm.a"}, nil},
		{[]string{"crm.a", "*"}, []string{"x.y"}, nil},
		{[]string{"", "  "}, []string{"x.y"}, nil},
		{[]string{"meeting.*"}, []string{"meeting.status_changed", "meeting.member_joined", "meeting.a.b"},
			[]string{"meeting", "meetingroom.booked", "meetings.x", "crm.meeting", "session.logged_in"}},
		{[]string{"meeting.status_changed"}, []string{"meeting.status_changed"}, []string{"meeting.status", "meeting.status_changed.x", "meeting.member_joined"}},
		{[]string{"crm.order.*", " session.logged_in "}, []string{"crm.order.paid", "session.logged_in"}, []string{"crm.order", "crm.orders.x", "crm.a"}},
		{[]string{"crm.*", "crm.a"}, []string{"crm.a", "crm.b"}, []string{"crma"}},
	} {
		f, err := meetsync.ParseTypeFilter(tc.patterns, "type")
		if err != nil {
			t.Errorf("ParseTypeFilter(%q): %v", tc.patterns, err)
			continue
		}
		for _, m := range tc.match {
			if !f.Match(m) {
				t.Errorf("filter %q does not match %s", tc.patterns, m)
			}
		}
		for _, m := range tc.noMatch {
			if f.Match(m) {
				t.Errorf("filter %q matches %s", tc.patterns, m)
			}
		}
	}
	for _, bad := range [][]string{{"Meeting.*"}, {"meeting.**"}, {".*"}, {"meeting..x"}, {"crm.a", "crm a"}, {"*.x"}, {"meeting.*.x"}} {
		_, err := meetsync.ParseTypeFilter(bad, "type")
		if meetsync.ErrorCode(err) != meetsync.EINVALID || meetsync.ErrorField(err) != "type" {
			t.Errorf("ParseTypeFilter(%q) = %v, want invalid on type", bad, err)
		}
	}
}

func TestCursor(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want int64
	}{{"", 0}, {"0", 0}, {"42", 42}, {meetsync.FormatCursor(1 << 40), 1 << 40}} {
		if got, err := meetsync.ParseCursor(tc.in, "after"); err != nil || got != tc.want {
			t.Errorf("ParseCursor(%q) = %d, %v", tc.in, got, err)
		}
	}
	for _, bad := range []string{"-1", "x", "1.5", " 1", "99999999999999999999", strings.Repeat("9", 100)} {
		_, err := meetsync.ParseCursor(bad, "after")
		if meetsync.ErrorCode(err) != meetsync.EINVALID || meetsync.ErrorField(err) != "after" {
			t.Errorf("ParseCursor(%q) = %v", bad, err)
		}
		if len(meetsync.ErrorMessage(err)) > 200 {
			t.Errorf("ParseCursor(%q) echoes all the input: %q", bad, meetsync.ErrorMessage(err))
		}
	}
}

func TestEventJSON(t *testing.T) {
	t.Parallel()
	ev := &meetsync.Event{Pos: 7, ID: "evt_1", Type: "crm.a", AppID: "app_secret_tenant", UserID: "u1", Seq: 3,
		OccurredAt: received, ReceivedAt: received.Add(time.Second), Source: meetsync.SourceClient, DeviceID: "d1", ClientSeq: 9,
		Stale: true, Data: json.RawMessage(`{"k":"v"}`)}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"evt_1","type":"crm.a","user_id":"u1","seq":3,"occurred_at":"2026-05-01T12:00:00Z","received_at":"2026-05-01T12:00:01Z",` +
		`"source":"client","device_id":"d1","client_seq":9,"stale":true,"data":{"k":"v"},"cursor":"7"}`
	if string(b) != want {
		t.Errorf("JSON = %s\nwant   %s", b, want)
	}
	var back meetsync.Event
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	ev.AppID = "" // not part of the public form
	if fmt.Sprintf("%+v", back) != fmt.Sprintf("%+v", *ev) {
		t.Errorf("round trip = %+v\nwant         %+v", back, *ev)
	}
	if err := json.Unmarshal([]byte(`{"cursor":"x"}`), &back); err == nil {
		t.Error("a bad cursor decodes")
	}
}

func TestErrorHelpers(t *testing.T) {
	t.Parallel()
	fe := meetsync.FieldErrorf("events[0].type", "type %q is bad", "X")
	wrapped := fmt.Errorf("context: %w", fe)
	if meetsync.ErrorCode(wrapped) != meetsync.EINVALID || meetsync.ErrorField(wrapped) != "events[0].type" ||
		meetsync.ErrorMessage(wrapped) != `type "X" is bad` {
		t.Errorf("wrapped field error: %s %s %s", meetsync.ErrorCode(wrapped), meetsync.ErrorField(wrapped), meetsync.ErrorMessage(wrapped))
	}
	if fe.Error() != `meetsync invalid: type "X" is bad (field events[0].type)` {
		t.Errorf("Error() = %q", fe.Error())
	}
	plain := errors.New("disk on fire at /secret/path")
	if meetsync.ErrorCode(plain) != meetsync.EINTERNAL || meetsync.ErrorMessage(plain) != "internal error" || meetsync.ErrorField(plain) != "" {
		t.Errorf("a foreign error leaks: %s %q", meetsync.ErrorCode(plain), meetsync.ErrorMessage(plain))
	}
	if meetsync.ErrorCode(nil) != "" || meetsync.ErrorMessage(nil) != "" {
		t.Error("nil error has a code")
	}
	if e := meetsync.Errorf(meetsync.ENOTFOUND, "user %s not found", "u1"); e.Error() != "meetsync not_found: user u1 not found" {
		t.Errorf("Errorf: %q", e.Error())
	}
}
