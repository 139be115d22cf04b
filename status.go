package meetsync

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
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

// ActiveStatuses returns the statuses in which a user counts as in (or
// entering, or leaving) a meeting.
func ActiveStatuses() []MeetingStatus {
	var out []MeetingStatus
	for s, info := range statuses {
		if info.rank > 0 {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
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

	// statusExact and reasonExact hold the accepted names in the exact
	// spellings clients use (lower case, and upper case as in the SDK), so
	// that those are looked up without lowercasing. Each key k maps to
	// what statusByName/reasonByName hold for strings.ToLower(k).
	statusExact = map[string]MeetingStatus{}
	reasonExact = map[string]Reason{}
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
	for k, v := range statusByName {
		statusExact[k], statusExact[strings.ToUpper(k)] = v, v
	}
	for k, v := range reasonByName {
		reasonExact[k], reasonExact[strings.ToUpper(k)] = v, v
	}
	statusNames = strings.Join(sn, ", ")
	reasonNames = strings.Join(rn, ", ")
}

// ParseMeetingStatus accepts the NEMeeting integer code (3), the SDK
// constant name (MEETING_STATUS_INMEETING), its short form (INMEETING) or
// the snake-case name (in_meeting), case-insensitively. The value is raw
// JSON: a number or a string. field names the input field for the error.
func ParseMeetingStatus(raw json.RawMessage, field string) (MeetingStatus, error) {
	if s, ok := meetingStatusOf(raw); ok {
		return s, nil
	}
	return 0, statusError(raw, field)
}

func statusError(raw json.RawMessage, field string) error {
	return FieldErrorf(field, "unknown meeting status %s; accepted: %s", shorten(raw), statusNames)
}

// meetingStatusOf is ParseMeetingStatus without the error. The common forms
// (a code, or a name in one of the exact spellings) are read without
// allocating; anything else takes the general, case-insensitive path.
func meetingStatusOf(raw json.RawMessage) (MeetingStatus, bool) {
	v, isNum, ok := scalarBytes(raw)
	if ok && isNum {
		if n, err := atoi(v); err == nil && MeetingStatus(n).Valid() {
			return MeetingStatus(n), true
		}
	} else if ok {
		if s, found := statusExact[string(v)]; found {
			return s, true
		}
		if n, isInt := smallInt(v); isInt {
			// No name is a number: only the code can match.
			if MeetingStatus(n).Valid() {
				return MeetingStatus(n), true
			}
			return 0, false
		}
		sv := string(v)
		if s, found := statusByName[strings.ToLower(strings.TrimSpace(sv))]; found {
			return s, true
		}
		if n, err := strconv.Atoi(strings.TrimSpace(sv)); err == nil && MeetingStatus(n).Valid() {
			return MeetingStatus(n), true
		}
	}
	return 0, false
}

// ParseReason accepts a NEMeetingCode as an integer, a snake-case name
// (removed_by_host) or the SDK name (MEETING_DISCONNECTING_REMOVED_BY_HOST).
func ParseReason(raw json.RawMessage, field string) (Reason, error) {
	if r, ok := reasonOf(raw); ok {
		return r, nil
	}
	return 0, reasonError(raw, field)
}

func reasonError(raw json.RawMessage, field string) error {
	return FieldErrorf(field, "unknown reason %s; accepted: %s", shorten(raw), reasonNames)
}

// reasonOf is ParseReason without the error (see meetingStatusOf).
func reasonOf(raw json.RawMessage) (Reason, bool) {
	v, isNum, ok := scalarBytes(raw)
	if ok && isNum {
		if n, err := atoi(v); err == nil && Reason(n).Valid() && Reason(n) != ReasonReconciled {
			return Reason(n), true
		}
	} else if ok {
		if r, found := reasonExact[string(v)]; found {
			return r, true
		}
		if n, isInt := smallInt(v); isInt {
			// No name is a number: only the code can match.
			if Reason(n).Valid() && Reason(n) != ReasonReconciled {
				return Reason(n), true
			}
			return 0, false
		}
		sv := string(v)
		if r, found := reasonByName[strings.ToLower(strings.TrimSpace(sv))]; found {
			return r, true
		}
		if n, err := strconv.Atoi(strings.TrimSpace(sv)); err == nil && Reason(n).Valid() && Reason(n) != ReasonReconciled {
			return Reason(n), true
		}
	}
	return 0, false
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
	b, isNum, ok := scalarBytes(raw)
	return string(b), isNum, ok
}

// scalarBytes is scalar returning bytes, which may alias raw: a number's
// text, or a string's content when it holds no escapes (the common case,
// read without allocating).
func scalarBytes(raw []byte) (v []byte, isNum, ok bool) {
	b := bytes.TrimSpace(raw)
	if len(b) == 0 {
		return nil, false, false
	}
	if b[0] == '"' {
		if s, plain := plainJSONString(b); plain {
			return s, false, true
		}
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return nil, false, false
		}
		return []byte(s), false, true
	}
	if b[0] == '-' || (b[0] >= '0' && b[0] <= '9') {
		return b, true, true
	}
	return nil, false, false
}

// plainJSONString returns the content of the JSON string literal b when it
// is exactly one literal holding valid UTF-8 and no escapes or control
// characters: then the content is the decoded string as is.
func plainJSONString(b []byte) ([]byte, bool) {
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return nil, false
	}
	s := b[1 : len(b)-1]
	ascii := true
	for _, c := range s {
		if c < 0x20 || c == '"' || c == '\\' {
			return nil, false
		}
		if c >= utf8.RuneSelf {
			ascii = false
		}
	}
	if !ascii && !utf8.Valid(s) {
		return nil, false
	}
	return s, true
}

// smallInt parses b when it is -?[0-9]{1,18}: exactly what strconv.Atoi
// accepts from such text, with the same value, and without converting to a string.
func smallInt(b []byte) (int, bool) {
	d := b
	if len(d) > 0 && d[0] == '-' {
		d = d[1:]
	}
	if len(d) == 0 || len(d) > 18 {
		return 0, false
	}
	n := 0
	for _, c := range d {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	if len(d) < len(b) {
		n = -n
	}
	return n, true
}

// atoi is strconv.Atoi of b, without converting short integers to a string.
func atoi(b []byte) (int, error) {
	if n, ok := smallInt(b); ok {
		return n, nil
	}
	return strconv.Atoi(string(b))
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
