package netease

import (
	"bytes"
	"crypto/md5"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/meetsync/meetsync"
)

// Callback header names. The platform sends "appkey" in lower case; HTTP
// header names are case-insensitive.
const (
	CallbackHeaderAppKey   = "appkey"
	CallbackHeaderCurTime  = "CurTime"
	CallbackHeaderMD5      = "MD5"
	CallbackHeaderCheckSum = "CheckSum"
)

// Callback event types (eventType) of NetEase Meeting (会议抄送事件) that
// meetsync interprets; every other type becomes meeting.platform_event.
const (
	EventMemberEntry        = "MEETING_MEMBER_ENTRY"
	EventMemberLeave        = "MEETING_MEMBER_LEAVE"
	EventStateChange        = "MEETING_STATE_CHANGE_EVENT"
	EventMemberInvite       = "MEETING_MEMBER_INVITE"
	EventMemberInviteCancel = "MEETING_MEMBER_INVITE_CANCEL"
)

// Limits on a callback.
const (
	maxRequestID  = 128
	maxInvitees   = 1000
	maxIdentifier = 128
)

// CallbackCheckSum returns the signature of a callback: lowercase hex
// SHA1(secret + md5hex + curTime), where md5hex is the MD5 header.
func CallbackCheckSum(secret, md5hex, curTime string) string {
	return sha1Hex(secret + md5hex + curTime)
}

// BodyMD5 returns the lowercase hex MD5 of a callback body (its MD5 header).
func BodyMD5(body []byte) string {
	sum := md5.Sum(body)
	return hex.EncodeToString(sum[:])
}

// VerifyCallback checks a callback's headers against the app's credentials
// and the body, then translates it (see ParseCallback). EUNAUTHORIZED names
// the check that failed: appkey, MD5, CheckSum or CurTime (outside the
// tolerance of now, in either direction). EINVALID for a verified body
// that cannot be parsed.
func (p *Provider) VerifyCallback(header http.Header, body []byte, now time.Time) (*meetsync.Callback, error) {
	if err := p.verifyCallbackHeaders(header, body, now); err != nil {
		return nil, err
	}
	return ParseCallback(body, now)
}

func rejectf(format string, args ...any) error {
	return meetsync.Errorf(meetsync.EUNAUTHORIZED, "netease callback rejected: "+format, args...)
}

func equalFold(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(strings.ToLower(a)), []byte(strings.ToLower(b))) == 1
}

func (p *Provider) verifyCallbackHeaders(h http.Header, body []byte, now time.Time) error {
	appKey := h.Get(CallbackHeaderAppKey)
	curTime := strings.TrimSpace(h.Get(CallbackHeaderCurTime))
	md5hdr := strings.TrimSpace(h.Get(CallbackHeaderMD5))
	sum := strings.TrimSpace(h.Get(CallbackHeaderCheckSum))
	for _, m := range []struct{ name, value string }{
		{CallbackHeaderAppKey, appKey}, {CallbackHeaderCurTime, curTime},
		{CallbackHeaderMD5, md5hdr}, {CallbackHeaderCheckSum, sum},
	} {
		if m.value == "" {
			return rejectf("missing header %s", m.name)
		}
	}
	if subtle.ConstantTimeCompare([]byte(appKey), []byte(p.cfg.AppKey)) != 1 {
		return rejectf("the appkey header is not this app's app_key")
	}
	if !equalFold(md5hdr, BodyMD5(body)) {
		return rejectf("the MD5 header does not match the MD5 of the body (the body was altered or truncated)")
	}
	if !equalFold(sum, CallbackCheckSum(p.cfg.AppSecret, md5hdr, curTime)) {
		return rejectf("the CheckSum header is wrong (not signed with this app's app_secret)")
	}
	t, ok := meetsync.ParseCallbackTime(curTime)
	if !ok {
		return rejectf("the CurTime header %q is not a unix time", safeText(curTime, 32))
	}
	// Abs, not -d: a CurTime centuries ahead saturates d at the minimum
	// Duration, whose negation overflows back to a negative number.
	if d := now.Sub(t); d.Abs() > p.cfg.CallbackTolerance {
		return rejectf("CurTime %s is %s away from the server clock (tolerance %s): stale or replayed",
			t.UTC().Format(time.RFC3339), meetsync.CallbackSkew(now, t), p.cfg.CallbackTolerance)
	}
	return nil
}

