package meetsync

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meetsync/meetsync/internal/jsonscan"
)

// The fast paths of status parsing and event preparation must behave
// exactly as the straightforward code they replace, which is kept here as
// the reference (ref*) and compared on the fuzz corpus and random inputs.

func refScalar(raw json.RawMessage) (v string, isNum, ok bool) {
	b := []byte(strings.TrimSpace(string(raw)))
	if len(b) == 0 {
		return "", false, false
	}
	if b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return "", false, false
		}
		return s, false, true
	}
	if b[0] == '-' || (b[0] >= '0' && b[0] <= '9') {
		return string(b), true, true
	}
	return "", false, false
}

func refParseMeetingStatus(raw json.RawMessage, field string) (MeetingStatus, error) {
	v, isNum, ok := refScalar(raw)
	if ok && isNum {
		if n, err := strconv.Atoi(v); err == nil && MeetingStatus(n).Valid() {
			return MeetingStatus(n), nil
		}
	} else if ok {
		if s, found := statusByName[strings.ToLower(strings.TrimSpace(v))]; found {
			return s, nil
		}
		if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && MeetingStatus(n).Valid() {
			return MeetingStatus(n), nil
		}
	}
	return 0, FieldErrorf(field, "unknown meeting status %s; accepted: %s", shorten(raw), statusNames)
}

func refParseReason(raw json.RawMessage, field string) (Reason, error) {
	v, isNum, ok := refScalar(raw)
	if ok && isNum {
		if n, err := strconv.Atoi(v); err == nil && Reason(n).Valid() && Reason(n) != ReasonReconciled {
			return Reason(n), nil
		}
	} else if ok {
		if r, found := reasonByName[strings.ToLower(strings.TrimSpace(v))]; found {
			return r, nil
		}
		if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && Reason(n).Valid() && Reason(n) != ReasonReconciled {
			return Reason(n), nil
		}
	}
	return 0, FieldErrorf(field, "unknown reason %s; accepted: %s", shorten(raw), reasonNames)
}

func refParseStatusData(data json.RawMessage, field, deviceID string) (*statusData, json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, nil, FieldErrorf(field, "data must be a JSON object")
	}
	rawStatus, ok := m["status"]
	if !ok {
		return nil, nil, FieldErrorf(field+".status", "status is required; accepted: %s", statusNames)
	}
	st, err := refParseMeetingStatus(rawStatus, field+".status")
	if err != nil {
		return nil, nil, err
	}
	sd := &statusData{Status: st}
	rawReason, ok := m["arg"]
	if !ok {
		rawReason, ok = m["reason"]
	}
	if ok && string(rawReason) != "null" {
		name := "arg"
		if _, has := m["arg"]; !has {
			name = "reason"
		}
		if sd.Reason, err = refParseReason(rawReason, field+"."+name); err != nil {
			return nil, nil, err
		}
	}
	if raw, ok := m["meeting_num"]; ok && string(raw) != "null" {
		v, _, ok := refScalar(raw)
		if !ok || len(v) > 64 {
			return nil, nil, FieldErrorf(field+".meeting_num", "meeting_num must be a string or number of at most 64 characters")
		}
		sd.MeetingNum = v
	}
	delete(m, "arg")
	m["status"] = mustJSON(st.Name())
	m["status_code"] = mustJSON(int(st))
	m["reason"] = mustJSON(sd.Reason.Name())
	m["reason_code"] = mustJSON(int(sd.Reason))
	if sd.MeetingNum != "" {
		m["meeting_num"] = mustJSON(sd.MeetingNum)
	} else {
		delete(m, "meeting_num")
	}
	if deviceID != "" {
		m["device_id"] = mustJSON(deviceID)
	}
	delete(m, "from")
	delete(m, "from_code")
	out, err := json.Marshal(m)
	if err != nil {
		return nil, nil, FieldErrorf(field, "data is not valid JSON")
	}
	return sd, out, nil
}

func sameError(a, b error) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return reflect.DeepEqual(a, b)
}

func checkStatusDataSame(t *testing.T, data []byte, prefix, deviceID string) {
	t.Helper()
	wantSD, wantOut, wantErr := refParseStatusData(data, fieldName(prefix, "data"), deviceID)
	var sd statusData
	out, err := parseStatusData(&sd, data, prefix, deviceID)
	if !sameError(err, wantErr) {
		t.Fatalf("parseStatusData(%q, %q) error = %#v, want %#v", data, deviceID, err, wantErr)
	}
	if err != nil {
		return
	}
	if sd != *wantSD || string(out) != string(wantOut) {
		t.Fatalf("parseStatusData(%q, %q) = %+v %s\nwant %+v %s", data, deviceID, sd, out, *wantSD, wantOut)
	}
	// The general path agrees too.
	var sd2 statusData
	out2, err := parseStatusDataMap(&sd2, data, fieldName(prefix, "data"), deviceID)
	if err != nil || sd2 != sd || string(out2) != string(out) {
		t.Fatalf("parseStatusDataMap(%q) = %+v %s %v", data, sd2, out2, err)
	}
}

