package meetsync

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// MeetingStatus is a NEMeeting meeting status, with the SDK's own integer codes.
type MeetingStatus int

// The NEMeeting statuses (NEMeetingStatus in the SDK).
const (
	StatusFailed             MeetingStatus = -1
	StatusIdle               MeetingStatus = 0
	StatusWaiting            MeetingStatus = 1
	StatusConnecting         MeetingStatus = 2
	StatusInMeeting          MeetingStatus = 3
	StatusInMeetingMinimized MeetingStatus = 4
	StatusInWaitingRoom      MeetingStatus = 5
	StatusDisconnecting      MeetingStatus = 6
	StatusInScreenSharing    MeetingStatus = 7
	StatusUnknown            MeetingStatus = 100
)

type statusInfo struct {
	name string // snake-case name used in the API
	sdk  string // SDK constant name
	rank int    // how "present in a meeting" the status is, to combine devices
}

var statuses = map[MeetingStatus]statusInfo{
	StatusFailed:             {"failed", "MEETING_STATUS_FAILED", 0},
	StatusIdle:               {"idle", "MEETING_STATUS_IDLE", 0},
	StatusWaiting:            {"waiting", "MEETING_STATUS_WAITING", 1},
	StatusConnecting:         {"connecting", "MEETING_STATUS_CONNECTING", 1},
	StatusInMeeting:          {"in_meeting", "MEETING_STATUS_INMEETING", 2},
	StatusInMeetingMinimized: {"in_meeting_minimized", "MEETING_STATUS_INMEETING_MINIMIZED", 2},
	StatusInWaitingRoom:      {"in_waiting_room", "MEETING_STATUS_IN_WAITING_ROOM", 1},
	StatusDisconnecting:      {"disconnecting", "MEETING_STATUS_DISCONNECTING", 1},
	StatusInScreenSharing:    {"in_screen_sharing", "MEETING_STATUS_IN_SCREEN_SHARING", 2},
	StatusUnknown:            {"unknown", "MEETING_STATUS_UNKNOWN", 0},
}

// Valid reports whether s is one of the NEMeeting statuses.
func (s MeetingStatus) Valid() bool { _, ok := statuses[s]; return ok }

// Name returns the snake-case name (in_meeting).
func (s MeetingStatus) Name() string {
	if i, ok := statuses[s]; ok {
		return i.name
	}
	return "status_" + strconv.Itoa(int(s))
}

// SDKName returns the SDK constant name (MEETING_STATUS_INMEETING).
func (s MeetingStatus) SDKName() string { return statuses[s].sdk }

// Active reports whether the status means the user is in, or entering, a meeting.
func (s MeetingStatus) Active() bool { return statuses[s].rank > 0 }

func (s MeetingStatus) rank() int { return statuses[s].rank }

// String returns the snake-case name.
func (s MeetingStatus) String() string { return s.Name() }

// Reason is the NEMeetingCode that accompanies a status change (the SDK's `arg`).
type Reason int

// The NEMeetingCode reasons.
const (
	ReasonBySelf                       Reason = 0
	ReasonRemovedByHost                Reason = 1
	ReasonClosedByHost                 Reason = 2
	ReasonLoginOnOtherDevice           Reason = 3
	ReasonClosedBySelfAsHost           Reason = 4
	ReasonAuthInfoExpired              Reason = 5
	ReasonByServer                     Reason = 6
	ReasonNotExist                     Reason = 7
	ReasonSyncDataError                Reason = 8
	ReasonRTCInitError                 Reason = 9
	ReasonJoinChannelError             Reason = 10
	ReasonJoinTimeout                  Reason = 11
	ReasonEndOfLife                    Reason = 12
	ReasonKickByOtherDevice            Reason = 13
	ReasonOtherDeviceMoveToWaitingRoom Reason = 14
	ReasonWaitingVerifyPassword        Reason = 20
	// ReasonReconciled is meetsync's own reason for a status corrected by
	// the reconciler from the platform's view. It is not an SDK code.
	ReasonReconciled Reason = 1000
)

