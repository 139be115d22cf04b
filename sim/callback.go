package sim

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/meetsync/meetsync"
)

// Callback event types, as NetEase Meeting names them.
const (
	EventMemberEntry  = "MEETING_MEMBER_ENTRY"
	EventMemberLeave  = "MEETING_MEMBER_LEAVE"
	EventStateChange  = "MEETING_STATE_CHANGE_EVENT"
	EventInvite       = "MEETING_MEMBER_INVITE"
	EventInviteCancel = "MEETING_MEMBER_INVITE_CANCEL"
)

// Callback header names (NetEase's; http.Header matches them in any case).
const (
	HeaderAppKey   = "appkey"
	HeaderCurTime  = "CurTime"
	HeaderMD5      = "MD5"
	HeaderCheckSum = "CheckSum"
)

// Meeting states in MEETING_STATE_CHANGE_EVENT's data.state (NetEase's codes).
const (
	stateCodeScheduled = 1
	stateCodeStarted   = 2
	stateCodeEnded     = 3
	stateCodeCanceled  = 4
)

// CallbackSink receives the platform's callbacks: the request headers and
// body a NetEase callback would carry, for one meetsync app. An error makes
// the platform try the same callback again later (callbacks of an app are
// delivered in order, so the next waits).
type CallbackSink func(ctx context.Context, appID string, header http.Header, body []byte) error

type callbacks struct {
	mu       sync.Mutex
	sink     CallbackSink
	attempts int
	backoff  time.Duration
	queues   map[string]*cbQueue // app id → its callbacks in order
}

type cbQueue struct {
	items   []cbItem
	running bool // a goroutine is draining it
}

type cbItem struct {
	key, secret string
	body        []byte
}

// SetCallbackSink sets where callbacks go (nil: nowhere; callbacks raised
// while there is no sink are dropped). The server wires it to its own
// callback handler, in process.
func (p *Platform) SetCallbackSink(sink func(ctx context.Context, appID string, header http.Header, body []byte) error) {
	p.cb.mu.Lock()
	p.cb.sink = sink
	p.cb.mu.Unlock()
}

// SetCallbackRetry sets how many times a callback is offered to a failing
// sink before it is dropped (at least 1; default DefaultCallbackAttempts)
// and the wait after the first failure (doubling, capped at
// MaxCallbackBackoff; default DefaultCallbackBackoff).
func (p *Platform) SetCallbackRetry(attempts int, backoff time.Duration) {
	p.cb.mu.Lock()
	p.cb.attempts = max(attempts, 1)
	p.cb.backoff = max(backoff, 0)
	p.cb.mu.Unlock()
}

// callbackBody is the JSON body of a callback.
type callbackBody struct {
	RequestID string          `json:"requestId"`
	EventType string          `json:"eventType"`
	Timestamp int64           `json:"timestamp"` // milliseconds since the epoch
	Data      json.RawMessage `json:"data"`
}

// callbackData is the data of the callbacks the platform sends; fields not
// used by an event type are left out.
type callbackData struct {
	MeetingNum      string `json:"meetingNum"`
	MeetingID       string `json:"meetingId,omitempty"`
	Subject         string `json:"subject,omitempty"`
	HostUserUUID    string `json:"hostUserUuid,omitempty"`
	State           int    `json:"state,omitempty"`
	UserUUID        string `json:"userUuid,omitempty"`
	Nickname        string `json:"nickname,omitempty"`
	Role            string `json:"role,omitempty"`
	Reason          string `json:"reason,omitempty"`
	InviterUserUUID string `json:"inviterUserUuid,omitempty"`
}

func stateData(m *meeting) callbackData {
	code := map[string]int{
		meetsync.MeetingStateScheduled: stateCodeScheduled, meetsync.MeetingStateStarted: stateCodeStarted,
		meetsync.MeetingStateEnded: stateCodeEnded, meetsync.MeetingStateCanceled: stateCodeCanceled,
	}[m.State]
	return callbackData{MeetingNum: m.Num, MeetingID: m.ID, Subject: m.Subject, HostUserUUID: m.Host, State: code}
}

