package sim_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/sim"
)

// The platform's callbacks, for each thing it reports, are signed so the
// same app's Provider verifies them, and translate to the right events.
func TestCallbacksVerifyAndTranslate(t *testing.T) {
	t.Parallel()
	p, pr := setup(t)
	c := newCollector(t, p, pr)
	ctx := ctxT(t)
	host, guest := account(t, pr, "host"), account(t, pr, "guest")
	account(t, pr, "invitee")
	m, err := pr.CreateMeeting(ctx, meetsync.MeetingRequest{HostUUID: "host", Subject: "Review"})
	if err != nil {
		t.Fatal(err)
	}
	hs, _ := device(t, p, host)
	gs, _ := device(t, p, guest)
	if err := hs.JoinMeeting(ctx, m.MeetingNum); err != nil {
		t.Fatal(err)
	}
	if err := gs.JoinMeeting(ctx, m.MeetingNum); err != nil {
		t.Fatal(err)
	}
	if err := p.Invite(ctx, appID, m.MeetingNum, "", "invitee"); err != nil {
		t.Fatal(err)
	}
	if err := p.CancelInvite(ctx, appID, m.MeetingNum, "invitee"); err != nil {
		t.Fatal(err)
	}
	if err := gs.LeaveMeeting(ctx); err != nil {
		t.Fatal(err)
	}
	if err := pr.CancelMeeting(ctx, m.MeetingNum); err != nil {
		t.Fatal(err)
	}
	got := c.wait(t, 8)
	wantEvents(t, "callback events", types(got),
		"meeting.started", "meeting.member_joined:host", "meeting.member_joined:guest",
		"invitation.created:invitee", "invitation.canceled:invitee",
		"meeting.member_left:guest", "meeting.member_left:host", "meeting.ended")

	ids := map[string]bool{}
	for _, r := range got {
		if len(r.cb.Events) != 1 || r.cb.RequestID == "" || ids[r.cb.RequestID] {
			t.Fatalf("callback %s: request id %q, %d events", r.body, r.cb.RequestID, len(r.cb.Events))
		}
		ids[r.cb.RequestID] = true
		e := r.cb.Events[0]
		if e.MeetingNum != m.MeetingNum || e.OccurredAt.IsZero() {
			t.Fatalf("event %+v", e)
		}
		var d map[string]json.RawMessage
		if err := json.Unmarshal(e.Data, &d); err != nil {
			t.Fatal(err)
		}
		if string(d["meeting_num"]) != `"`+m.MeetingNum+`"` {
			t.Fatalf("data %s lacks meeting_num", e.Data)
		}
		var orig struct {
			RequestID string `json:"requestId"`
			EventType string `json:"eventType"`
		}
		if err := json.Unmarshal(d["platform"], &orig); err != nil || orig.RequestID != r.cb.RequestID || orig.EventType == "" {
			t.Fatalf("data %s: platform payload missing (%v)", e.Data, err)
		}
		if e.UserUUID != "" && string(d["user_uuid"]) != `"`+e.UserUUID+`"` {
			t.Fatalf("data %s lacks user_uuid", e.Data)
		}
	}
	var d struct{ State, Reason, InviterUUID string }
	_ = json.Unmarshal(got[7].cb.Events[0].Data, &d)
	if d.State != meetsync.MeetingStateEnded {
		t.Fatalf("meeting.ended data %s", got[7].cb.Events[0].Data)
	}
	var inv struct {
		InviterUUID string `json:"inviter_uuid"`
	}
	_ = json.Unmarshal(got[3].cb.Events[0].Data, &inv)
	if inv.InviterUUID != "host" {
		t.Fatalf("invitation data %s", got[3].cb.Events[0].Data)
	}
	h := got[0].header
	for _, k := range []string{"appkey", "CurTime", "MD5", "CheckSum"} {
		if h.Get(k) == "" {
			t.Fatalf("callback lacks header %s: %v", k, h)
		}
	}
	if h.Get("appkey") != p.AppKey(appID) {
		t.Fatalf("appkey header %q", h.Get("appkey"))
	}
	// Another app's provider rejects this app's callbacks.
	_, err = p.Provider("app_other").VerifyCallback(h, got[0].body, time.Now())
	wantCode(t, err, meetsync.EUNAUTHORIZED)
}