var statusDataSeeds = []string{
	`{"status":"MEETING_STATUS_INMEETING","arg":0,"meeting_num":"123"}`,
	`{"status":"in_meeting","arg":2,"meeting_num":123,"from":"forged","from_code":9,"extra":[1]}`,
	`{"status":3}`,
	`{}`,
	` { "status" : "idle" , "reason" : "REMOVED_BY_HOST" } `,
	`{"status":"idle","arg":null,"reason":"bogus"}`,
	`{"status":"idle","arg":"x","reason":1}`,
	`{"status":"idle","reason":null}`,
	`{"status":1,"status":"idle"}`,
	`{"status":"idle","device_id":"client-dev","status_code":99,"reason_code":"x"}`,
	`{"status":"idle","meeting_num":""}`,
	`{"status":"idle","meeting_num":null}`,
	`{"status":"idle","meeting_num":"<a&b>\u2028"}`,
	`{"status":"idle","meeting_num":"\u00e9\ud800"}`,
	`{"status":"idle","meeting_num":-1.5e3}`,
	`{"status":"idle","meeting_num":{"n":1}}`,
	`{"status":"idle","meeting_num":"` + strings.Repeat("9", 65) + `"}`,
	`{"status":"idle","x":{ "a" : [1, 2, {"b":"<>&"}] , "c": "\u2028 \"q\" \\"}}`,
	"{\"status\":\"idle\",\"x\":\"\xe2\x80\xa8\xe2\x80\xa9<\"}",
	"{\"status\":\"idle\",\"x\":\"\xff\xfe\"}",
	"{\"status\":\"idle\",\"\xff\":1}",
	`{"status":"idle","<k>":1,"a\"b":2,"\u0073tatus2":3}`,
	`{"st\u0061tus":"idle"}`,
	`{"STATUS":"idle","Status":"in_meeting","status":"waiting"}`,
	`{"status":"idle","":0,"zz":true,"aa":false,"m":null}`,
	`{"status":" in_meeting "}`,
	`{"status":"InMeeting"}`,
	`{"status":"3"}`,
	`{"status":"-0"}`,
	`{"status":"007"}`,
	`{"status":3.0}`,
	`{"status":1e0}`,
	`{"status":-1}`,
	`{"status":"\u212aick"}`,
	`{"status":"idle","reason":"\u212aick_by_other_device"}`,
	`{"status":"idle","arg":1000}`,
	`{"status":"idle","arg":"1000"}`,
	`{"status":"idle","arg":"reconciled"}`,
	`{"status":"idle"} x`,
	`{"status":"idle",}`,
	`{"status":"idle"`,
	`{"status":01}`,
	`{"status":"idle","n":-}`,
	`{"status":"idle","n":1.}`,
	`{"status":"idle","n":1e}`,
	`{"status":"idle","n":[1,]}`,
	`{"status":"idle","n":"\x"}`,
	`{"status":"idle","n":"\u12"}`,
	"{\"status\":\"idle\",\"n\":\"a\tb\"}",
	`{"status":"idle","n":tru}`,
	`{"status":"idle","n":nulll}`,
	`{"status":"idle","n":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`,
	`{"status":"idle","a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"p":16,"q":17}`,
	`[]`,
	`{"status":"idle"}` + "\n",
}

func TestStatusDataFastPathMatchesMap(t *testing.T) {
	for _, s := range statusDataSeeds {
		for _, dev := range []string{"", "d1", "dev<&>", "d\u2028", "d\"q"} {
			checkStatusDataSame(t, []byte(s), "events[3]", dev)
			checkStatusDataSame(t, []byte(s), "", dev)
		}
	}
	// The keys parseStatusData writes are in encoding/json's map order.
	for i := 1; i < len(statusKeys); i++ {
		if statusKeys[i-1] >= statusKeys[i] {
			t.Fatalf("statusKeys not sorted: %v", statusKeys)
		}
	}
}

