package netease_test

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/netease"
)

// fuzzNow is the verifier's clock in the fuzz tests; the seed corpus is
// signed with CurTime values around it.
var fuzzNow = time.UnixMilli(1700000000000)

// checkCallback asserts what holds for any callback VerifyCallback accepts.
func checkCallback(t *testing.T, body []byte, cb *meetsync.Callback) {
	t.Helper()
	trimmed := strings.TrimSpace(string(body))
	if cb.RequestID == "" {
		if len(cb.Events) != 0 || (trimmed != "" && trimmed != "{}") {
			t.Fatalf("a callback without requestId must be the probe: %+v", cb)
		}
		return
	}
	if len(cb.Events) == 0 {
		t.Fatal("a callback with a requestId has events")
	}
	for _, ev := range cb.Events {
		if _, ok := meetsync.LookupBuiltinType(ev.Type); !ok || !strings.HasPrefix(ev.Type, "meeting.") && !strings.HasPrefix(ev.Type, "invitation.") {
			t.Fatalf("event type %q", ev.Type)
		}
		var d map[string]json.RawMessage
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			t.Fatalf("data is not a JSON object: %s", ev.Data)
		}
		if len(d["platform"]) == 0 {
			t.Fatalf("data has no platform payload: %s", ev.Data)
		}
		switch ev.Type {
		case meetsync.TypeMeetingMemberJoined, meetsync.TypeMeetingMemberLeft, meetsync.TypeInvitationCreated, meetsync.TypeInvitationCanceled:
			if ev.UserUUID == "" {
				t.Fatalf("%s without a user", ev.Type)
			}
		}
		if ev.OccurredAt.IsZero() {
			t.Fatal("OccurredAt is zero")
		}
	}
}

// FuzzVerifyCallback feeds arbitrary bodies and headers to VerifyCallback:
// it must never panic, accept only requests whose appkey, MD5 and CheckSum
// are right and whose CurTime is fresh, and refuse everything else with
// EUNAUTHORIZED (bad signature) or EINVALID (a verified body it cannot
// parse).
func FuzzVerifyCallback(f *testing.F) {
	p, err := netease.New(netease.Config{AppKey: testAppKey, AppSecret: testAppSecret})
	if err != nil {
		f.Fatal(err)
	}
	add := func(body, curTime string) {
		md := netease.BodyMD5([]byte(body))
		f.Add([]byte(body), testAppKey, curTime, md, netease.CallbackCheckSum(testAppSecret, md, curTime))
	}
	cur := strconv.FormatInt(fuzzNow.UnixMilli(), 10)
	add(`{"requestId":"r1","eventType":"MEETING_MEMBER_ENTRY","timestamp":1700000000000,"body":{"meetingNum":"812345678","userUuid":"alice01"}}`, cur)
	add(`{"requestId":"r2","eventType":"MEETING_STATE_CHANGE_EVENT","body":{"meetingNum":812345678,"state":2}}`, strconv.FormatInt(fuzzNow.Unix(), 10))
	add(``, cur)
	f.Add([]byte(`{}`), testAppKey, "0", "", "")

	f.Fuzz(func(t *testing.T, body []byte, appKey, curTime, md5hdr, checkSum string) {
		h := map[string][]string{"Appkey": {appKey}, "Curtime": {curTime}, "Md5": {md5hdr}, "Checksum": {checkSum}}
		cb, err := p.VerifyCallback(h, body, fuzzNow)
		if err != nil {
			if c := meetsync.ErrorCode(err); c != meetsync.EUNAUTHORIZED && c != meetsync.EINVALID {
				t.Fatalf("error code %s: %v", c, err)
			}
			if strings.Contains(err.Error(), testAppSecret) {
				t.Fatalf("error shows the secret: %v", err)
			}
			return
		}
		if appKey != testAppKey ||
			!strings.EqualFold(strings.TrimSpace(md5hdr), netease.BodyMD5(body)) ||
			!strings.EqualFold(strings.TrimSpace(checkSum), netease.CallbackCheckSum(testAppSecret, strings.TrimSpace(md5hdr), strings.TrimSpace(curTime))) {
			t.Fatalf("accepted a wrong signature: appkey %q md5 %q checksum %q", appKey, md5hdr, checkSum)
		}
		checkCallback(t, body, cb)
	})
}

// FuzzParseCallback signs arbitrary bodies correctly, so that every input
// reaches the parser: a body is either translated into well-formed events
// or refused with EINVALID, never anything else.
func FuzzParseCallback(f *testing.F) {
	p, err := netease.New(netease.Config{AppKey: testAppKey, AppSecret: testAppSecret})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		`{"requestId":"r1","eventType":"MEETING_MEMBER_ENTRY","timestamp":1700000000000,"body":{"meetingId":1,"meetingNum":"812345678","userUuid":"alice01"}}`,
		`{"requestId":"r2","eventType":"MEETING_MEMBER_INVITE","body":{"meetingNum":"8","inviterUserUuid":"h","inviteeUserUuids":["a","b"]}}`,
		`{"requestId":"r3","eventType":"MEETING_STATE_CHANGE_EVENT","body":{"state":"3"}}`,
		`{"requestId":"r4","eventType":"AI_CHAT","body":null}`,
		`{"requestId":7,"eventType":"MEETING_MEMBER_LEAVE","timestamp":"x","body":[]}`,
		``, `{}`, `[]`,
	} {
		f.Add([]byte(s))
	}
	cur := strconv.FormatInt(fuzzNow.UnixMilli(), 10)
	f.Fuzz(func(t *testing.T, body []byte) {
		md := netease.BodyMD5(body)
		h := map[string][]string{"Appkey": {testAppKey}, "Curtime": {cur}, "Md5": {md}, "Checksum": {netease.CallbackCheckSum(testAppSecret, md, cur)}}
		cb, err := p.VerifyCallback(h, body, fuzzNow)
		if err != nil {
			if c := meetsync.ErrorCode(err); c != meetsync.EINVALID {
				t.Fatalf("a correctly signed body was refused with %s: %v", c, err)
			}
			return
		}
		checkCallback(t, body, cb)
	})
}
