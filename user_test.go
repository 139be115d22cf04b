package meetsync_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
)

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// report builds a meeting.status_changed event as PrepareEvent makes it:
// from device (with client_seq cs, 0 for none), occurred at t0+occ and
// received at t0+recv.
func report(t *testing.T, device string, cs int64, status string, occ, recv time.Duration) *meetsync.Event {
	t.Helper()
	in := &meetsync.EventInput{
		Type: meetsync.TypeMeetingStatusChanged, UserID: "u1", DeviceID: device,
		OccurredAt: t0.Add(occ).Format(time.RFC3339Nano),
		Data:       json.RawMessage(fmt.Sprintf(`{"status":%q,"meeting_num":"m-%s"}`, status, device)),
	}
	if cs > 0 {
		in.ClientSeq = &cs
	}
	ev, err := meetsync.PrepareEvent(in, meetsync.PrepareParams{
		AppID: "app_1", Source: meetsync.SourceClient, ReceivedAt: t0.Add(recv), NewID: func() string { return "evt_x" },
	})
	if err != nil {
		t.Fatalf("PrepareEvent: %v", err)
	}
	return ev
}

func customEvent(t *testing.T, device string, cs int64, recv time.Duration) *meetsync.Event {
	t.Helper()
	in := &meetsync.EventInput{Type: "crm.note", UserID: "u1", DeviceID: device}
	if cs > 0 {
		in.ClientSeq = &cs
	}
	ev, err := meetsync.PrepareEvent(in, meetsync.PrepareParams{
		AppID: "app_1", Source: meetsync.SourceClient, ReceivedAt: t0.Add(recv), NewID: func() string { return "evt_y" },
	})
	if err != nil {
		t.Fatalf("PrepareEvent: %v", err)
	}
	return ev
}

func TestApplyAssignsGapFreeSeq(t *testing.T) {
	t.Parallel()
	u := meetsync.NewUserState("app_1", "u1")
	if u.Status != meetsync.StatusIdle || u.LastSeq != 0 || u.Session.Business != meetsync.SideLoggedOut || u.Session.Meeting != meetsync.SideLoggedOut {
		t.Fatalf("new user state = %+v", u)
	}
	evs := []*meetsync.Event{
		report(t, "d1", 1, "in_meeting", 0, 0),
		report(t, "d1", 1, "idle", 0, 0), // the store filters true duplicates; Apply still counts it
		customEvent(t, "", 0, time.Second),
		report(t, "d1", 0, "idle", -time.Hour, 2*time.Second), // stale: still gets a seq
		customEvent(t, "d2", 5, 3*time.Second),
	}
	for i, ev := range evs {
		u.Apply(ev)
		if ev.Seq != int64(i+1) || u.LastSeq != ev.Seq {
			t.Fatalf("event %d: seq %d, last_seq %d; want %d", i, ev.Seq, u.LastSeq, i+1)
		}
	}
	if !u.UpdatedAt.Equal(t0.Add(3 * time.Second)) {
		t.Errorf("updated_at = %v, want the last event's received_at", u.UpdatedAt)
	}
}

