package httpapi

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/meetsync/meetsync"
)

// refParseIngestBody is ParseIngestBody as it was before the one-pass
// decoding: the reference it must agree with.
func refParseIngestBody(body []byte) (inputs []*meetsync.EventInput, batch bool, err error) {
	var b ingestBody
	if err := strictUnmarshal(body, &b); err != nil {
		return nil, false, jsonError(err, "")
	}
	if b.Events == nil {
		in := b.EventInput
		return []*meetsync.EventInput{&in}, false, nil
	}
	if b.Type != "" || b.UserID != "" || b.ID != "" || b.DeviceID != "" || b.ClientSeq != nil || b.OccurredAt != "" || b.Data != nil {
		return nil, true, meetsync.FieldErrorf("events", `a batch body holds only "events": put every field inside the events`)
	}
	if len(b.Events) == 0 {
		return nil, true, meetsync.FieldErrorf("events", "events is empty")
	}
	if len(b.Events) > meetsync.MaxBatchEvents {
		return nil, true, meetsync.FieldErrorf("events", "a batch holds at most %d events, this one has %d", meetsync.MaxBatchEvents, len(b.Events))
	}
	inputs = make([]*meetsync.EventInput, len(b.Events))
	for i, raw := range b.Events {
		in := new(meetsync.EventInput)
		if err := strictUnmarshal(raw, in); err != nil {
			return nil, true, jsonError(err, fmt.Sprintf("events[%d]", i))
		}
		inputs[i] = in
	}
	return inputs, true, nil
}

func checkIngestBodySame(t *testing.T, body []byte) {
	t.Helper()
	wantInputs, wantBatch, wantErr := refParseIngestBody(body)
	for _, f := range []struct {
		name  string
		parse func([]byte) ([]*meetsync.EventInput, bool, error)
	}{{"ParseIngestBody", ParseIngestBody}, {"parseIngestBodyJSON", parseIngestBodyJSON}} {
		inputs, batch, err := f.parse(body)
		if batch != wantBatch || !reflect.DeepEqual(err, wantErr) || !reflect.DeepEqual(inputs, wantInputs) {
			t.Fatalf("%s(%q) = %s %v %v\nwant %s %v %v", f.name, body, dump(inputs), batch, err, dump(wantInputs), wantBatch, wantErr)
		}
	}
}

// The usual bodies are read without encoding/json.
func TestReadIngestBodyTaken(t *testing.T) {
	for _, s := range []string{
		ingestBodySeeds[0], ingestBodySeeds[1],
		` { "events" : [ { "type" : "crm.a" , "user_id" : "ü", "data" : { "a" : [ 1, 2.5e-3, true, null, "\u00e9\n" ] } } , {} ] } `,
		`{"type":"crm.a","user_id":"u","client_seq":-0,"data":null}`,
	} {
		if _, _, ok := readIngestBody([]byte(s)); !ok {
			t.Errorf("%s is not read by readIngestBody", s)
		}
	}
}

func dump(inputs []*meetsync.EventInput) string {
	var b strings.Builder
	for _, in := range inputs {
		seq := "nil"
		if in.ClientSeq != nil {
			seq = strconv.FormatInt(*in.ClientSeq, 10)
		}
		fmt.Fprintf(&b, "{%q %q %q %q %s %q %q}", in.ID, in.Type, in.UserID, in.DeviceID, seq, in.OccurredAt, in.Data)
	}
	return b.String()
}

