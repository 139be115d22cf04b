package neteasetest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// Callback event types the platform sends (会议抄送事件).
const (
	EventInfoChange         = "MEETING_INFO_CHANGE"
	EventStateChange        = "MEETING_STATE_CHANGE_EVENT"
	EventMemberEntry        = "MEETING_MEMBER_ENTRY"
	EventMemberLeave        = "MEETING_MEMBER_LEAVE"
	EventMemberRoleChange   = "MEETING_MEMBER_ROLE_CHANGE"
	EventMemberInvite       = "MEETING_MEMBER_INVITE"
	EventMemberInviteCancel = "MEETING_MEMBER_INVITE_CANCEL"
	EventRecord             = "MEETING_RECORD"
)

// CallbackOption changes how SendCallback builds or signs a callback,
// mostly to send deliberately bad ones.
type CallbackOption func(*callbackOpts)

type callbackOpts struct {
	requestID   string
	appKey      *string
	badCheckSum bool
	badMD5      bool
	curTime     *time.Time
	seconds     bool
	timestamp   *time.Time
}

// WithRequestID uses this requestId instead of a fresh one (to repeat one).
func WithRequestID(id string) CallbackOption { return func(o *callbackOpts) { o.requestID = id } }

// WithAppKey sends this appkey header instead of the server's.
func WithAppKey(appKey string) CallbackOption { return func(o *callbackOpts) { o.appKey = &appKey } }

// WithBadCheckSum signs with a wrong secret.
func WithBadCheckSum() CallbackOption { return func(o *callbackOpts) { o.badCheckSum = true } }

// WithBadMD5 sends an MD5 header that is not the body's (and a CheckSum
// that is right for that wrong MD5).
func WithBadMD5() CallbackOption { return func(o *callbackOpts) { o.badMD5 = true } }

// WithCurTime signs with this time instead of the fake's clock (a stale or
// future CurTime).
func WithCurTime(t time.Time) CallbackOption { return func(o *callbackOpts) { o.curTime = &t } }

// WithCurTimeSeconds sends CurTime in seconds instead of the platform's
// milliseconds.
func WithCurTimeSeconds() CallbackOption { return func(o *callbackOpts) { o.seconds = true } }

// WithTimestamp sets the payload's timestamp (when the event happened).
func WithTimestamp(t time.Time) CallbackOption { return func(o *callbackOpts) { o.timestamp = &t } }

// CallbackResult is what a callback's receiver answered.
type CallbackResult struct {
	RequestID string // the payload's requestId ("" for a raw body)
	Payload   []byte // the body sent
	Status    int
	Body      []byte // the answer's body (first 64 KiB)
}

// SendCallback posts a signed callback to url, like the platform:
// {"requestId","eventType","timestamp","body"} with the headers appkey,
// CurTime (ms), MD5 and CheckSum = sha1(AppSecret + MD5 + CurTime). The
// error is for transport failures only; the receiver's status is in the
// result.
func (s *Server) SendCallback(url, eventType string, body any, opts ...CallbackOption) (*CallbackResult, error) {
	o := s.options(opts)
	if o.requestID == "" {
		o.requestID = randomHex(16)
	}
	ts := s.clock()
	if o.timestamp != nil {
		ts = *o.timestamp
	}
	payload, err := json.Marshal(map[string]any{"requestId": o.requestID, "eventType": eventType, "timestamp": ts.UnixMilli(), "body": body})
	if err != nil {
		return nil, fmt.Errorf("neteasetest: encode callback: %w", err)
	}
	res, err := s.post(url, payload, o)
	if res != nil {
		res.RequestID = o.requestID
	}
	return res, err
}

// SendRawCallback posts payload as it is, signed (per opts).
func (s *Server) SendRawCallback(url string, payload []byte, opts ...CallbackOption) (*CallbackResult, error) {
	return s.post(url, payload, s.options(opts))
}

// SendProbe posts the empty-body request the platform uses to check a
// callback address.
func (s *Server) SendProbe(url string, opts ...CallbackOption) (*CallbackResult, error) {
	return s.post(url, nil, s.options(opts))
}

// Resend posts an earlier callback's payload again (same requestId), with a
// fresh signature: a replay.
func (s *Server) Resend(url string, earlier *CallbackResult, opts ...CallbackOption) (*CallbackResult, error) {
	res, err := s.post(url, earlier.Payload, s.options(opts))
	if res != nil {
		res.RequestID = earlier.RequestID
	}
	return res, err
}

func (s *Server) options(opts []CallbackOption) *callbackOpts {
	o := &callbackOpts{}
	for _, f := range opts {
		f(o)
	}
	return o
}

// CallbackHeaders returns the headers the platform would send with body.
func (s *Server) CallbackHeaders(body []byte, curTime time.Time) http.Header {
	return s.headers(body, &callbackOpts{curTime: &curTime})
}

func (s *Server) headers(body []byte, o *callbackOpts) http.Header {
	t := s.clock()
	if o.curTime != nil {
		t = *o.curTime
	}
	cur := strconv.FormatInt(t.UnixMilli(), 10)
	if o.seconds {
		cur = strconv.FormatInt(t.Unix(), 10)
	}
	md := md5Hex(body)
	if o.badMD5 {
		md = md5Hex(append([]byte("tampered:"), body...))
	}
	secret := s.AppSecret
	if o.badCheckSum {
		secret += "-wrong"
	}
	appKey := s.AppKey
	if o.appKey != nil {
		appKey = *o.appKey
	}
	h := http.Header{}
	h.Set("Content-Type", "application/json;charset=utf-8")
	h.Set("User-Agent", "Apache-HttpClient/4.5.9 (Java/1.8.0_151)")
	h.Set("appkey", appKey)
	h.Set("CurTime", cur)
	h.Set("MD5", md)
	h.Set("CheckSum", sha1Hex(secret+md+cur))
	return h
}

func (s *Server) post(url string, payload []byte, o *callbackOpts) (*CallbackResult, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(payload))
	if err != nil {
		return nil, fmt.Errorf("neteasetest: callback request: %w", err)
	}
	req.Header = s.headers(payload, o)
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("neteasetest: send callback: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return &CallbackResult{Payload: payload, Status: resp.StatusCode, Body: b}, nil
}