func TestApplyStale(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		events     func(t *testing.T) []*meetsync.Event
		wantStale  []bool
		wantStatus meetsync.MeetingStatus
		wantSince  time.Duration
		wantSeq    int64 // the user's status_seq
	}{
		{
			name: "lower client_seq",
			events: func(t *testing.T) []*meetsync.Event {
				return []*meetsync.Event{report(t, "d1", 5, "in_meeting", 0, 0), report(t, "d1", 3, "idle", time.Minute, time.Minute)}
			},
			wantStale: []bool{false, true}, wantStatus: meetsync.StatusInMeeting, wantSince: 0, wantSeq: 1,
		},
		{
			name: "equal client_seq is not stale", // (the store recognises it as a duplicate first)
			events: func(t *testing.T) []*meetsync.Event {
				return []*meetsync.Event{report(t, "d1", 5, "in_meeting", 0, 0), report(t, "d1", 5, "idle", time.Minute, time.Minute)}
			},
			wantStale: []bool{false, false}, wantStatus: meetsync.StatusIdle, wantSince: time.Minute, wantSeq: 2,
		},
		{
			name: "older occurred_at, higher client_seq",
			events: func(t *testing.T) []*meetsync.Event {
				return []*meetsync.Event{report(t, "d1", 1, "in_meeting", 10*time.Second, 20*time.Second),
					report(t, "d1", 2, "idle", 5*time.Second, 30*time.Second)}
			},
			wantStale: []bool{false, true}, wantStatus: meetsync.StatusInMeeting, wantSince: 10 * time.Second, wantSeq: 1,
		},
		{
			name: "same occurred_at is not stale",
			events: func(t *testing.T) []*meetsync.Event {
				return []*meetsync.Event{report(t, "d1", 0, "in_meeting", 10*time.Second, 20*time.Second),
					report(t, "d1", 0, "in_screen_sharing", 10*time.Second, 30*time.Second)}
			},
			wantStale: []bool{false, false}, wantStatus: meetsync.StatusInScreenSharing, wantSince: 10 * time.Second, wantSeq: 2,
		},
		{
			name: "out of order without client_seq: the newest wins",
			events: func(t *testing.T) []*meetsync.Event {
				return []*meetsync.Event{
					report(t, "d1", 0, "connecting", 1*time.Second, 10*time.Second),
					report(t, "d1", 0, "in_meeting", 3*time.Second, 11*time.Second),
					report(t, "d1", 0, "idle", 2*time.Second, 12*time.Second),
				}
			},
			wantStale: []bool{false, false, true}, wantStatus: meetsync.StatusInMeeting, wantSince: 3 * time.Second, wantSeq: 2,
		},
		{
			name: "occurred_at in the future counts as received_at",
			events: func(t *testing.T) []*meetsync.Event {
				return []*meetsync.Event{
					report(t, "d1", 1, "in_meeting", time.Hour, time.Second), // device clock an hour ahead
					report(t, "d1", 2, "idle", 2*time.Second, 3*time.Second),
				}
			},
			wantStale: []bool{false, false}, wantStatus: meetsync.StatusIdle, wantSince: 2 * time.Second, wantSeq: 2,
		},
		{
			name: "staleness is per device",
			events: func(t *testing.T) []*meetsync.Event {
				return []*meetsync.Event{
					report(t, "d1", 9, "idle", 10*time.Second, 10*time.Second),
					report(t, "d2", 1, "in_meeting", 5*time.Second, 11*time.Second),
				}
			},
			wantStale: []bool{false, false}, wantStatus: meetsync.StatusInMeeting, wantSince: 5 * time.Second, wantSeq: 2,
		},
		{
			name: "a stale status after a custom event with a higher client_seq",
			events: func(t *testing.T) []*meetsync.Event {
				return []*meetsync.Event{
					report(t, "d1", 1, "in_meeting", 0, 0),
					customEvent(t, "d1", 4, time.Second),
					report(t, "d1", 3, "idle", 2*time.Second, 2*time.Second),
				}
			},
			wantStale: []bool{false, false, true}, wantStatus: meetsync.StatusInMeeting, wantSince: 0, wantSeq: 1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			u := meetsync.NewUserState("app_1", "u1")
			for i, ev := range tc.events(t) {
				before := *u
				u.Apply(ev)
				if ev.Stale != tc.wantStale[i] {
					t.Errorf("event %d: stale = %v, want %v", i, ev.Stale, tc.wantStale[i])
				}
				if ev.Stale && (u.Status != before.Status || u.Since != before.Since || u.StatusSeq != before.StatusSeq ||
					u.MeetingNum != before.MeetingNum || u.DeviceID != before.DeviceID) {
					t.Errorf("stale event %d moved the state: %+v → %+v", i, before, *u)
				}
			}
			if u.Status != tc.wantStatus || !u.Since.Equal(t0.Add(tc.wantSince)) || u.StatusSeq != tc.wantSeq {
				t.Errorf("state = %v since %v (status_seq %d), want %v since %v (status_seq %d)",
					u.Status, u.Since, u.StatusSeq, tc.wantStatus, t0.Add(tc.wantSince), tc.wantSeq)
			}
		})
	}
}

