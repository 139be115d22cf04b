package netease

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/meetsync/meetsync"
)

// Meeting API paths (NetEase Meeting server API, 会议管理). {appKey} is the
// application key; the others are filled in per call.
const (
	PathCreateMeeting     = "/scene/meeting/api/{appKey}/v1/create/{type}"
	PathMeetingInfo       = "/scene/meeting/api/{appKey}/v1/info/meetingNum/{meetingNum}"
	PathCancelMeeting     = "/scene/meeting/api/{appKey}/v1/cancel/{meetingId}"
	PathCloseMeetingByNum = "/scene/meeting/api/{appKey}/v1/close/meetingNum/{meetingNum}/recycle/{recycle}"
)

// Meeting types of the create call.
const (
	MeetingTypeRandom    = 1 // an instant meeting with a random number
	MeetingTypeScheduled = 3 // a scheduled meeting (预约会议)
)

// Meeting states as the platform numbers them (in meeting info and in
// MEETING_STATE_CHANGE_EVENT callbacks).
const (
	StateInit     = 1 // created, nobody has joined yet
	StateStarted  = 2
	StateEnded    = 3
	StateCanceled = 4
	StateRecycled = 5 // ended and its number recycled
)

// meetingState maps a platform state to meetsync's; "" when unknown.
func meetingState(s int) string {
	switch s {
	case StateInit:
		return meetsync.MeetingStateScheduled
	case StateStarted:
		return meetsync.MeetingStateStarted
	case StateEnded, StateRecycled:
		return meetsync.MeetingStateEnded
	case StateCanceled:
		return meetsync.MeetingStateCanceled
	}
	return ""
}

type createMeetingRequest struct {
	UserUUID  string `json:"userUuid"`
	Subject   string `json:"subject"`
	Password  string `json:"password,omitempty"`
	StartTime int64  `json:"startTime,omitempty"` // ms
	EndTime   int64  `json:"endTime,omitempty"`   // ms
}

// meetingData is a meeting as the platform returns it.
type meetingData struct {
	MeetingID     flexString   `json:"meetingId"`
	MeetingNum    flexString   `json:"meetingNum"`
	Subject       string       `json:"subject"`
	OwnerUserUUID string       `json:"ownerUserUuid"`
	State         int          `json:"state"`
	StartTime     int64        `json:"startTime"`
	EndTime       int64        `json:"endTime"`
	Members       []memberData `json:"members"`
}

type memberData struct {
	UserUUID string `json:"userUuid"`
	Name     string `json:"name"`
	Role     string `json:"role"`
}

func (m *meetingData) platform() *meetsync.PlatformMeeting {
	pm := &meetsync.PlatformMeeting{MeetingNum: string(m.MeetingNum), MeetingID: string(m.MeetingID),
		Subject: m.Subject, HostUUID: m.OwnerUserUUID, State: meetingState(m.State), Members: []string{}}
	if pm.State == "" {
		pm.State = "unknown"
	}
	if m.StartTime > 0 {
		pm.StartTime = time.UnixMilli(m.StartTime).UTC()
	}
	for _, mb := range m.Members {
		if mb.UserUUID != "" {
			pm.Members = append(pm.Members, mb.UserUUID)
		}
	}
	return pm
}

func (p *Provider) meetingPath(tmpl string, vars ...string) string {
	r := []string{"{appKey}", url.PathEscape(p.cfg.AppKey)}
	for i := 0; i+1 < len(vars); i += 2 {
		r = append(r, vars[i], url.PathEscape(vars[i+1]))
	}
	return strings.NewReplacer(r...).Replace(tmpl)
}

// CreateMeeting creates a meeting hosted by req.HostUUID: a scheduled
// meeting (type 3) when StartTime is set, else an instant one (type 1).
func (p *Provider) CreateMeeting(ctx context.Context, req meetsync.MeetingRequest) (*meetsync.PlatformMeeting, error) {
	if !ValidUserUUID(req.HostUUID) {
		return nil, meetsync.FieldErrorf("host_uuid", "host_uuid must be the host's meeting account (1 to 32 characters among a-z, 0-9, _ @ . -)")
	}
	if !req.EndTime.IsZero() && !req.EndTime.After(req.StartTime) {
		return nil, meetsync.FieldErrorf("end_time", "end_time must be after start_time")
	}
	subject := strings.TrimSpace(req.Subject)
	if subject == "" {
		subject = "Meeting"
	}
	body := createMeetingRequest{UserUUID: req.HostUUID, Subject: subject, Password: req.Password}
	typ := MeetingTypeRandom
	if !req.StartTime.IsZero() {
		typ = MeetingTypeScheduled
		body.StartTime = req.StartTime.UnixMilli()
	}
	if !req.EndTime.IsZero() {
		body.EndTime = req.EndTime.UnixMilli()
	}
	var m meetingData
	if err := p.do(ctx, call{op: "create meeting", method: http.MethodPut,
		path: p.meetingPath(PathCreateMeeting, "{type}", strconv.Itoa(typ)), body: body}, &m); err != nil {
		return nil, err
	}
	if m.MeetingNum == "" {
		return nil, meetsync.Errorf(meetsync.EUNAVAILABLE, "netease create meeting: the answer has no meetingNum")
	}
	return m.platform(), nil
}

// Meeting returns a meeting with its current members. ENOTFOUND.
func (p *Provider) Meeting(ctx context.Context, meetingNum string) (*meetsync.PlatformMeeting, error) {
	m, err := p.meetingInfo(ctx, meetingNum)
	if err != nil {
		return nil, err
	}
	return m.platform(), nil
}

func (p *Provider) meetingInfo(ctx context.Context, meetingNum string) (*meetingData, error) {
	if meetingNum == "" || strings.ContainsAny(meetingNum, "/?#") {
		return nil, meetsync.FieldErrorf("meeting_num", "meeting_num is required")
	}
	var m meetingData
	if err := p.do(ctx, call{op: "meeting info", method: http.MethodGet,
		path: p.meetingPath(PathMeetingInfo, "{meetingNum}", meetingNum)}, &m); err != nil {
		return nil, err
	}
	if m.MeetingNum == "" {
		m.MeetingNum = flexString(meetingNum)
	}
	return &m, nil
}

// CancelMeeting cancels a meeting that has not started (cancel, by its
// meetingId) or ends one in progress (close by meetingNum, recycling the
// number). A meeting already ended or canceled is left as it is.
// ENOTFOUND.
func (p *Provider) CancelMeeting(ctx context.Context, meetingNum string) error {
	m, err := p.meetingInfo(ctx, meetingNum)
	if err != nil {
		return err
	}
	switch {
	case m.State == StateEnded || m.State == StateCanceled || m.State == StateRecycled:
		return nil
	case m.State == StateInit && m.MeetingID != "":
		err = p.do(ctx, call{op: "cancel meeting", method: http.MethodDelete,
			path: p.meetingPath(PathCancelMeeting, "{meetingId}", string(m.MeetingID))}, nil)
	default:
		err = p.do(ctx, call{op: "close meeting", method: http.MethodDelete,
			path: p.meetingPath(PathCloseMeetingByNum, "{meetingNum}", meetingNum, "{recycle}", "true")}, nil)
	}
	return err
}

// flexString is a JSON string or number, kept as text (the platform sends
// ids and meeting numbers either way).
type flexString string

// UnmarshalJSON implements json.Unmarshaler.
func (f *flexString) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*f = ""
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexString(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	*f = flexString(n.String())
	return nil
}
