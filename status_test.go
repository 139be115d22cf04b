package meetsync_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/meetsync/meetsync"
)

func TestParseMeetingStatus(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		raw  string
		want meetsync.MeetingStatus
	}{
		{`-1`, meetsync.StatusFailed},
		{`0`, meetsync.StatusIdle},
		{`1`, meetsync.StatusWaiting},
		{`2`, meetsync.StatusConnecting},
		{`3`, meetsync.StatusInMeeting},
		{`4`, meetsync.StatusInMeetingMinimized},
		{`5`, meetsync.StatusInWaitingRoom},
		{`6`, meetsync.StatusDisconnecting},
		{`7`, meetsync.StatusInScreenSharing},
		{`100`, meetsync.StatusUnknown},
		{` 3 `, meetsync.StatusInMeeting},
		{`"3"`, meetsync.StatusInMeeting},
		{`"-1"`, meetsync.StatusFailed},
		{`"MEETING_STATUS_FAILED"`, meetsync.StatusFailed},
		{`"MEETING_STATUS_IDLE"`, meetsync.StatusIdle},
		{`"MEETING_STATUS_WAITING"`, meetsync.StatusWaiting},
		{`"MEETING_STATUS_CONNECTING"`, meetsync.StatusConnecting},
		{`"MEETING_STATUS_INMEETING"`, meetsync.StatusInMeeting},
		{`"MEETING_STATUS_INMEETING_MINIMIZED"`, meetsync.StatusInMeetingMinimized},
		{`"MEETING_STATUS_IN_WAITING_ROOM"`, meetsync.StatusInWaitingRoom},
		{`"MEETING_STATUS_DISCONNECTING"`, meetsync.StatusDisconnecting},
		{`"MEETING_STATUS_IN_SCREEN_SHARING"`, meetsync.StatusInScreenSharing},
		{`"MEETING_STATUS_UNKNOWN"`, meetsync.StatusUnknown},
		{`"meeting_status_inmeeting"`, meetsync.StatusInMeeting},
		{`"INMEETING"`, meetsync.StatusInMeeting},
		{`"inmeeting"`, meetsync.StatusInMeeting},
		{`"IN_WAITING_ROOM"`, meetsync.StatusInWaitingRoom},
		{`"failed"`, meetsync.StatusFailed},
		{`"idle"`, meetsync.StatusIdle},
		{`"in_meeting"`, meetsync.StatusInMeeting},
		{`"In_Meeting"`, meetsync.StatusInMeeting},
		{`"in_meeting_minimized"`, meetsync.StatusInMeetingMinimized},
		{`"in_waiting_room"`, meetsync.StatusInWaitingRoom},
		{`"in_screen_sharing"`, meetsync.StatusInScreenSharing},
		{`"disconnecting"`, meetsync.StatusDisconnecting},
		{`"unknown"`, meetsync.StatusUnknown},
		{`" idle "`, meetsync.StatusIdle},
		{`"in\u005fmeeting"`, meetsync.StatusInMeeting},
	} {
		t.Run(tc.raw, func(t *testing.T) {
			got, err := meetsync.ParseMeetingStatus(json.RawMessage(tc.raw), "data.status")
			if err != nil || got != tc.want {
				t.Errorf("ParseMeetingStatus(%s) = %v, %v; want %v", tc.raw, got, err, tc.want)
			}
		})
	}
}

func TestParseMeetingStatusErrors(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{
		`8`, `-2`, `99`, `101`, `3.5`, `3.0`, `1e2`, `99999999999999999999`,
		`"8"`, `"bogus"`, `"MEETING_STATUS_"`, `"MEETING_STATUS_INMEETINGX"`, `"in meeting"`, `""`,
		`true`, `null`, `{}`, `[3]`, ``, `"in_meeting`,
	} {
		t.Run(raw, func(t *testing.T) {
			_, err := meetsync.ParseMeetingStatus(json.RawMessage(raw), "events[2].data.status")
			var me *meetsync.Error
			if !errors.As(err, &me) {
				t.Fatalf("ParseMeetingStatus(%s) = %v, want a *meetsync.Error", raw, err)
			}
			if me.Code != meetsync.EINVALID || me.Field != "events[2].data.status" {
				t.Errorf("error = %+v, want invalid on events[2].data.status", me)
			}
			// The message lists every accepted form of every status.
			for _, want := range []string{"-1", "MEETING_STATUS_FAILED", "failed", "3/MEETING_STATUS_INMEETING/in_meeting",
				"MEETING_STATUS_IN_SCREEN_SHARING", "100/MEETING_STATUS_UNKNOWN/unknown"} {
				if !strings.Contains(me.Message, want) {
					t.Errorf("message %q lacks %q", me.Message, want)
				}
			}
		})
	}
}