func TestApplyDeviceState(t *testing.T) {
	t.Parallel()
	u := meetsync.NewUserState("app_1", "u1")
	u.Apply(report(t, "d1", 3, "in_meeting", 0, time.Second))
	u.Apply(report(t, "d1", 1, "idle", 0, 2*time.Second)) // stale
	u.Apply(customEvent(t, "d2", 7, 3*time.Second))
	u.Apply(customEvent(t, "", 0, 4*time.Second)) // no device: touches none
	if len(u.Devices) != 2 {
		t.Fatalf("devices = %+v, want d1 and d2", u.Devices)
	}
	d1, d2 := u.Device("d1"), u.Device("d2")
	if d1 == nil || d1.LastClientSeq != 3 || d1.Status != meetsync.StatusInMeeting || d1.MeetingNum != "m-d1" ||
		d1.StatusSeq != 1 || !d1.LastSeenAt.Equal(t0.Add(2*time.Second)) || !d1.Dirty {
		t.Errorf("d1 = %+v", d1)
	}
	if d2 == nil || d2.LastClientSeq != 7 || d2.Status != meetsync.StatusIdle || d2.StatusSeq != 0 || !d2.LastSeenAt.Equal(t0.Add(3*time.Second)) {
		t.Errorf("d2 = %+v", d2)
	}
	if u.Device("nope") != nil {
		t.Error("Device(nope) != nil")
	}
	// A device with no status report does not take part in the combination.
	if u.Status != meetsync.StatusInMeeting || u.DeviceID != "d1" || u.MeetingNum != "m-d1" || u.LastSeq != 4 {
		t.Errorf("user = %v from %q (%s), last_seq %d", u.Status, u.DeviceID, u.MeetingNum, u.LastSeq)
	}
	// Duplicate checks are needed only at or below a device's highest client_seq.
	for _, tc := range []struct {
		ev   *meetsync.Event
		want bool
	}{
		{customEvent(t, "d1", 3, 0), true},
		{customEvent(t, "d1", 2, 0), true},
		{customEvent(t, "d1", 4, 0), false},
		{customEvent(t, "d3", 1, 0), false},
		{customEvent(t, "d2", 0, 0), false},
	} {
		if got := u.NeedsDuplicateCheck(tc.ev); got != tc.want {
			t.Errorf("NeedsDuplicateCheck(%s/%d) = %v, want %v", tc.ev.DeviceID, tc.ev.ClientSeq, got, tc.want)
		}
	}
}

func TestApplyCombinesDevices(t *testing.T) {
	t.Parallel()
	u := meetsync.NewUserState("app_1", "u1")
	steps := []struct {
		device, status string
		want           meetsync.MeetingStatus
		wantDevice     string
	}{
		{"A", "in_meeting", meetsync.StatusInMeeting, "A"},
		{"B", "idle", meetsync.StatusInMeeting, "A"},
		{"B", "waiting", meetsync.StatusInMeeting, "A"},
		{"A", "failed", meetsync.StatusWaiting, "B"},
		{"C", "in_waiting_room", meetsync.StatusInWaitingRoom, "C"}, // same rank as waiting: newest
		{"B", "in_screen_sharing", meetsync.StatusInScreenSharing, "B"},
		{"A", "in_meeting_minimized", meetsync.StatusInMeetingMinimized, "A"},
		{"A", "disconnecting", meetsync.StatusInScreenSharing, "B"},
		{"B", "idle", meetsync.StatusDisconnecting, "A"},
		{"A", "idle", meetsync.StatusInWaitingRoom, "C"},
		{"C", "unknown", meetsync.StatusUnknown, "C"}, // all rank 0: the newest
	}
	cs := map[string]int64{}
	for i, s := range steps {
		cs[s.device]++
		ev := report(t, s.device, cs[s.device], s.status, time.Duration(i)*time.Second, time.Duration(i)*time.Second)
		u.Apply(ev)
		if ev.Stale {
			t.Fatalf("step %d is stale", i)
		}
		if u.Status != s.want || u.DeviceID != s.wantDevice || u.MeetingNum != "m-"+s.wantDevice {
			t.Errorf("step %d (%s %s): user %v from %s, want %v from %s", i, s.device, s.status, u.Status, u.DeviceID, s.want, s.wantDevice)
		}
		if u.StatusSeq != u.Device(u.DeviceID).StatusSeq || !u.Since.Equal(u.Device(u.DeviceID).Since) {
			t.Errorf("step %d: user status_seq/since %d/%v do not come from device %s", i, u.StatusSeq, u.Since, u.DeviceID)
		}
	}
}

func TestApplyRecordsFrom(t *testing.T) {
	t.Parallel()
	u := meetsync.NewUserState("app_1", "u1")
	var from []string
	for i, s := range []string{"connecting", "in_meeting", "idle"} {
		ev := report(t, "d1", int64(i+1), s, time.Duration(i)*time.Second, time.Duration(i)*time.Second)
		u.Apply(ev)
		var d struct {
			From     string `json:"from"`
			FromCode *int   `json:"from_code"`
			Status   string `json:"status"`
		}
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			t.Fatalf("data %s: %v", ev.Data, err)
		}
		if d.Status != s || d.FromCode == nil {
			t.Errorf("data %s", ev.Data)
		}
		from = append(from, d.From)
	}
	if fmt.Sprint(from) != "[idle connecting in_meeting]" {
		t.Errorf("from = %v", from)
	}
	// A stale event records the status it did not replace.
	ev := report(t, "d1", 1, "in_meeting", 0, 10*time.Second)
	u.Apply(ev)
	if !ev.Stale || !json.Valid(ev.Data) {
		t.Fatalf("stale = %v, data %s", ev.Stale, ev.Data)
	}
	var d map[string]any
	_ = json.Unmarshal(ev.Data, &d)
	if d["from"] != "idle" || d["from_code"] != 0.0 {
		t.Errorf("stale event data = %s", ev.Data)
	}
}