// callbackPayload is the envelope of every callback.
type callbackPayload struct {
	RequestID flexString      `json:"requestId"`
	EventType flexString      `json:"eventType"`
	Timestamp flexString      `json:"timestamp"` // ms
	Body      json.RawMessage `json:"body"`
}

// callbackBody holds the body fields meetsync reads. Names the platform
// documents differently for some events are accepted in both spellings.
type callbackBody struct {
	MeetingID        flexString   `json:"meetingId"`
	MeetingNum       flexString   `json:"meetingNum"`
	UserUUID         flexString   `json:"userUuid"`
	UserName         flexString   `json:"userName"`
	State            flexString   `json:"state"`
	InviterUserUUID  flexString   `json:"inviterUserUuid"`
	OperatorUserUUID flexString   `json:"operatorUserUuid"`
	InviteeUserUUID  flexString   `json:"inviteeUserUuid"`
	InviteeUserUUIDs []flexString `json:"inviteeUserUuids"`
}

// ParseCallback translates a callback body (already verified) into meetsync
// events:
//
//	MEETING_MEMBER_ENTRY / MEETING_MEMBER_LEAVE → meeting.member_joined / meeting.member_left
//	MEETING_STATE_CHANGE_EVENT (state 2 / 3, 4, 5) → meeting.started / meeting.ended
//	MEETING_MEMBER_INVITE / MEETING_MEMBER_INVITE_CANCEL → invitation.created / invitation.canceled (one per invitee)
//	anything else → meeting.platform_event
//
// Each event's data carries the original payload under "platform". An
// interpreted type whose body lacks what meetsync needs (a member's
// userUuid, a known state) is kept as meeting.platform_event with a "note".
// An empty body or "{}" (the platform's address probe) gives a Callback
// without events. EINVALID for a body that is not a JSON object, or has no
// requestId or eventType.
func ParseCallback(body []byte, now time.Time) (*meetsync.Callback, error) {
	raw := bytes.TrimSpace(body)
	if len(raw) == 0 || string(raw) == "{}" {
		return &meetsync.Callback{}, nil
	}
	if raw[0] != '{' {
		return nil, meetsync.Errorf(meetsync.EINVALID, "netease callback: the body is not a JSON object")
	}
	var pl callbackPayload
	if err := json.Unmarshal(raw, &pl); err != nil {
		return nil, meetsync.Errorf(meetsync.EINVALID, "netease callback: the body is not a valid callback: %s", safeText(err.Error(), 200))
	}
	reqID := strings.TrimSpace(string(pl.RequestID))
	if reqID == "" {
		return nil, meetsync.FieldErrorf("requestId", "netease callback: requestId is required")
	}
	if len(reqID) > maxRequestID {
		return nil, meetsync.FieldErrorf("requestId", "netease callback: requestId is longer than %d bytes", maxRequestID)
	}
	eventType := strings.TrimSpace(string(pl.EventType))
	if eventType == "" {
		return nil, meetsync.FieldErrorf("eventType", "netease callback: eventType is required")
	}
	t := callbackTime(string(pl.Timestamp), now)
	tr := translator{eventType: eventType, platform: json.RawMessage(raw), at: t}
	var b callbackBody
	if len(pl.Body) == 0 || json.Unmarshal(pl.Body, &b) != nil {
		tr.bodyErr = true
	}
	events, err := tr.events(&b)
	if err != nil {
		return nil, err
	}
	return &meetsync.Callback{RequestID: reqID, Events: events}, nil
}

// callbackTime reads the payload's timestamp (ms); now when absent or absurd.
func callbackTime(ts string, now time.Time) time.Time {
	n, err := strconv.ParseInt(strings.TrimSpace(ts), 10, 64)
	if err != nil || n <= 0 || n > 253402300799999 { // after 9999-12-31
		return now.UTC()
	}
	return time.UnixMilli(n).UTC()
}

type translator struct {
	eventType string
	platform  json.RawMessage
	at        time.Time
	bodyErr   bool // the body is missing or not the expected object
}

func ident(f flexString) string {
	s := strings.TrimSpace(string(f))
	if len(s) > maxIdentifier {
		return ""
	}
	return s
}