func TestMeetingStatusNames(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		s             meetsync.MeetingStatus
		name, sdk     string
		active, valid bool
	}{
		{meetsync.StatusFailed, "failed", "MEETING_STATUS_FAILED", false, true},
		{meetsync.StatusIdle, "idle", "MEETING_STATUS_IDLE", false, true},
		{meetsync.StatusWaiting, "waiting", "MEETING_STATUS_WAITING", true, true},
		{meetsync.StatusConnecting, "connecting", "MEETING_STATUS_CONNECTING", true, true},
		{meetsync.StatusInMeeting, "in_meeting", "MEETING_STATUS_INMEETING", true, true},
		{meetsync.StatusInMeetingMinimized, "in_meeting_minimized", "MEETING_STATUS_INMEETING_MINIMIZED", true, true},
		{meetsync.StatusInWaitingRoom, "in_waiting_room", "MEETING_STATUS_IN_WAITING_ROOM", true, true},
		{meetsync.StatusDisconnecting, "disconnecting", "MEETING_STATUS_DISCONNECTING", true, true},
		{meetsync.StatusInScreenSharing, "in_screen_sharing", "MEETING_STATUS_IN_SCREEN_SHARING", true, true},
		{meetsync.StatusUnknown, "unknown", "MEETING_STATUS_UNKNOWN", false, true},
		{meetsync.MeetingStatus(42), "status_42", "", false, false},
	} {
		if tc.s.Name() != tc.name || tc.s.String() != tc.name || tc.s.SDKName() != tc.sdk || tc.s.Active() != tc.active || tc.s.Valid() != tc.valid {
			t.Errorf("%d: name %q sdk %q active %v valid %v; want %q %q %v %v", int(tc.s),
				tc.s.Name(), tc.s.SDKName(), tc.s.Active(), tc.s.Valid(), tc.name, tc.sdk, tc.active, tc.valid)
		}
		if !tc.valid {
			continue
		}
		// Every name StatusByName is given back leads to the same status.
		for _, n := range []string{tc.name, tc.sdk, strings.ToLower(tc.sdk), strings.TrimPrefix(tc.sdk, "MEETING_STATUS_")} {
			if got, ok := meetsync.StatusByName(n); !ok || got != tc.s {
				t.Errorf("StatusByName(%q) = %v, %v; want %v", n, got, ok, tc.s)
			}
		}
	}
	for _, n := range []string{"", "bogus", "42", "3.0", " in_meeting"} {
		if s, ok := meetsync.StatusByName(n); ok {
			t.Errorf("StatusByName(%q) = %v, want not found", n, s)
		}
	}
	if s, ok := meetsync.StatusByName("3"); !ok || s != meetsync.StatusInMeeting {
		t.Errorf("StatusByName(3) = %v, %v", s, ok)
	}
}