func memberData(a *app, m *meeting, uuid, reason string) callbackData {
	d := callbackData{MeetingNum: m.Num, MeetingID: m.ID, UserUUID: uuid, Role: "member", Reason: reason}
	if uuid == m.Host {
		d.Role = "host"
	}
	if acct, ok := a.Accounts[uuid]; ok {
		d.Nickname = acct.Name
	}
	return d
}

func inviteData(m *meeting, invitee, inviter string) callbackData {
	return callbackData{MeetingNum: m.Num, MeetingID: m.ID, UserUUID: invitee, InviterUserUUID: inviter}
}

// queueCallbackLocked raises a callback for app a: it is queued behind the
// app's earlier callbacks and delivered by a goroutine. Called with p.mu
// held, so callbacks are queued in the order things happened.
func (p *Platform) queueCallbackLocked(a *app, eventType string, d callbackData) {
	data, _ := json.Marshal(d)
	body, _ := json.Marshal(callbackBody{RequestID: "sim-" + randomHex(12), EventType: eventType,
		Timestamp: p.Now().UnixMilli(), Data: data})
	p.cb.mu.Lock()
	defer p.cb.mu.Unlock()
	if p.cb.sink == nil || p.closed {
		p.count(func(s *Stats) { s.CallbacksDropped++ })
		return
	}
	p.count(func(s *Stats) { s.CallbacksQueued++ })
	q := p.cb.queues[a.ID]
	if q == nil {
		q = &cbQueue{}
		p.cb.queues[a.ID] = q
	}
	q.items = append(q.items, cbItem{key: a.Key, secret: a.Secret, body: body})
	if !q.running {
		q.running = true
		p.wg.Add(1)
		go p.drain(a.ID, q)
	}
}

// drain delivers an app's callbacks one at a time, in order, until its
// queue is empty or the platform closes.
func (p *Platform) drain(appID string, q *cbQueue) {
	defer p.wg.Done()
	for {
		p.cb.mu.Lock()
		if len(q.items) == 0 || p.ctx.Err() != nil {
			if n := len(q.items); n > 0 {
				p.count(func(s *Stats) { s.CallbacksDropped += int64(n) })
				q.items = nil
			}
			q.running = false
			p.cb.mu.Unlock()
			return
		}
		it := q.items[0]
		p.cb.mu.Unlock()

		p.deliver(appID, it)

		p.cb.mu.Lock()
		q.items[0] = cbItem{}
		q.items = q.items[1:]
		p.cb.mu.Unlock()
	}
}

// deliver offers one callback to the sink until it accepts it, its attempts
// are used up, or the platform closes. During an outage it waits (without
// using attempts). Each attempt is signed afresh with the current time.
func (p *Platform) deliver(appID string, it cbItem) {
	for attempt := 1; ; attempt++ {
		if !p.waitOutage() {
			p.count(func(s *Stats) { s.CallbacksDropped++ })
			return
		}
		p.cb.mu.Lock()
		sink, attempts, backoff := p.cb.sink, p.cb.attempts, p.cb.backoff
		p.cb.mu.Unlock()
		if sink == nil {
			p.count(func(s *Stats) { s.CallbacksDropped++ })
			return
		}
		h := signCallback(it.key, it.secret, it.body, p.Now())
		err := sink(p.ctx, appID, h, bytes.Clone(it.body))
		if err == nil {
			p.count(func(s *Stats) { s.CallbacksSent++ })
			return
		}
		p.count(func(s *Stats) { s.CallbackErrors++ })
		if attempt >= attempts {
			p.count(func(s *Stats) { s.CallbacksDropped++ })
			return
		}
		wait := backoff
		for i := 1; i < attempt && wait < MaxCallbackBackoff; i++ {
			wait *= 2
		}
		t := time.NewTimer(min(wait, MaxCallbackBackoff))
		select {
		case <-t.C:
		case <-p.ctx.Done():
			t.Stop()
			p.count(func(s *Stats) { s.CallbacksDropped++ })
			return
		}
	}
}