func TestVerifyCallbackRejects(t *testing.T) {
	t.Parallel()
	p, pr := setup(t)
	now := time.Now()
	body := []byte(`{"requestId":"r1","eventType":"MEETING_MEMBER_ENTRY","timestamp":1700000000000,"data":{"meetingNum":"100000001","userUuid":"u1"}}`)
	good := p.SignCallback(appID, body, now)
	if cb, err := pr.VerifyCallback(good, body, now); err != nil || cb.RequestID != "r1" ||
		cb.Events[0].Type != meetsync.TypeMeetingMemberJoined || !cb.Events[0].OccurredAt.Equal(time.UnixMilli(1700000000000)) {
		t.Fatalf("good callback: %+v, %v", cb, err)
	}
	with := func(k, v string) http.Header {
		h := good.Clone()
		if v == "" {
			h.Del(k)
		} else {
			h.Set(k, v)
		}
		return h
	}
	tests := []struct {
		name   string
		header http.Header
		body   []byte
		at     time.Time
		field  string
	}{
		{"wrong CheckSum", with("CheckSum", strings.Repeat("0", 40)), body, now, "CheckSum"},
		{"missing CheckSum", with("CheckSum", ""), body, now, "CheckSum"},
		{"stale CurTime", good, body, now.Add(sim.CallbackTolerance + time.Minute), "CurTime"},
		{"future CurTime", good, body, now.Add(-sim.CallbackTolerance - time.Minute), "CurTime"},
		{"bad CurTime", with("CurTime", "yesterday"), body, now, "CurTime"},
		{"body changed", good, []byte(strings.Replace(string(body), "u1", "u2", 1)), now, "MD5"},
		{"wrong appkey", with("appkey", "someone-else"), body, now, "appkey"},
		{"signed with another secret", p.SignCallback("app_other", body, now), body, now, "appkey"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := pr.VerifyCallback(tt.header, tt.body, tt.at)
			wantCode(t, err, meetsync.EUNAUTHORIZED)
			if f := meetsync.ErrorField(err); f != tt.field {
				t.Fatalf("field %q, want %q: %v", f, tt.field, err)
			}
		})
	}
	// A CheckSum over a forged MD5 header that matches a forged body still
	// needs the secret.
	forged := []byte(`{"requestId":"r2","eventType":"MEETING_MEMBER_LEAVE","data":{"meetingNum":"1","userUuid":"u"}}`)
	fh := p.SignCallback("app_other", forged, now)
	fh.Set("appkey", p.AppKey(appID))
	_, err := pr.VerifyCallback(fh, forged, now)
	wantCode(t, err, meetsync.EUNAUTHORIZED)
}