func FuzzStatusDataFastPath(f *testing.F) {
	for _, s := range statusDataSeeds {
		f.Add([]byte(s), "d1")
	}
	f.Fuzz(func(t *testing.T, data []byte, dev string) {
		checkStatusDataSame(t, data, "events[1]", dev)
		// The scanner accepts only valid JSON, and a value it calls plain
		// is written as encoding/json writes it.
		if members, ok := scanObjectMembers(data, nil); ok {
			if !json.Valid(data) {
				t.Fatalf("scanObjectMembers accepts invalid JSON %q", data)
			}
			for _, m := range members {
				if got := jsonscan.AppendCompactHTML(nil, m.val); m.plain && string(got) != string(m.val) {
					t.Fatalf("member %s: plain %q is written %q", m.key, m.val, got)
				}
			}
		}
		// The value parsers alone.
		st, err := ParseMeetingStatus(data, "f")
		wst, werr := refParseMeetingStatus(data, "f")
		if st != wst || !sameError(err, werr) {
			t.Fatalf("ParseMeetingStatus(%q) = %v %v, want %v %v", data, st, err, wst, werr)
		}
		r, err := ParseReason(data, "f")
		wr, werr := refParseReason(data, "f")
		if r != wr || !sameError(err, werr) {
			t.Fatalf("ParseReason(%q) = %v %v, want %v %v", data, r, err, wr, werr)
		}
		v, isNum, ok := scalar(data)
		wv, wisNum, wok := refScalar(data)
		if v != wv || isNum != wisNum || ok != wok {
			t.Fatalf("scalar(%q) = %q %v %v, want %q %v %v", data, v, isNum, ok, wv, wisNum, wok)
		}
		s := string(data)
		if validTypeName(s) != (checkTypeName(s, "type") == nil) {
			t.Fatalf("validTypeName(%q) = %v, checkTypeName says %v", s, validTypeName(s), checkTypeName(s, "type"))
		}
		for _, req := range []bool{false, true} {
			if validIdent(s, req) != (checkIdent(s, "x.id", req) == nil) {
				t.Fatalf("validIdent(%q, %v) = %v, checkIdent says %v", s, req, validIdent(s, req), checkIdent(s, "x.id", req))
			}
		}
	})
}

func TestStatusDataFastPathTaken(t *testing.T) {
	for _, s := range []string{
		`{"status":"MEETING_STATUS_INMEETING","arg":0,"meeting_num":"123"}`,
		`{"status":"in_meeting","arg":2,"meeting_num":123,"from":"forged","from_code":9,"extra":[1]}`,
		` { "status" : "idle" , "reason" : "REMOVED_BY_HOST", "x": {"a": [1, "<&>"]} } `,
	} {
		members, ok := scanObjectMembers([]byte(s), nil)
		if !ok || !sortMembers(members) {
			t.Errorf("%s does not take the fast path", s)
		}
	}
}

func TestStatusNamesFastPath(t *testing.T) {
	var raws []string
	for k := range statusByName {
		raws = append(raws, k, strings.ToUpper(k), strings.ToTitle(k[:1])+k[1:])
	}
	for k := range reasonByName {
		raws = append(raws, k, strings.ToUpper(k), strings.ToTitle(k[:1])+k[1:])
	}
	for n := -3; n <= 1002; n++ {
		raws = append(raws, strconv.Itoa(n))
	}
	for _, k := range raws {
		for _, raw := range []string{k, `"` + k + `"`, `" ` + k + `"`} {
			st, err := ParseMeetingStatus(json.RawMessage(raw), "f")
			wst, werr := refParseMeetingStatus(json.RawMessage(raw), "f")
			if st != wst || !sameError(err, werr) {
				t.Fatalf("ParseMeetingStatus(%s) = %v %v, want %v %v", raw, st, err, wst, werr)
			}
			r, err := ParseReason(json.RawMessage(raw), "f")
			wr, werr := refParseReason(json.RawMessage(raw), "f")
			if r != wr || !sameError(err, werr) {
				t.Fatalf("ParseReason(%s) = %v %v, want %v %v", raw, r, err, wr, werr)
			}
		}
	}
}

