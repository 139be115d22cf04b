package httpapi_test

import (
	"strconv"
	"testing"

	"github.com/meetsync/meetsync/httpapi"
)

// benchBatchBody returns a realistic {"events":[…]} body of n
// meeting.status_changed events, as a client SDK sends it.
func benchBatchBody(n int) []byte {
	statuses := []string{`"in_meeting"`, `"idle"`, `"MEETING_STATUS_INMEETING"`, `"MEETING_STATUS_IDLE"`, `3`, `0`, `"connecting"`, `"MEETING_STATUS_DISCONNECTING"`}
	b := []byte(`{"events":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"type":"meeting.status_changed","user_id":"user-`...)
		b = strconv.AppendInt(b, int64(i%17), 10)
		b = append(b, `","device_id":"bench-device-1","client_seq":`...)
		b = strconv.AppendInt(b, int64(i+1), 10)
		b = append(b, `,"occurred_at":"2026-05-01T12:00:00.123Z","data":{"status":`...)
		b = append(b, statuses[i%len(statuses)]...)
		b = append(b, `,"arg":`...)
		b = strconv.AppendInt(b, int64(i%3), 10)
		b = append(b, `,"meeting_num":"81234567890"}}`...)
	}
	return append(b, "]}"...)
}

// BenchmarkParseIngestBody parses a batch body of 100 status events.
func BenchmarkParseIngestBody(b *testing.B) {
	body := benchBatchBody(100)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		inputs, batch, err := httpapi.ParseIngestBody(body)
		if err != nil || !batch || len(inputs) != 100 {
			b.Fatal(len(inputs), batch, err)
		}
	}
}