func TestVerifyCallbackBodies(t *testing.T) {
	t.Parallel()
	p, pr := setup(t)
	now := time.Now()
	verify := func(body string) (*meetsync.Callback, error) {
		return pr.VerifyCallback(p.SignCallback(appID, []byte(body), now), []byte(body), now)
	}
	// The validation probe: an empty body.
	cb, err := verify("")
	if err != nil || cb.RequestID != "" || len(cb.Events) != 0 {
		t.Fatalf("probe: %+v, %v", cb, err)
	}
	invalid := []struct{ body, field string }{
		{`not json`, "body"},
		{`[1,2]`, "body"},
		{`{"eventType":"MEETING_MEMBER_ENTRY","data":{"meetingNum":"1","userUuid":"u"}}`, "requestId"},
		{`{"requestId":"r","data":{}}`, "eventType"},
		{`{"requestId":"r","eventType":"MEETING_MEMBER_ENTRY","data":"x"}`, "data"},
		{`{"requestId":"r","eventType":"MEETING_MEMBER_ENTRY","data":{"userUuid":"u"}}`, "data.meetingNum"},
		{`{"requestId":"r","eventType":"MEETING_MEMBER_LEAVE","data":{"meetingNum":"1"}}`, "data.userUuid"},
		{`{"requestId":"r","eventType":"MEETING_STATE_CHANGE_EVENT","data":{"state":2}}`, "data.meetingNum"},
	}
	for _, tt := range invalid {
		_, err := verify(tt.body)
		wantCode(t, err, meetsync.EINVALID)
		if f := meetsync.ErrorField(err); f != tt.field {
			t.Errorf("%s: field %q, want %q (%v)", tt.body, f, tt.field, err)
		}
	}
	valid := []struct{ body, typ, user, meeting string }{
		// Numbers for ids are accepted.
		{`{"requestId":"r","eventType":"MEETING_MEMBER_ENTRY","data":{"meetingNum":123,"userUuid":"u"}}`, meetsync.TypeMeetingMemberJoined, "u", "123"},
		{`{"requestId":"r","eventType":"MEETING_STATE_CHANGE_EVENT","data":{"meetingNum":"9","state":2,"userUuid":"x"}}`, meetsync.TypeMeetingStarted, "", "9"},
		{`{"requestId":"r","eventType":"MEETING_STATE_CHANGE_EVENT","data":{"meetingNum":"9","state":4}}`, meetsync.TypeMeetingEnded, "", "9"},
		// A state meetsync does not interpret, and an unknown event type.
		{`{"requestId":"r","eventType":"MEETING_STATE_CHANGE_EVENT","data":{"meetingNum":"9","state":1}}`, meetsync.TypeMeetingPlatformEvent, "", "9"},
		{`{"requestId":"r","eventType":"MEETING_RECORD","data":{"url":"https://x"}}`, meetsync.TypeMeetingPlatformEvent, "", ""},
	}
	for _, tt := range valid {
		cb, err := verify(tt.body)
		if err != nil {
			t.Fatalf("%s: %v", tt.body, err)
		}
		e := cb.Events[0]
		if e.Type != tt.typ || e.UserUUID != tt.user || e.MeetingNum != tt.meeting || !e.OccurredAt.Equal(now.UTC()) {
			t.Errorf("%s: event %+v", tt.body, e)
		}
	}
	cb, _ = verify(`{"requestId":"r","eventType":"MEETING_RECORD","data":{"url":"https://x"}}`)
	var d struct {
		EventType string          `json:"event_type"`
		Platform  json.RawMessage `json:"platform"`
	}
	if err := json.Unmarshal(cb.Events[0].Data, &d); err != nil || d.EventType != "MEETING_RECORD" || !strings.Contains(string(d.Platform), "https://x") {
		t.Fatalf("platform_event data %s", cb.Events[0].Data)
	}
}

// Callbacks reach the sink in order even when it fails some attempts; a
// callback the sink keeps refusing is dropped after its attempts and the
// next one goes on.
func TestCallbackOrderAndRetry(t *testing.T) {
	t.Parallel()
	p, pr := setup(t)
	p.SetCallbackRetry(4, time.Millisecond)
	c := newCollector(t, p, pr)
	c.fail = func(body []byte, attempt int) error {
		switch {
		case strings.Contains(string(body), `"userUuid":"never"`):
			return errors.New("refused for good")
		case attempt <= 2:
			return errors.New("temporarily down") // every callback fails twice
		}
		return nil
	}
	ctx := ctxT(t)
	account(t, pr, "host")
	for _, u := range []string{"u0", "u1", "never", "u2", "u3"} {
		account(t, pr, u)
	}
	m, err := pr.CreateMeeting(ctx, meetsync.MeetingRequest{HostUUID: "host"})
	if err != nil {
		t.Fatal(err)
	}
	// Invitations of a meeting that has not started.
	for _, u := range []string{"u0", "u1", "never", "u2", "u3"} {
		if err := p.Invite(ctx, appID, m.MeetingNum, "host", u); err != nil {
			t.Fatal(err)
		}
	}
	got := c.wait(t, 4)
	wantEvents(t, "order", types(got),
		"invitation.created:u0", "invitation.created:u1", "invitation.created:u2", "invitation.created:u3")
	waitStats(t, p, "4 sent, 1 dropped after 4 attempts, every other callback failing twice", func(st sim.Stats) bool {
		return st.CallbacksQueued == 5 && st.CallbacksSent == 4 && st.CallbacksDropped == 1 && st.CallbackErrors == 4*2+4
	})
}