// refPrepareEvent is PrepareEvent as it was before the fast paths.
func refPrepareEvent(in *EventInput, p PrepareParams) (*Event, error) {
	f := func(name string) string { return fieldName(p.Field, name) }
	if err := checkTypeName(in.Type, f("type")); err != nil {
		return nil, err
	}
	if p.ForceUserID != "" {
		if in.UserID != "" && in.UserID != p.ForceUserID {
			return nil, &Error{Code: EFORBIDDEN, Message: "a client token can only post events of its own user", Field: f("user_id")}
		}
		in.UserID = p.ForceUserID
	}
	if p.ForceDeviceID != "" {
		if in.DeviceID != "" && in.DeviceID != p.ForceDeviceID {
			return nil, &Error{Code: EFORBIDDEN, Message: "a client token can only post events of its own device", Field: f("device_id")}
		}
		in.DeviceID = p.ForceDeviceID
	}
	if err := checkIdent(in.UserID, f("user_id"), true); err != nil {
		return nil, err
	}
	if strings.HasPrefix(in.UserID, "@") {
		return nil, FieldErrorf(f("user_id"), "user ids starting with '@' are reserved for meetsync")
	}
	if err := checkIdent(in.DeviceID, f("device_id"), false); err != nil {
		return nil, err
	}
	ev := &Event{
		Type:       in.Type,
		AppID:      p.AppID,
		UserID:     in.UserID,
		DeviceID:   in.DeviceID,
		ReceivedAt: p.ReceivedAt,
		OccurredAt: p.ReceivedAt,
		Source:     p.Source,
	}
	if in.ClientSeq != nil {
		if *in.ClientSeq < 1 {
			return nil, FieldErrorf(f("client_seq"), "client_seq must be a positive integer")
		}
		if in.DeviceID == "" {
			return nil, FieldErrorf(f("device_id"), "device_id is required with client_seq")
		}
		ev.ClientSeq = *in.ClientSeq
	}
	if in.OccurredAt != "" {
		t, err := time.Parse(time.RFC3339Nano, in.OccurredAt)
		if err != nil {
			return nil, FieldErrorf(f("occurred_at"), "occurred_at must be an RFC 3339 time such as 2026-01-02T15:04:05.123Z")
		}
		if t.Year() < 2000 || t.Year() > 9999 {
			return nil, FieldErrorf(f("occurred_at"), "occurred_at is out of range")
		}
		ev.OccurredAt = t.UTC()
	}
	if in.ID != "" {
		if err := checkIdent(in.ID, f("id"), true); err != nil {
			return nil, err
		}
		if strings.HasPrefix(in.ID, "evt_") {
			return nil, FieldErrorf(f("id"), "ids starting with \"evt_\" are meetsync's own; choose another id")
		}
		ev.ID, ev.CallerID = in.ID, true
	} else {
		ev.ID = p.NewID()
	}
	data := bytes.TrimSpace(in.Data)
	if len(data) == 0 || bytes.Equal(data, []byte("null")) {
		data = []byte("{}")
	}
	if data[0] != '{' {
		return nil, FieldErrorf(f("data"), "data must be a JSON object")
	}
	if bt, ok := builtinByName[in.Type]; ok {
		if !bt.Ingestible {
			return nil, FieldErrorf(f("type"), "%s events are emitted by meetsync itself and cannot be posted", in.Type)
		}
		if in.Type == TypeMeetingStatusChanged {
			sd, norm, err := refParseStatusData(data, f("data"), ev.DeviceID)
			if err != nil {
				return nil, err
			}
			ev.status, data = sd, norm
		}
	} else if IsReservedType(in.Type) {
		return nil, FieldErrorf(f("type"), "unknown event type %q in a reserved namespace (%s.*); see GET /v1/event-types", in.Type, strings.SplitN(in.Type, ".", 2)[0])
	} else if p.Types != nil {
		v, err := p.Types.CheckCustomEvent(p.AppID, in.Type, data, p.Field)
		if err != nil {
			return nil, err
		}
		ev.SchemaVersion = v
	}
	ev.Data = data
	return ev, nil
}

func FuzzPrepareEventMatchesReference(f *testing.F) {
	f.Add(TypeMeetingStatusChanged, "u1", "d1", "", "2026-05-01T19:59:58.5+08:00", int64(17), true,
		[]byte(`{"status":"MEETING_STATUS_INMEETING","arg":2,"meeting_num":123,"from":"forged","extra":[1]}`), false, "events[3]")
	f.Add("crm.order_paid", "ü 1", "", "order-9", "", int64(0), false, []byte(` null `), true, "")
	f.Add("meeting.bogus", "@u", "d\n", "a\x00", "1999-12-31T23:59:59Z", int64(-1), true, []byte(`[]`), false, "events[0]")
	f.Add("Crm..a", "u\xff", "d", "", "x", int64(1), true, []byte(`{"status":8}`), true, "events[1]")
	f.Fuzz(func(t *testing.T, typ, user, device, id, occurred string, seq int64, hasSeq bool, data []byte, force bool, field string) {
		mk := func() (*EventInput, PrepareParams) {
			in := &EventInput{ID: id, Type: typ, UserID: user, DeviceID: device, OccurredAt: occurred, Data: json.RawMessage(data)}
			if hasSeq {
				s := seq
				in.ClientSeq = &s
			}
			p := PrepareParams{AppID: "app_1", Source: SourceClient, ReceivedAt: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC),
				Field: field, NewID: func() string { return "evt_new" }}
			if force {
				p.ForceUserID, p.ForceDeviceID = "u1", "d1"
			}
			return in, p
		}
		in, p := mk()
		ev, err := PrepareEvent(in, p)
		win, wp := mk()
		wev, werr := refPrepareEvent(win, wp)
		if !sameError(err, werr) || !reflect.DeepEqual(ev, wev) || !reflect.DeepEqual(in, win) {
			t.Fatalf("PrepareEvent = %+v %v (input %+v)\nwant %+v %v (input %+v)", ev, err, in, wev, werr, win)
		}
	})
}