var reasons = map[Reason]string{
	ReasonBySelf:                       "by_self",
	ReasonRemovedByHost:                "removed_by_host",
	ReasonClosedByHost:                 "closed_by_host",
	ReasonLoginOnOtherDevice:           "login_on_other_device",
	ReasonClosedBySelfAsHost:           "closed_by_self_as_host",
	ReasonAuthInfoExpired:              "auth_info_expired",
	ReasonByServer:                     "by_server",
	ReasonNotExist:                     "not_exist",
	ReasonSyncDataError:                "sync_data_error",
	ReasonRTCInitError:                 "rtc_init_error",
	ReasonJoinChannelError:             "join_channel_error",
	ReasonJoinTimeout:                  "join_timeout",
	ReasonEndOfLife:                    "end_of_life",
	ReasonKickByOtherDevice:            "kick_by_other_device",
	ReasonOtherDeviceMoveToWaitingRoom: "other_device_move_to_waiting_room",
	ReasonWaitingVerifyPassword:        "waiting_verify_password",
	ReasonReconciled:                   "reconciled",
}

// Valid reports whether r is a known reason code.
func (r Reason) Valid() bool { _, ok := reasons[r]; return ok }

// Name returns the snake-case name of the reason (removed_by_host).
func (r Reason) Name() string {
	if n, ok := reasons[r]; ok {
		return n
	}
	return "reason_" + strconv.Itoa(int(r))
}

// SDKName returns the SDK constant name of the reason (MEETING_DISCONNECTING_REMOVED_BY_HOST).
func (r Reason) SDKName() string { return "MEETING_DISCONNECTING_" + strings.ToUpper(r.Name()) }

// String returns the snake-case name.
func (r Reason) String() string { return r.Name() }

var (
	statusByName = map[string]MeetingStatus{}
	reasonByName = map[string]Reason{}
	statusNames  string
	reasonNames  string
)

func init() {
	var codes []int
	for s := range statuses {
		codes = append(codes, int(s))
	}
	sort.Ints(codes)
	var sn, rn []string
	for _, c := range codes {
		s, i := MeetingStatus(c), statuses[MeetingStatus(c)]
		statusByName[i.name] = s
		statusByName[strings.ToLower(i.sdk)] = s
		statusByName[strings.ToLower(strings.TrimPrefix(i.sdk, "MEETING_STATUS_"))] = s
		sn = append(sn, fmt.Sprintf("%d/%s/%s", s, i.sdk, i.name))
	}
	var rcodes []int
	for r := range reasons {
		rcodes = append(rcodes, int(r))
	}
	sort.Ints(rcodes)
	for _, c := range rcodes {
		r, n := Reason(c), reasons[Reason(c)]
		if r == ReasonReconciled {
			continue
		}
		reasonByName[n] = r
		reasonByName[strings.ToLower(r.SDKName())] = r
		rn = append(rn, fmt.Sprintf("%d/%s", r, n))
	}
	statusNames = strings.Join(sn, ", ")
	reasonNames = strings.Join(rn, ", ")
}

// ParseMeetingStatus accepts the NEMeeting integer code (3), the SDK
// constant name (MEETING_STATUS_INMEETING), its short form (INMEETING) or
// the snake-case name (in_meeting), case-insensitively. The value is raw
// JSON: a number or a string. field names the input field for the error.
func ParseMeetingStatus(raw json.RawMessage, field string) (MeetingStatus, error) {
	v, isNum, ok := scalar(raw)
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

// ParseReason accepts a NEMeetingCode as an integer, a snake-case name
// (removed_by_host) or the SDK name (MEETING_DISCONNECTING_REMOVED_BY_HOST).
func ParseReason(raw json.RawMessage, field string) (Reason, error) {
	v, isNum, ok := scalar(raw)
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

// StatusByName returns the status for a snake-case or SDK name or a code.
func StatusByName(name string) (MeetingStatus, bool) {
	if s, ok := statusByName[strings.ToLower(name)]; ok {
		return s, true
	}
	if n, err := strconv.Atoi(name); err == nil && MeetingStatus(n).Valid() {
		return MeetingStatus(n), true
	}
	return 0, false
}

// StatusNames lists the accepted status values for error messages.
func StatusNames() string { return statusNames }

// scalar returns the text of a JSON number or string.
func scalar(raw json.RawMessage) (v string, isNum, ok bool) {
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

func shorten(raw json.RawMessage) string {
	s := string(raw)
	if s == "" {
		return "(missing)"
	}
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return s
}