// During an outage callbacks wait, then arrive in order.
func TestCallbacksWaitOutOutage(t *testing.T) {
	t.Parallel()
	p, pr := setup(t)
	var mu sync.Mutex
	down, violated := false, false
	c := newCollector(t, p, pr)
	inner := c.sink
	p.SetCallbackSink(func(ctx context.Context, app string, h http.Header, body []byte) error {
		mu.Lock()
		violated = violated || down
		mu.Unlock()
		return inner(ctx, app, h, body)
	})
	setDown := func(on bool) {
		mu.Lock()
		down = on
		mu.Unlock()
	}
	ctx := ctxT(t)
	acct := account(t, pr, "host")
	m, err := pr.CreateMeeting(ctx, meetsync.MeetingRequest{HostUUID: "host"})
	if err != nil {
		t.Fatal(err)
	}
	sdk, _ := device(t, p, acct)
	if err := sdk.JoinMeeting(ctx, m.MeetingNum); err != nil {
		t.Fatal(err)
	}
	c.wait(t, 2) // started, joined
	setDown(true)
	p.SetOutage(true)
	if err := sdk.LeaveMeeting(ctx); err != nil { // local: works in an outage
		t.Fatal(err)
	}
	if st, _ := sdk.Status(); st != meetsync.StatusIdle {
		t.Fatalf("status %v", st)
	}
	if v := p.View(appID); len(v.Meetings[0].Members) != 0 {
		t.Fatalf("members %v", v.Meetings[0].Members)
	}
	waitStats(t, p, "a callback held by the outage", func(st sim.Stats) bool { return st.CallbacksHeld == 1 })
	setDown(false)
	p.SetOutage(false)
	got := c.wait(t, 3)
	wantEvents(t, "after outage", types(got), "meeting.started", "meeting.member_joined:host", "meeting.member_left:host")
	mu.Lock()
	defer mu.Unlock()
	if violated {
		t.Fatal("a callback was offered to the sink during the outage")
	}
}

// Close stops delivery to a sink that never accepts, without waiting out
// its retries.
func TestCloseStopsDelivery(t *testing.T) {
	t.Parallel()
	p := sim.New()
	pr := p.Provider(appID)
	p.SetCallbackRetry(1000, time.Hour)
	attempted := make(chan struct{}, 10)
	p.SetCallbackSink(func(ctx context.Context, app string, h http.Header, body []byte) error {
		attempted <- struct{}{}
		return errors.New("down")
	})
	ctx := ctxT(t)
	account(t, pr, "host")
	m, _ := pr.CreateMeeting(ctx, meetsync.MeetingRequest{HostUUID: "host"})
	account(t, pr, "x")
	if err := p.Invite(ctx, appID, m.MeetingNum, "", "x"); err != nil {
		t.Fatal(err)
	}
	<-attempted
	if err := p.Close(); err != nil { // returns although a retry is an hour away
		t.Fatal(err)
	}
	if st := p.Stats(); st.CallbacksDropped != 1 || st.CallbacksSent != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// waitStats polls the platform's counters until ok holds, failing the test
// at a deadline.
func waitStats(t *testing.T, p *sim.Platform, what string, ok func(sim.Stats) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := p.Stats()
		if ok(st) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats never showed %s: %+v", what, st)
		}
		time.Sleep(time.Millisecond)
	}
}

