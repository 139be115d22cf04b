package netease_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/netease"
	"github.com/meetsync/meetsync/netease/neteasetest"
)

func TestSignatureVectors(t *testing.T) {
	t.Parallel()
	// Computed independently: printf '…' | sha1sum / md5sum.
	for _, tc := range []struct{ got, want string }{
		{netease.CheckSum("c9d6ab2f9a6b", "4e1b", "12345678"), "e5827905af68f6f6036b9c8e95206390a6b94b6b"},
		{netease.CheckSum("appsecret", "12345678", "159463903"), "d343a7518a4729cd9230445a96d7d899453638f3"},
		{netease.BodyMD5(nil), "d41d8cd98f00b204e9800998ecf8427e"},
		{netease.BodyMD5([]byte("c9d6ab2f9a6b")), "21671aeb4262c44439d851caf9c2a700"},
		{netease.CallbackCheckSum("c9d6ab2f9a6b", "d41d8cd98f00b204e9800998ecf8427e", "1608110108512"), "5ff09cfa862b022a76b542c222caa11af40b6458"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %s, want %s", tc.got, tc.want)
		}
	}
}

// signed returns the headers the platform sends with body at curTime.
func signed(appKey, secret string, body []byte, curTime string) http.Header {
	md := netease.BodyMD5(body)
	h := http.Header{}
	h.Set("appkey", appKey)
	h.Set("CurTime", curTime)
	h.Set("MD5", md)
	h.Set("CheckSum", netease.CallbackCheckSum(secret, md, curTime))
	return h
}

