package httpapi_test

import (
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/httpapi"
)

// FuzzParseIngestBody feeds arbitrary bodies through the ingest parser and
// the event validation: they must never panic, and every refusal must be a
// meetsync error a client can act on. The seed corpus is in
// testdata/fuzz/FuzzParseIngestBody.
func FuzzParseIngestBody(f *testing.F) {
	for _, s := range []string{
		`{"type":"meeting.status_changed","user_id":"u1","device_id":"d1","client_seq":17,"occurred_at":"2026-01-02T15:04:05.123Z","data":{"status":"MEETING_STATUS_INMEETING","arg":0,"meeting_num":"123"}}`,
		`{"events":[{"type":"crm.a","user_id":"u1"},{"id":"x","type":"meeting.status_changed","user_id":"u2","data":{"status":3}}]}`,
	} {
		f.Add([]byte(s))
	}
	received := time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body []byte) {
		inputs, batch, err := httpapi.ParseIngestBody(body)
		if err != nil {
			checkFuzzError(t, err, meetsync.EINVALID, meetsync.ETOOLARGE)
			return
		}
		if len(inputs) == 0 || len(inputs) > meetsync.MaxBatchEvents || (!batch && len(inputs) != 1) {
			t.Fatalf("%d inputs (batch %v) from %q", len(inputs), batch, body)
		}
		// Odd-length bodies play a client token bound to u1 on d1.
		force := len(body)%2 == 1
		for i, in := range inputs {
			p := meetsync.PrepareParams{
				AppID: "app_1", Source: meetsync.SourceClient, ReceivedAt: received,
				NewID: func() string { return "evt_" + strconv.Itoa(i) },
			}
			if batch {
				p.Field = "events[" + strconv.Itoa(i) + "]"
			}
			if force {
				p.ForceUserID, p.ForceDeviceID = "u1", "d1"
			}
			ev, err := meetsync.PrepareEvent(in, p)
			if err != nil {
				checkFuzzError(t, err, meetsync.EINVALID, meetsync.EFORBIDDEN)
				continue
			}
			if ev.ID == "" || ev.UserID == "" || ev.Type == "" || ev.AppID != "app_1" {
				t.Fatalf("prepared event lacks identity: %+v", ev)
			}
			if force && (ev.UserID != "u1" || ev.DeviceID != "d1") {
				t.Fatalf("a client token's event is for %s/%s", ev.UserID, ev.DeviceID)
			}
			var data map[string]json.RawMessage
			if err := json.Unmarshal(ev.Data, &data); err != nil {
				t.Fatalf("prepared data %q is not a JSON object: %v", ev.Data, err)
			}
			if ev.OccurredAt.IsZero() || ev.OccurredAt.Location() != time.UTC {
				t.Fatalf("occurred_at %v", ev.OccurredAt)
			}
			st, _, _, ok := ev.StatusChange()
			if ok != (ev.Type == meetsync.TypeMeetingStatusChanged) || (ok && !st.Valid()) {
				t.Fatalf("status of %s: %v %v", ev.Type, st, ok)
			}
			if _, err := json.Marshal(ev); err != nil {
				t.Fatalf("prepared event does not encode: %v", err)
			}
		}
	})
}

func checkFuzzError(t *testing.T, err error, codes ...string) {
	t.Helper()
	var me *meetsync.Error
	if !errors.As(err, &me) {
		t.Fatalf("error %v (%T) is not a *meetsync.Error", err, err)
	}
	if !slices.Contains(codes, me.Code) {
		t.Fatalf("error code %q (%v), want one of %v", me.Code, err, codes)
	}
	if me.Message == "" {
		t.Fatalf("error without a message: %+v", me)
	}
}