// Without a sink, callbacks are dropped (and counted).
func TestNoSink(t *testing.T) {
	t.Parallel()
	p, pr := setup(t)
	ctx := ctxT(t)
	account(t, pr, "host")
	account(t, pr, "x")
	m, _ := pr.CreateMeeting(ctx, meetsync.MeetingRequest{HostUUID: "host"})
	if err := p.Invite(ctx, appID, m.MeetingNum, "", "x"); err != nil {
		t.Fatal(err)
	}
	if st := p.Stats(); st.CallbacksDropped != 1 || st.CallbacksQueued != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestInviteErrors(t *testing.T) {
	t.Parallel()
	p, pr := setup(t)
	ctx := ctxT(t)
	host := account(t, pr, "host")
	account(t, pr, "x")
	m, _ := pr.CreateMeeting(ctx, meetsync.MeetingRequest{HostUUID: "host"})
	wantCode(t, p.Invite(ctx, appID, "", "", "x"), meetsync.EINVALID)
	wantCode(t, p.Invite(ctx, appID, m.MeetingNum, "", ""), meetsync.EINVALID)
	wantCode(t, p.Invite(ctx, appID, "999", "", "x"), meetsync.ENOTFOUND)
	wantCode(t, p.Invite(ctx, appID, m.MeetingNum, "", "ghost"), meetsync.ENOTFOUND)
	wantCode(t, p.CancelInvite(ctx, appID, m.MeetingNum, "x"), meetsync.ENOTFOUND)
	sdk, _ := device(t, p, host)
	if err := sdk.JoinMeeting(ctx, m.MeetingNum); err != nil {
		t.Fatal(err)
	}
	wantCode(t, p.Invite(ctx, appID, m.MeetingNum, "", "host"), meetsync.ECONFLICT)
	wantCode(t, p.RemoveMember(ctx, appID, m.MeetingNum, "x"), meetsync.ENOTFOUND)
	if err := pr.CancelMeeting(ctx, m.MeetingNum); err != nil {
		t.Fatal(err)
	}
	wantCode(t, p.Invite(ctx, appID, m.MeetingNum, "", "x"), meetsync.ECONFLICT)
}

func FuzzVerifyCallback(f *testing.F) {
	for _, s := range []string{
		``,
		`{"requestId":"r","eventType":"MEETING_MEMBER_ENTRY","timestamp":1,"data":{"meetingNum":"1","userUuid":"u"}}`,
		`{"requestId":"r","eventType":"MEETING_STATE_CHANGE_EVENT","data":{"meetingNum":1e3,"state":3}}`,
		`{"requestId":"r","eventType":"X","data":null}`,
		`{"requestId":1}`,
		`{"data":{"meetingNum":{}}}`,
	} {
		f.Add([]byte(s), true)
	}
	p := sim.New()
	defer p.Close()
	pr := p.Provider(appID)
	now := time.Unix(1_800_000_000, 0)
	f.Fuzz(func(t *testing.T, body []byte, sign bool) {
		h := http.Header{}
		if sign {
			h = p.SignCallback(appID, body, now)
		}
		cb, err := pr.VerifyCallback(h, body, now)
		if !sign {
			if meetsync.ErrorCode(err) != meetsync.EUNAUTHORIZED {
				t.Fatalf("unsigned callback: %v", err)
			}
			return
		}
		if err != nil {
			if c := meetsync.ErrorCode(err); c != meetsync.EINVALID {
				t.Fatalf("signed callback: error code %s: %v", c, err)
			}
			return
		}
		for _, e := range cb.Events {
			if !json.Valid(e.Data) {
				t.Fatalf("event data %q is not JSON", e.Data)
			}
			switch e.Type {
			case meetsync.TypeMeetingMemberJoined, meetsync.TypeMeetingMemberLeft, meetsync.TypeMeetingStarted,
				meetsync.TypeMeetingEnded, meetsync.TypeInvitationCreated, meetsync.TypeInvitationCanceled,
				meetsync.TypeMeetingPlatformEvent:
			default:
				t.Fatalf("event type %q", e.Type)
			}
		}
	})
}