var ingestBodySeeds = []string{
	`{"type":"meeting.status_changed","user_id":"u1","device_id":"d1","client_seq":17,"occurred_at":"2026-01-02T15:04:05.123Z","data":{"status":"MEETING_STATUS_INMEETING","arg":0,"meeting_num":"123"}}`,
	`{"events":[{"type":"crm.a","user_id":"u1"},{"id":"x","type":"meeting.status_changed","user_id":"u2","data":{"status":3}}]}`,
	`{"events":[{"type":"a","user_id":"u"}],"events":[{"id":"x"}]}`,
	`{"events":[{"type":"a","user_id":"u","client_seq":3}],"EVENTS":[{"id":"x","data":null}]}`,
	`{"events":[{"type":"a","user_id":"u"}],"\u0065vents":[{"id":"x"}]}`,
	"{\"events\":[{\"type\":\"a\",\"user_id\":\"u\"}],\"event\u017f\":[{\"id\":\"x\"}]}",
	`{"events":[1,"x"],"events":[{"type":"a"}]}`,
	`{"events":[{"type":"a"}],"events":null}`,
	`{"events":null,"type":"a"}`,
	`{"events":[null,{}]}`,
	`{"events":[]}`,
	`{"events":[{"type":"a","bogus":1}]}`,
	`{"events":[{"type":"a"},{"client_seq":"1"}]}`,
	`{"events":[{"type":"a"},{"client_seq":1.5}]}`,
	`{"events":[{"type":"a"},{"data":{"x":"events"},"Type":"b","TYPE":"c"}]}`,
	`{"events":[{"type":"a"}],"type":""}`,
	`{"events":[{"type":"a"}],"type":"x"}`,
	`{"events":[{"type":"a"}]} {}`,
	`{"events":[{"type":"a"}]`,
	`{"events":{"type":"a"}}`,
	`{"events":"x"}`,
	`[]`,
	`null`,
	``,
	` `,
	`{"type":"a","type":null,"client_seq":1,"client_seq":null}`,
	`{"events":[{"type":"a","type":null,"client_seq":1,"client_seq":null,"data":1,"data":null}]}`,
	`{"events":[{"type":"a"}], "x":{"events":[1],"events":2}, "data":[{"events":3}]}`,
	`{"data":{"events":1},"events":[{"type":"a"}]}`,
	`{"events":[{"user_id":"\u00e9\ud800","type":"a\"b"}]}`,
	` { "events" : [ { "type" : "crm.a" , "user_id" : "ü", "data" : { "a" : [ 1, 2.5e-3, true, null, "\u00e9\n" ] } } , {} ] } `,
	`{"type":"crm.a","user_id":"u","client_seq":-0,"data":null}`,
	`{"type":"crm.a","user_id":"u","client_seq":01}`,
	`{"type":"crm.a","user_id":"u","client_seq":123456789012345678}`,
	`{"type":"crm.a","user_id":"u","client_seq":1234567890123456789}`,
	`{"type":"crm.a","user_id":"u","client_seq":12345678901234567890}`,
	`{"type":"crm.a","user_id":"u","client_seq":-}`,
	`{"type":"crm.a","user_id":"u","client_seq":1.0}`,
	`{"type":"crm.a","user_id":"u","client_seq":1e3}`,
	`{"type":"crm.a","user_id":"u","client_seq":true}`,
	`{"type":"crm.a","user_id":"u","device_id":null,"id":null,"occurred_at":null,"type":null}`,
	`{"type":"crm.a","user_id":1}`,
	`{"type":"meeting.status_changed","user_id":"u\u0001"}`,
	"{\"type\":\"meeting.status_changed\",\"user_id\":\"u\x01\"}",
	"{\"type\":\"meeting.status_changed\",\"user_id\":\"u\xff\"}",
	`{"events":[{"type":"a","user_id":"u1","device_id":"d"},{"type":"a","user_id":"u1","device_id":"d"},{"type":"a","user_id":"u2","device_id":"e"}]}`,
	`{"events":[{"data":{"a":1}},{"data":[1,{"b":[]}]},{"data":"x"},{"data":-1.5E+2}]}`,
	`{"events":[{"data":{"a":1}}],}`,
	`{"events":[{"data":{"a":1}},]}`,
	`{"events":[{"data":{"a":1}}] "x"}`,
	`{"events" "x"}`,
	`{"events":[{"data":` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `}]}`,
}

func TestParseIngestBodyMatchesReference(t *testing.T) {
	for _, s := range ingestBodySeeds {
		checkIngestBodySame(t, []byte(s))
	}
	big := `{"events":[` + strings.Repeat(`{"type":"a","user_id":"u"},`, meetsync.MaxBatchEvents) + `{"type":"a","user_id":"u"}]}`
	checkIngestBodySame(t, []byte(big))
	checkIngestBodySame(t, []byte(strings.Replace(big, `"u"}]}`, `"u","x":1}]}`, 1)))
	// The corpus of FuzzParseIngestBody.
	files, _ := filepath.Glob("testdata/fuzz/FuzzParseIngestBody/*")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.SplitN(string(b), "\n", 2)
		if len(lines) < 2 {
			continue
		}
		s := strings.TrimSpace(lines[1])
		s = strings.TrimSuffix(strings.TrimPrefix(s, "[]byte("), ")")
		body, err := strconv.Unquote(s)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		checkIngestBodySame(t, []byte(body))
	}
}

func FuzzParseIngestBodyMatchesReference(f *testing.F) {
	for _, s := range ingestBodySeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkIngestBodySame(t, body)
		if json.Valid(body) {
			// A body that may repeat "events" takes the general path.
			var raw map[string]json.RawMessage
			if json.Unmarshal(body, &raw) == nil {
				n := 0
				for k := range raw {
					if strings.EqualFold(k, "events") {
						n++
					}
				}
				if n > 1 && singleEventsKey(body) {
					t.Fatalf("singleEventsKey(%q) misses a repeated events key", body)
				}
			}
		}
	})
}

func TestIngestResponse(t *testing.T) {
	for _, results := range [][]meetsync.EventResult{
		nil,
		{},
		{{ID: "evt_1", Seq: 1}},
		{{ID: "evt_1", Seq: 1, Duplicate: true, Stale: true, Pos: 9}, {ID: "caller <&> \"q\" \\ \u2028 \u00e9 \x7f", Seq: 1 << 62}, {ID: "\xff", Seq: -1}},
	} {
		want, _ := json.Marshal(map[string]any{"events": results})
		if got := appendIngestResponse(nil, results); string(got) != string(want) {
			t.Errorf("appendIngestResponse = %s\nwant %s", got, want)
		}
	}
}

func FuzzIngestResponse(f *testing.F) {
	f.Add("evt_1", int64(1), true, false)
	f.Add("a<\u2028\xff", int64(-5), false, true)
	f.Fuzz(func(t *testing.T, id string, seq int64, dup, stale bool) {
		results := []meetsync.EventResult{{ID: id, Seq: seq, Duplicate: dup, Stale: stale}, {ID: "evt_2", Seq: 2}}
		want, _ := json.Marshal(map[string]any{"events": results})
		if got := appendIngestResponse(nil, results); string(got) != string(want) {
			t.Fatalf("appendIngestResponse = %s\nwant %s", got, want)
		}
	})
}
