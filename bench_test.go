package meetsync_test

import (
	"encoding/json"
	"strconv"
	"testing"

	"github.com/meetsync/meetsync"
)

// benchStatusInputs returns a realistic batch of n meeting.status_changed
// inputs as a client SDK sends them: one device, increasing client_seq, the
// status in the forms clients use, a reason and a meeting number.
func benchStatusInputs(n int) []meetsync.EventInput {
	statuses := []string{`"in_meeting"`, `"idle"`, `"MEETING_STATUS_INMEETING"`, `"MEETING_STATUS_IDLE"`, `3`, `0`, `"connecting"`, `"MEETING_STATUS_DISCONNECTING"`}
	in := make([]meetsync.EventInput, n)
	for i := range in {
		seq := int64(i + 1)
		data := `{"status":` + statuses[i%len(statuses)] + `,"arg":` + strconv.Itoa(i%3) + `,"meeting_num":"81234567890"}`
		if i%10 == 9 {
			// Now and then a client adds fields of its own.
			data = `{"status":"in_meeting","arg":0,"meeting_num":"81234567890","sdk_version":"4.9.1","platform":"android"}`
		}
		in[i] = meetsync.EventInput{
			Type: meetsync.TypeMeetingStatusChanged, UserID: "user-" + strconv.Itoa(i%17), DeviceID: "bench-device-1",
			ClientSeq: &seq, OccurredAt: "2026-05-01T12:00:00.123Z", Data: json.RawMessage(data),
		}
	}
	return in
}

// BenchmarkPrepareEvent prepares a batch of 100 status events (one op is the
// whole batch), as the ingest handler does.
func BenchmarkPrepareEvent(b *testing.B) {
	inputs := benchStatusInputs(100)
	fields := make([]string, len(inputs))
	for i := range fields {
		fields[i] = "events[" + strconv.Itoa(i) + "]"
	}
	newID := func() string { return "evt_bench" }
	b.ReportAllocs()
	for b.Loop() {
		for i := range inputs {
			in := inputs[i]
			if _, err := meetsync.PrepareEvent(&in, meetsync.PrepareParams{
				AppID: "app_1", Source: meetsync.SourceClient, ReceivedAt: received, Field: fields[i], NewID: newID,
			}); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkParseMeetingStatus(b *testing.B) {
	raws := []json.RawMessage{json.RawMessage(`"in_meeting"`), json.RawMessage(`"MEETING_STATUS_INMEETING"`), json.RawMessage(`3`)}
	b.ReportAllocs()
	for b.Loop() {
		for _, raw := range raws {
			if _, err := meetsync.ParseMeetingStatus(raw, "data.status"); err != nil {
				b.Fatal(err)
			}
		}
	}
}