func newVerifier(t *testing.T) *netease.Provider {
	t.Helper()
	p, err := netease.New(netease.Config{AppKey: testAppKey, AppSecret: testAppSecret})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestVerifyCallback(t *testing.T) {
	t.Parallel()
	p := newVerifier(t)
	now := time.UnixMilli(1700000000000)
	body := []byte(`{"requestId":"r-1","eventType":"MEETING_MEMBER_ENTRY","timestamp":1700000000000,"body":{"meetingNum":"812345678","userUuid":"alice01"}}`)
	ms := func(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }
	good := func() http.Header { return signed(testAppKey, testAppSecret, body, ms(now)) }

	for _, tc := range []struct {
		name   string
		header func() http.Header
		body   []byte
		code   string
		msg    string
	}{
		{name: "valid", header: good},
		{name: "valid, CurTime in seconds", header: func() http.Header {
			return signed(testAppKey, testAppSecret, body, strconv.FormatInt(now.Unix(), 10))
		}},
		{name: "valid, uppercase hex", header: func() http.Header {
			h := good()
			h.Set("MD5", strings.ToUpper(h.Get("MD5")))
			h.Set("CheckSum", strings.ToUpper(netease.CallbackCheckSum(testAppSecret, h.Get("MD5"), h.Get("CurTime"))))
			return h
		}},
		{name: "at the edge of the tolerance", header: func() http.Header {
			return signed(testAppKey, testAppSecret, body, ms(now.Add(-netease.DefaultCallbackTolerance)))
		}},
		{name: "wrong appkey", header: func() http.Header { return signed("other-app", testAppSecret, body, ms(now)) },
			code: meetsync.EUNAUTHORIZED, msg: "appkey"},
		{name: "wrong secret", header: func() http.Header { return signed(testAppKey, "wrong", body, ms(now)) },
			code: meetsync.EUNAUTHORIZED, msg: "CheckSum"},
		{name: "CheckSum over another CurTime", header: func() http.Header {
			h := good()
			h.Set("CurTime", ms(now.Add(time.Second)))
			return h
		}, code: meetsync.EUNAUTHORIZED, msg: "CheckSum"},
		{name: "body altered", header: good, body: []byte(strings.Replace(string(body), "alice01", "mallory", 1)),
			code: meetsync.EUNAUTHORIZED, msg: "MD5"},
		{name: "MD5 not of the body, CheckSum consistent", header: func() http.Header {
			h := good()
			md := netease.BodyMD5([]byte("other"))
			h.Set("MD5", md)
			h.Set("CheckSum", netease.CallbackCheckSum(testAppSecret, md, h.Get("CurTime")))
			return h
		}, code: meetsync.EUNAUTHORIZED, msg: "MD5"},
		{name: "stale CurTime", header: func() http.Header {
			return signed(testAppKey, testAppSecret, body, ms(now.Add(-netease.DefaultCallbackTolerance-time.Second)))
		}, code: meetsync.EUNAUTHORIZED, msg: "CurTime"},
		{name: "future CurTime", header: func() http.Header {
			return signed(testAppKey, testAppSecret, body, ms(now.Add(netease.DefaultCallbackTolerance+time.Second)))
		}, code: meetsync.EUNAUTHORIZED, msg: "CurTime"},
		{name: "CurTime an hour old", header: func() http.Header {
			return signed(testAppKey, testAppSecret, body, ms(now.Add(-time.Hour)))
		}, code: meetsync.EUNAUTHORIZED, msg: "is 1h0m0s away from the server clock (tolerance 5m0s)"},
		// Centuries away: a count of days, not time.Sub's saturated
		// 2562047h47m16.854775807s.
		{name: "CurTime in seconds of the year 5138", header: func() http.Header {
			return signed(testAppKey, testAppSecret, body, "99999999999")
		}, code: meetsync.EUNAUTHORIZED, msg: "CurTime 5138-11-16T09:46:39Z is 1137731 days away from the server clock (tolerance 5m0s)"},
		{name: "CurTime in milliseconds of 9999-12-31", header: func() http.Header {
			return signed(testAppKey, testAppSecret, body, "253402300799999")
		}, code: meetsync.EUNAUTHORIZED, msg: "CurTime 9999-12-31T23:59:59Z is 2913221 days away from the server clock (tolerance 5m0s)"},
		{name: "CurTime after the year 9999", header: func() http.Header {
			return signed(testAppKey, testAppSecret, body, "900000000000000")
		}, code: meetsync.EUNAUTHORIZED, msg: `the CurTime header "900000000000000" is not a unix time`},
		{name: "CurTime not a number", header: func() http.Header { return signed(testAppKey, testAppSecret, body, "yesterday") },
			code: meetsync.EUNAUTHORIZED, msg: "CurTime"},
		{name: "no appkey", header: func() http.Header { h := good(); h.Del("appkey"); return h },
			code: meetsync.EUNAUTHORIZED, msg: "missing header appkey"},
		{name: "no CurTime", header: func() http.Header { h := good(); h.Del("CurTime"); return h },
			code: meetsync.EUNAUTHORIZED, msg: "missing header CurTime"},
		{name: "no MD5", header: func() http.Header { h := good(); h.Del("MD5"); return h },
			code: meetsync.EUNAUTHORIZED, msg: "missing header MD5"},
		{name: "no CheckSum", header: func() http.Header { h := good(); h.Del("CheckSum"); return h },
			code: meetsync.EUNAUTHORIZED, msg: "missing header CheckSum"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := body
			if tc.body != nil {
				b = tc.body
			}
			cb, err := p.VerifyCallback(tc.header(), b, now)
			if tc.code == "" {
				if err != nil {
					t.Fatal(err)
				}
				if cb.RequestID != "r-1" || len(cb.Events) != 1 {
					t.Fatalf("callback = %+v", cb)
				}
				return
			}
			wantCode(t, err, tc.code)
			if !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("message %q does not name %q", err, tc.msg)
			}
			if strings.Contains(err.Error(), testAppSecret) {
				t.Fatalf("message shows the secret: %v", err)
			}
		})
	}
}

func TestVerifyCallbackProbe(t *testing.T) {
	t.Parallel()
	p := newVerifier(t)
	now := time.Now()
	for _, body := range []string{"", "{}", " \n"} {
		cb, err := p.VerifyCallback(signed(testAppKey, testAppSecret, []byte(body), strconv.FormatInt(now.UnixMilli(), 10)), []byte(body), now)
		if err != nil {
			t.Fatalf("probe %q: %v", body, err)
		}
		if cb.RequestID != "" || len(cb.Events) != 0 {
			t.Fatalf("probe %q = %+v", body, cb)
		}
	}
	// A probe is still verified.
	_, err := p.VerifyCallback(signed(testAppKey, "wrong", nil, strconv.FormatInt(now.UnixMilli(), 10)), nil, now)
	wantCode(t, err, meetsync.EUNAUTHORIZED)
}