// waitOutage waits while an outage lasts; false when the platform closed.
func (p *Platform) waitOutage() bool {
	for {
		p.outageMu.Lock()
		ch := p.outageOff
		p.outageMu.Unlock()
		if ch == nil {
			return p.ctx.Err() == nil
		}
		p.count(func(s *Stats) { s.CallbacksHeld++ })
		select {
		case <-ch:
		case <-p.ctx.Done():
			return false
		}
	}
}

// SignCallback returns the headers the platform would send with body for
// app appID at time curTime: appkey, CurTime (Unix milliseconds, as NetEase
// sends it), MD5 (hex MD5
// of the body) and CheckSum (lowercase hex SHA1 of secret + MD5 +
// CurTime). Tests use it to forge callbacks, good and bad.
func (p *Platform) SignCallback(appID string, body []byte, curTime time.Time) http.Header {
	p.mu.Lock()
	a := p.appLocked(appID)
	key, secret := a.Key, a.Secret
	p.mu.Unlock()
	return signCallback(key, secret, body, curTime)
}

func signCallback(key, secret string, body []byte, t time.Time) http.Header {
	sum := md5.Sum(body)
	md5hex := hex.EncodeToString(sum[:])
	cur := strconv.FormatInt(t.UnixMilli(), 10)
	h := http.Header{}
	h.Set(HeaderAppKey, key)
	h.Set(HeaderCurTime, cur)
	h.Set(HeaderMD5, md5hex)
	h.Set(HeaderCheckSum, checkSum(secret, md5hex, cur))
	h.Set("Content-Type", "application/json;charset=utf-8")
	return h
}

func checkSum(secret, md5hex, curTime string) string {
	s := sha1.Sum([]byte(secret + md5hex + curTime))
	return hex.EncodeToString(s[:])
}

// verifyCallback checks, in this order: the four headers are present
// ("missing header CheckSum"); the appkey header names this app; CurTime
// is a Unix time (milliseconds, as NetEase sends it, or seconds) within
// CallbackTolerance of now; CheckSum is SHA1(secret + MD5 header +
// CurTime); the MD5 header is the MD5 of the body. Any failure is
// EUNAUTHORIZED naming the header at fault. A verified empty body is a
// validation probe (no events); otherwise the body is parsed and
// translated (EINVALID when it cannot be).
func verifyCallback(key, secret string, header http.Header, body []byte, now time.Time) (*meetsync.Callback, error) {
	unauthorized := func(field, format string, args ...any) error {
		e := meetsync.Errorf(meetsync.EUNAUTHORIZED, format, args...)
		e.Field = field
		return e
	}
	for _, name := range []string{HeaderAppKey, HeaderCurTime, HeaderMD5, HeaderCheckSum} {
		if strings.TrimSpace(header.Get(name)) == "" {
			return nil, unauthorized(name, "callback rejected: missing header %s", name)
		}
	}
	if got := header.Get(HeaderAppKey); got != key {
		return nil, unauthorized("appkey", "callback appkey header does not name this app")
	}
	cur := header.Get(HeaderCurTime)
	t, ok := meetsync.ParseCallbackTime(cur)
	if !ok {
		return nil, unauthorized("CurTime", "callback CurTime header must be a Unix time in milliseconds or seconds")
	}
	if d := now.Sub(t); d > CallbackTolerance || d < -CallbackTolerance {
		return nil, unauthorized("CurTime", "callback CurTime is %s away from now (tolerance %s)", meetsync.CallbackSkew(now, t), CallbackTolerance)
	}
	md5hdr := strings.ToLower(header.Get(HeaderMD5))
	want := checkSum(secret, md5hdr, cur)
	if subtle.ConstantTimeCompare([]byte(strings.ToLower(header.Get(HeaderCheckSum))), []byte(want)) != 1 {
		return nil, unauthorized("CheckSum", "callback CheckSum does not match")
	}
	sum := md5.Sum(body)
	if md5hdr != hex.EncodeToString(sum[:]) {
		return nil, unauthorized("MD5", "callback MD5 header does not match the body")
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return &meetsync.Callback{}, nil
	}
	return parseCallback(body, now)
}

// flexString accepts a JSON string or number (NetEase sends ids as either).
type flexString string

func (f *flexString) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
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