func TestParseReason(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		raw  string
		want meetsync.Reason
	}{
		{`0`, meetsync.ReasonBySelf},
		{`1`, meetsync.ReasonRemovedByHost},
		{`2`, meetsync.ReasonClosedByHost},
		{`3`, meetsync.ReasonLoginOnOtherDevice},
		{`4`, meetsync.ReasonClosedBySelfAsHost},
		{`5`, meetsync.ReasonAuthInfoExpired},
		{`6`, meetsync.ReasonByServer},
		{`7`, meetsync.ReasonNotExist},
		{`8`, meetsync.ReasonSyncDataError},
		{`9`, meetsync.ReasonRTCInitError},
		{`10`, meetsync.ReasonJoinChannelError},
		{`11`, meetsync.ReasonJoinTimeout},
		{`12`, meetsync.ReasonEndOfLife},
		{`13`, meetsync.ReasonKickByOtherDevice},
		{`14`, meetsync.ReasonOtherDeviceMoveToWaitingRoom},
		{`20`, meetsync.ReasonWaitingVerifyPassword},
		{`"20"`, meetsync.ReasonWaitingVerifyPassword},
		{`"removed_by_host"`, meetsync.ReasonRemovedByHost},
		{`"REMOVED_BY_HOST"`, meetsync.ReasonRemovedByHost},
		{`"MEETING_DISCONNECTING_REMOVED_BY_HOST"`, meetsync.ReasonRemovedByHost},
		{`"meeting_disconnecting_auth_info_expired"`, meetsync.ReasonAuthInfoExpired},
		{`"other_device_move_to_waiting_room"`, meetsync.ReasonOtherDeviceMoveToWaitingRoom},
	} {
		t.Run(tc.raw, func(t *testing.T) {
			got, err := meetsync.ParseReason(json.RawMessage(tc.raw), "data.arg")
			if err != nil || got != tc.want {
				t.Errorf("ParseReason(%s) = %v, %v; want %v", tc.raw, got, err, tc.want)
			}
		})
	}
	// meetsync's own "reconciled" reason is not a client's to send.
	for _, raw := range []string{`15`, `19`, `21`, `-1`, `1000`, `"reconciled"`, `"1000"`, `"bogus"`, `1.5`, `true`, `{}`, `null`} {
		t.Run("refuses "+raw, func(t *testing.T) {
			_, err := meetsync.ParseReason(json.RawMessage(raw), "data.arg")
			var me *meetsync.Error
			if !errors.As(err, &me) || me.Code != meetsync.EINVALID || me.Field != "data.arg" {
				t.Fatalf("ParseReason(%s) error = %v, want invalid on data.arg", raw, err)
			}
			for _, want := range []string{"0/by_self", "1/removed_by_host", "20/waiting_verify_password"} {
				if !strings.Contains(me.Message, want) {
					t.Errorf("message %q lacks %q", me.Message, want)
				}
			}
			if strings.Contains(me.Message, "reconciled") && raw != `"reconciled"` {
				t.Errorf("message %q offers the internal reason", me.Message)
			}
		})
	}
	if n := meetsync.ReasonRemovedByHost.SDKName(); n != "MEETING_DISCONNECTING_REMOVED_BY_HOST" {
		t.Errorf("SDKName = %q", n)
	}
	if n := meetsync.Reason(99).Name(); n != "reason_99" || meetsync.Reason(99).Valid() {
		t.Errorf("Reason(99): %q valid %v", n, meetsync.Reason(99).Valid())
	}
}

// FuzzParseMeetingStatus checks that status parsing never panics, accepts
// only real statuses, refuses with a field-naming EINVALID error, and agrees
// with the names the status gives itself. Seeds: testdata/fuzz/FuzzParseMeetingStatus.
func FuzzParseMeetingStatus(f *testing.F) {
	f.Add(`"MEETING_STATUS_INMEETING"`)
	f.Add(`3`)
	f.Fuzz(func(t *testing.T, raw string) {
		st, err := meetsync.ParseMeetingStatus(json.RawMessage(raw), "data.status")
		if err != nil {
			var me *meetsync.Error
			if !errors.As(err, &me) || me.Code != meetsync.EINVALID || me.Field != "data.status" || me.Message == "" {
				t.Fatalf("ParseMeetingStatus(%q) error = %#v", raw, err)
			}
			return
		}
		if !st.Valid() {
			t.Fatalf("ParseMeetingStatus(%q) = %d, not a valid status", raw, st)
		}
		for _, name := range []string{st.Name(), st.SDKName()} {
			q, _ := json.Marshal(name)
			again, err := meetsync.ParseMeetingStatus(q, "data.status")
			if err != nil || again != st {
				t.Fatalf("status %d parsed from %q reparses from its name %s as %v, %v", st, raw, q, again, err)
			}
		}
		// A value that is also a reason must parse the same way as a number
		// and as a string: a client may send either.
		if trimmed := strings.TrimSpace(raw); len(trimmed) > 0 && trimmed[0] != '"' {
			q, _ := json.Marshal(trimmed)
			if again, err := meetsync.ParseMeetingStatus(q, "data.status"); err != nil || again != st {
				t.Fatalf("%s parses as %v, its string form as %v, %v", raw, st, again, err)
			}
		}
		_, _ = meetsync.ParseReason(json.RawMessage(raw), "data.arg")
	})
}