// eventData decodes an event's data.
func eventData(t *testing.T, ev meetsync.PlatformEvent) map[string]any {
	t.Helper()
	var d map[string]any
	if err := json.Unmarshal(ev.Data, &d); err != nil {
		t.Fatalf("data %s: %v", ev.Data, err)
	}
	return d
}

func TestParseCallback(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := time.UnixMilli(1700000000123).UTC()
	payload := func(eventType, body string) string {
		return `{"requestId":"req-1","eventType":"` + eventType + `","timestamp":1700000000123,"body":` + body + `}`
	}
	type want struct {
		typ, user, num string
		data           map[string]any // fields that must be in data (besides platform)
	}
	for _, tc := range []struct {
		name    string
		payload string
		want    []want
	}{
		{"member entry", payload("MEETING_MEMBER_ENTRY", `{"meetingId":1001,"meetingNum":"812345678","userUuid":"alice01","userName":"Alice"}`),
			[]want{{meetsync.TypeMeetingMemberJoined, "alice01", "812345678", map[string]any{"user_uuid": "alice01", "meeting_id": "1001", "user_name": "Alice", "meeting_num": "812345678"}}}},
		{"member leave, numeric meetingNum", payload("MEETING_MEMBER_LEAVE", `{"meetingNum":812345678,"userUuid":"alice01"}`),
			[]want{{meetsync.TypeMeetingMemberLeft, "alice01", "812345678", map[string]any{"user_uuid": "alice01"}}}},
		{"meeting started", payload("MEETING_STATE_CHANGE_EVENT", `{"meetingId":1001,"meetingNum":"812345678","state":2}`),
			[]want{{meetsync.TypeMeetingStarted, "", "812345678", map[string]any{"state": "started", "platform_state": 2.0}}}},
		{"meeting ended", payload("MEETING_STATE_CHANGE_EVENT", `{"meetingNum":"812345678","state":3}`),
			[]want{{meetsync.TypeMeetingEnded, "", "812345678", map[string]any{"state": "ended"}}}},
		{"meeting canceled", payload("MEETING_STATE_CHANGE_EVENT", `{"meetingNum":"812345678","state":"4"}`),
			[]want{{meetsync.TypeMeetingEnded, "", "812345678", map[string]any{"state": "canceled"}}}},
		{"meeting recycled", payload("MEETING_STATE_CHANGE_EVENT", `{"meetingNum":"812345678","state":5}`),
			[]want{{meetsync.TypeMeetingEnded, "", "812345678", map[string]any{"state": "ended"}}}},
		{"meeting state init", payload("MEETING_STATE_CHANGE_EVENT", `{"meetingNum":"812345678","state":1}`),
			[]want{{meetsync.TypeMeetingPlatformEvent, "", "812345678", map[string]any{"event_type": "MEETING_STATE_CHANGE_EVENT"}}}},
		{"invite", payload("MEETING_MEMBER_INVITE", `{"meetingNum":"812345678","inviterUserUuid":"host1","inviteeUserUuid":"bob01"}`),
			[]want{{meetsync.TypeInvitationCreated, "bob01", "812345678", map[string]any{"inviter_uuid": "host1", "invitee_uuid": "bob01"}}}},
		{"invite several", payload("MEETING_MEMBER_INVITE", `{"meetingNum":"812345678","operatorUserUuid":"host1","inviteeUserUuids":["bob01","carol","bob01"]}`),
			[]want{
				{meetsync.TypeInvitationCreated, "bob01", "812345678", map[string]any{"inviter_uuid": "host1", "invitee_uuid": "bob01"}},
				{meetsync.TypeInvitationCreated, "carol", "812345678", map[string]any{"inviter_uuid": "host1", "invitee_uuid": "carol"}},
			}},
		{"invite canceled", payload("MEETING_MEMBER_INVITE_CANCEL", `{"meetingNum":"812345678","inviterUserUuid":"host1","userUuid":"bob01"}`),
			[]want{{meetsync.TypeInvitationCanceled, "bob01", "812345678", map[string]any{"inviter_uuid": "host1", "invitee_uuid": "bob01"}}}},
		{"other type", payload("MEETING_RECORD", `{"meetingNum":"812345678","url":"https://x/y.mp4"}`),
			[]want{{meetsync.TypeMeetingPlatformEvent, "", "812345678", map[string]any{"event_type": "MEETING_RECORD"}}}},
		{"other type about a user", payload("MEETING_MEMBER_ROLE_CHANGE", `{"meetingNum":"812345678","userUuid":"bob01","role":"cohost"}`),
			[]want{{meetsync.TypeMeetingPlatformEvent, "bob01", "812345678", map[string]any{"event_type": "MEETING_MEMBER_ROLE_CHANGE"}}}},
		{"member entry without a member", payload("MEETING_MEMBER_ENTRY", `{"meetingNum":"812345678"}`),
			[]want{{meetsync.TypeMeetingPlatformEvent, "", "812345678", map[string]any{"note": "body.userUuid missing"}}}},
		{"member entry with a body that is not an object", payload("MEETING_MEMBER_ENTRY", `"alice01"`),
			[]want{{meetsync.TypeMeetingPlatformEvent, "", "", map[string]any{"event_type": "MEETING_MEMBER_ENTRY"}}}},
		{"invite without invitee", payload("MEETING_MEMBER_INVITE", `{"meetingNum":"812345678","inviterUserUuid":"host1"}`),
			[]want{{meetsync.TypeMeetingPlatformEvent, "", "812345678", map[string]any{"note": "body.inviteeUserUuid missing"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cb, err := netease.ParseCallback([]byte(tc.payload), now)
			if err != nil {
				t.Fatal(err)
			}
			if cb.RequestID != "req-1" || len(cb.Events) != len(tc.want) {
				t.Fatalf("callback = %+v", cb)
			}
			var original any
			_ = json.Unmarshal([]byte(tc.payload), &original)
			for i, w := range tc.want {
				ev := cb.Events[i]
				if ev.Type != w.typ || ev.UserUUID != w.user || ev.MeetingNum != w.num || !ev.OccurredAt.Equal(at) {
					t.Fatalf("event %d = %+v, want %+v", i, ev, w)
				}
				if _, ok := meetsync.LookupBuiltinType(ev.Type); !ok {
					t.Fatalf("%s is not a built-in type", ev.Type)
				}
				d := eventData(t, ev)
				for k, v := range w.data {
					if d[k] != v {
						t.Fatalf("data[%s] = %#v, want %#v (data %s)", k, d[k], v, ev.Data)
					}
				}
				if p, _ := json.Marshal(d["platform"]); string(p) != mustCompact(t, original) {
					t.Fatalf("platform = %s, want the original payload", p)
				}
			}
		})
	}
}

func mustCompact(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParseCallbackErrors(t *testing.T) {
	t.Parallel()
	now := time.Now()
	for _, tc := range []struct {
		name, body, field string
	}{
		{"not JSON", `{"requestId":`, ""},
		{"an array", `[{"requestId":"r"}]`, ""},
		{"a string", `"hello"`, ""},
		{"no requestId", `{"eventType":"MEETING_MEMBER_ENTRY","body":{}}`, "requestId"},
		{"blank requestId", `{"requestId":"  ","eventType":"MEETING_MEMBER_ENTRY"}`, "requestId"},
		{"long requestId", `{"requestId":"` + strings.Repeat("r", 129) + `","eventType":"X"}`, "requestId"},
		{"requestId an object", `{"requestId":{},"eventType":"X"}`, ""},
		{"no eventType", `{"requestId":"r-1","body":{}}`, "eventType"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := netease.ParseCallback([]byte(tc.body), now)
			wantCode(t, err, meetsync.EINVALID)
			if meetsync.ErrorField(err) != tc.field {
				t.Fatalf("field = %q, want %q (%v)", meetsync.ErrorField(err), tc.field, err)
			}
		})
	}
	// Without a timestamp the event happened now.
	cb, err := netease.ParseCallback([]byte(`{"requestId":"r","eventType":"X"}`), now)
	if err != nil {
		t.Fatal(err)
	}
	if !cb.Events[0].OccurredAt.Equal(now) {
		t.Fatalf("OccurredAt = %v, want %v", cb.Events[0].OccurredAt, now)
	}
}

// receiver is an HTTP endpoint that verifies callbacks like meetsync's
// handler does and records what it accepted.
type receiver struct {
	p   *netease.Provider
	mu  sync.Mutex
	got []*meetsync.Callback
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	cb, err := rc.p.VerifyCallback(r.Header, body, time.Now())
	if err != nil {
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	rc.mu.Lock()
	rc.got = append(rc.got, cb)
	rc.mu.Unlock()
}

func (rc *receiver) callbacks() []*meetsync.Callback {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]*meetsync.Callback(nil), rc.got...)
}

func TestCallbacksFromTheFake(t *testing.T) {
	t.Parallel()
	p, fake := setup(t)
	rc := &receiver{p: p}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	fake.SetCallbackURL(srv.URL)

	fake.AddUser("host1", "Host")
	num := fake.AddMeeting("host1", "Standup")
	for _, step := range []func() error{
		func() error { return fake.MemberEnter(num, "host1") },
		func() error { return fake.MemberEnter(num, "bob01") },
		func() error { return fake.Invite(num, "host1", "carol") },
		func() error { return fake.CancelInvite(num, "host1", "carol") },
		func() error { return fake.MemberLeave(num, "bob01") },
		func() error { return fake.EndMeeting(num) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	var types []string
	for _, cb := range rc.callbacks() {
		for _, ev := range cb.Events {
			types = append(types, ev.Type+":"+ev.UserUUID)
			if ev.MeetingNum != num {
				t.Fatalf("event %+v has meeting %q, want %q", ev, ev.MeetingNum, num)
			}
		}
	}
	want := []string{"meeting.started:", "meeting.member_joined:host1", "meeting.member_joined:bob01",
		"invitation.created:carol", "invitation.canceled:carol", "meeting.member_left:bob01",
		"meeting.member_left:host1", "meeting.ended:"}
	if strings.Join(types, " ") != strings.Join(want, " ") {
		t.Fatalf("events:\n got %v\nwant %v", types, want)
	}
	if m, _ := fake.Meeting(num); m.State != neteasetest.StateEnded || len(m.Members) != 0 {
		t.Fatalf("fake meeting = %+v", m)
	}

	// Deliberately bad callbacks are refused, naming the failed check.
	before := len(rc.callbacks())
	for _, tc := range []struct {
		opt neteasetest.CallbackOption
		msg string
	}{
		{neteasetest.WithBadCheckSum(), "CheckSum"},
		{neteasetest.WithBadMD5(), "MD5"},
		{neteasetest.WithCurTime(time.Now().Add(-time.Hour)), "CurTime"},
		{neteasetest.WithAppKey("someone-else"), "appkey"},
	} {
		res, err := fake.SendCallback(srv.URL, neteasetest.EventMemberEntry, map[string]any{"meetingNum": num, "userUuid": "bob01"}, tc.opt)
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != http.StatusUnauthorized || !strings.Contains(string(res.Body), tc.msg) {
			t.Fatalf("bad callback answered %d %s, want 401 naming %s", res.Status, res.Body, tc.msg)
		}
	}
	if len(rc.callbacks()) != before {
		t.Fatal("a bad callback was accepted")
	}

	// The probe; a CurTime in seconds; a replay keeps its requestId (the
	// caller deduplicates on it).
	if res, err := fake.SendProbe(srv.URL); err != nil || res.Status != http.StatusOK {
		t.Fatalf("probe: %v %+v", err, res)
	}
	first, err := fake.SendCallback(srv.URL, "MEETING_RECORD", map[string]any{"meetingNum": num}, neteasetest.WithCurTimeSeconds())
	if err != nil || first.Status != http.StatusOK {
		t.Fatalf("callback: %v %+v", err, first)
	}
	again, err := fake.Resend(srv.URL, first)
	if err != nil || again.Status != http.StatusOK {
		t.Fatalf("resend: %v %+v", err, again)
	}
	got := rc.callbacks()
	if n := len(got); got[n-1].RequestID != first.RequestID || got[n-2].RequestID != first.RequestID || got[n-3].RequestID != "" {
		t.Fatalf("request ids: probe %q, first %q, replay %q; want \"\", %q, %q", got[n-3].RequestID, got[n-2].RequestID, got[n-1].RequestID, first.RequestID, first.RequestID)
	}
}