// eventData is the data of a translated PlatformEvent.
type eventData struct {
	MeetingNum  string          `json:"meeting_num,omitempty"`
	UserUUID    string          `json:"user_uuid,omitempty"`
	State       string          `json:"state,omitempty"`
	InviterUUID string          `json:"inviter_uuid,omitempty"`
	Reason      string          `json:"reason,omitempty"`
	EventType   string          `json:"event_type,omitempty"`
	Platform    json.RawMessage `json:"platform"`
}

// parseCallback translates a verified callback body into meetsync events.
func parseCallback(body []byte, now time.Time) (*meetsync.Callback, error) {
	var cb callbackBody
	if err := json.Unmarshal(body, &cb); err != nil {
		return nil, meetsync.FieldErrorf("body", "callback body is not a JSON object with requestId, eventType, timestamp and data")
	}
	if cb.RequestID == "" {
		return nil, meetsync.FieldErrorf("requestId", "callback requestId is required")
	}
	if cb.EventType == "" {
		return nil, meetsync.FieldErrorf("eventType", "callback eventType is required")
	}
	var d struct {
		MeetingNum      flexString `json:"meetingNum"`
		UserUUID        flexString `json:"userUuid"`
		InviterUserUUID flexString `json:"inviterUserUuid"`
		State           int        `json:"state"`
		Reason          string     `json:"reason"`
	}
	if len(bytes.TrimSpace(cb.Data)) > 0 && !bytes.Equal(bytes.TrimSpace(cb.Data), []byte("null")) {
		if err := json.Unmarshal(cb.Data, &d); err != nil {
			return nil, meetsync.FieldErrorf("data", "callback data must be an object with meetingNum, userUuid, …")
		}
	}
	at := now.UTC()
	if cb.Timestamp > 0 {
		at = time.UnixMilli(cb.Timestamp).UTC()
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, body); err != nil {
		return nil, meetsync.FieldErrorf("body", "callback body is not valid JSON")
	}
	ev := meetsync.PlatformEvent{MeetingNum: string(d.MeetingNum), UserUUID: string(d.UserUUID), OccurredAt: at}
	out := eventData{MeetingNum: ev.MeetingNum, UserUUID: ev.UserUUID, Platform: compact.Bytes()}
	needMeeting, needUser := true, false
	switch cb.EventType {
	case EventMemberEntry:
		ev.Type, needUser = meetsync.TypeMeetingMemberJoined, true
	case EventMemberLeave:
		ev.Type, needUser, out.Reason = meetsync.TypeMeetingMemberLeft, true, d.Reason
	case EventInvite:
		ev.Type, needUser, out.InviterUUID = meetsync.TypeInvitationCreated, true, string(d.InviterUserUUID)
	case EventInviteCancel:
		ev.Type, needUser, out.InviterUUID = meetsync.TypeInvitationCanceled, true, string(d.InviterUserUUID)
	case EventStateChange:
		switch d.State {
		case stateCodeStarted:
			ev.Type, out.State = meetsync.TypeMeetingStarted, meetsync.MeetingStateStarted
		case stateCodeEnded:
			ev.Type, out.State = meetsync.TypeMeetingEnded, meetsync.MeetingStateEnded
		case stateCodeCanceled:
			ev.Type, out.State = meetsync.TypeMeetingEnded, meetsync.MeetingStateCanceled
		default:
			ev.Type, out.EventType = meetsync.TypeMeetingPlatformEvent, cb.EventType
		}
		// A meeting-level event concerns no one account.
		ev.UserUUID, out.UserUUID = "", ""
	default:
		ev.Type, out.EventType, needMeeting = meetsync.TypeMeetingPlatformEvent, cb.EventType, false
	}
	if needMeeting && ev.MeetingNum == "" {
		return nil, meetsync.FieldErrorf("data.meetingNum", "callback %s needs data.meetingNum", cb.EventType)
	}
	if needUser && ev.UserUUID == "" {
		return nil, meetsync.FieldErrorf("data.userUuid", "callback %s needs data.userUuid", cb.EventType)
	}
	ev.Data, _ = json.Marshal(out)
	return &meetsync.Callback{RequestID: cb.RequestID, Events: []meetsync.PlatformEvent{ev}}, nil
}