func (tr *translator) event(typ, userUUID, meetingNum string, data map[string]any) meetsync.PlatformEvent {
	data["platform"] = tr.platform
	if meetingNum != "" {
		data["meeting_num"] = meetingNum
	}
	raw, err := json.Marshal(data)
	if err != nil { // cannot happen: strings and an already parsed JSON value
		raw = json.RawMessage(`{}`)
	}
	return meetsync.PlatformEvent{Type: typ, UserUUID: userUUID, MeetingNum: meetingNum, OccurredAt: tr.at, Data: raw}
}

// other keeps the callback as meeting.platform_event; note says why an
// interpreted type was not translated.
func (tr *translator) other(b *callbackBody, note string) meetsync.PlatformEvent {
	data := map[string]any{"event_type": tr.eventType}
	if note != "" {
		data["note"] = note
	}
	var user, num string
	if !tr.bodyErr {
		user, num = ident(b.UserUUID), ident(b.MeetingNum)
		if id := ident(b.MeetingID); id != "" {
			data["meeting_id"] = id
		}
	}
	return tr.event(meetsync.TypeMeetingPlatformEvent, user, num, data)
}

func (tr *translator) events(b *callbackBody) ([]meetsync.PlatformEvent, error) {
	switch tr.eventType {
	case EventMemberEntry, EventMemberLeave, EventStateChange, EventMemberInvite, EventMemberInviteCancel:
		if tr.bodyErr {
			return []meetsync.PlatformEvent{tr.other(b, "body missing or not in the expected form")}, nil
		}
	default:
		return []meetsync.PlatformEvent{tr.other(b, "")}, nil
	}
	num, id := ident(b.MeetingNum), ident(b.MeetingID)
	base := func() map[string]any {
		d := map[string]any{}
		if id != "" {
			d["meeting_id"] = id
		}
		return d
	}
	switch tr.eventType {
	case EventMemberEntry, EventMemberLeave:
		user := ident(b.UserUUID)
		if user == "" {
			return []meetsync.PlatformEvent{tr.other(b, "body.userUuid missing")}, nil
		}
		typ := meetsync.TypeMeetingMemberJoined
		if tr.eventType == EventMemberLeave {
			typ = meetsync.TypeMeetingMemberLeft
		}
		d := base()
		d["user_uuid"] = user
		if name := ident(b.UserName); name != "" {
			d["user_name"] = name
		}
		return []meetsync.PlatformEvent{tr.event(typ, user, num, d)}, nil

	case EventStateChange:
		st, err := strconv.Atoi(strings.TrimSpace(string(b.State)))
		var typ string
		switch {
		case err != nil:
		case st == StateStarted:
			typ = meetsync.TypeMeetingStarted
		case st == StateEnded || st == StateCanceled || st == StateRecycled:
			typ = meetsync.TypeMeetingEnded
		}
		if typ == "" {
			return []meetsync.PlatformEvent{tr.other(b, "body.state is not a started or ended state")}, nil
		}
		d := base()
		d["state"] = meetingState(st)
		d["platform_state"] = st
		return []meetsync.PlatformEvent{tr.event(typ, "", num, d)}, nil

	default: // invitations
		inviter := ident(b.InviterUserUUID)
		if inviter == "" {
			inviter = ident(b.OperatorUserUUID)
		}
		invitees := make([]string, 0, 1+len(b.InviteeUserUUIDs))
		seen := map[string]bool{}
		add := func(f flexString) {
			if s := ident(f); s != "" && !seen[s] {
				seen[s] = true
				invitees = append(invitees, s)
			}
		}
		add(b.InviteeUserUUID)
		for _, f := range b.InviteeUserUUIDs {
			add(f)
		}
		if len(invitees) == 0 {
			add(b.UserUUID)
		}
		if len(invitees) == 0 {
			return []meetsync.PlatformEvent{tr.other(b, "body.inviteeUserUuid missing")}, nil
		}
		if len(invitees) > maxInvitees {
			return nil, meetsync.FieldErrorf("body.inviteeUserUuids", "netease callback: more than %d invitees", maxInvitees)
		}
		typ := meetsync.TypeInvitationCreated
		if tr.eventType == EventMemberInviteCancel {
			typ = meetsync.TypeInvitationCanceled
		}
		out := make([]meetsync.PlatformEvent, 0, len(invitees))
		for _, inv := range invitees {
			d := base()
			d["invitee_uuid"] = inv
			if inviter != "" {
				d["inviter_uuid"] = inviter
			}
			out = append(out, tr.event(typ, inv, num, d))
		}
		return out, nil
	}
}
