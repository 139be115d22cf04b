package sim

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
)

// forged returns the headers of body signed with key and secret, with
// CurTime exactly cur (NetEase sends milliseconds; seconds are accepted).
func forged(key, secret string, body []byte, cur string) http.Header {
	h := signCallback(key, secret, body, time.Now())
	h.Set(HeaderCurTime, cur)
	h.Set(HeaderCheckSum, checkSum(secret, h.Get(HeaderMD5), cur))
	return h
}

// TestVerifyCallbackCurTime: CurTime in milliseconds (what NetEase sends,
// and what the simulated platform sends too) or in seconds is accepted
// within the tolerance; one outside it is refused with a sane distance,
// also when it is centuries away (no saturated time.Duration); a value
// that is no time at all is refused as such.
func TestVerifyCallbackCurTime(t *testing.T) {
	t.Parallel()
	const key, secret = "key", "secret"
	now := time.UnixMilli(1764151200123)
	body := []byte(`{"requestId":"r1","eventType":"MEETING_MEMBER_ENTRY","timestamp":1764151200123,"data":{"meetingNum":"1","userUuid":"u1"}}`)
	if cur := signCallback(key, secret, body, now).Get(HeaderCurTime); cur != "1764151200123" {
		t.Errorf("the platform's CurTime %q, want Unix milliseconds 1764151200123", cur)
	}
	for _, cur := range []string{"1764151200123", "1764151200", strconv.FormatInt(now.Add(-CallbackTolerance).UnixMilli(), 10)} {
		if cb, err := verifyCallback(key, secret, forged(key, secret, body, cur), body, now); err != nil || cb.RequestID != "r1" {
			t.Errorf("CurTime %s: %+v, %v", cur, cb, err)
		}
	}
	for _, tc := range []struct{ cur, msg string }{
		{strconv.FormatInt(now.Add(-time.Hour).UnixMilli(), 10), "callback CurTime is 1h0m0s away from now (tolerance 5m0s)"},
		{strconv.FormatInt(now.Add(-time.Hour).Unix(), 10), "callback CurTime is 1h0m0s away from now (tolerance 5m0s)"},
		{"99999999999", "callback CurTime is 1136988 days away from now (tolerance 5m0s)"},     // seconds: year 5138
		{"253402300799999", "callback CurTime is 2912478 days away from now (tolerance 5m0s)"}, // ms: 9999-12-31
		{"1", "callback CurTime is 20418 days away from now (tolerance 5m0s)"},
		{"253402300800000", "callback CurTime header must be a Unix time in milliseconds or seconds"},
		{"-1", "callback CurTime header must be a Unix time in milliseconds or seconds"},
		{"yesterday", "callback CurTime header must be a Unix time in milliseconds or seconds"},
	} {
		_, err := verifyCallback(key, secret, forged(key, secret, body, tc.cur), body, now)
		if meetsync.ErrorCode(err) != meetsync.EUNAUTHORIZED || meetsync.ErrorField(err) != "CurTime" || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("CurTime %s: %v (field %q), want unauthorized %q", tc.cur, err, meetsync.ErrorField(err), tc.msg)
		}
	}
}

// TestVerifyCallbackMissingHeader: a callback without one of the four
// headers is refused naming the header that is missing, as NetEase's
// verification does ("missing header CheckSum"), not as a mismatch.
func TestVerifyCallbackMissingHeader(t *testing.T) {
	t.Parallel()
	const key, secret = "key", "secret"
	now := time.Now()
	body := []byte(`{"requestId":"r1","eventType":"MEETING_MEMBER_ENTRY","data":{"meetingNum":"1","userUuid":"u1"}}`)
	for _, name := range []string{HeaderAppKey, HeaderCurTime, HeaderMD5, HeaderCheckSum} {
		for _, v := range []string{"", " "} {
			h := signCallback(key, secret, body, now)
			if v == "" {
				h.Del(name)
			} else {
				h.Set(name, v)
			}
			_, err := verifyCallback(key, secret, h, body, now)
			if meetsync.ErrorCode(err) != meetsync.EUNAUTHORIZED || meetsync.ErrorField(err) != name ||
				!strings.Contains(err.Error(), "missing header "+name) {
				t.Errorf("without %s (%q): %v (field %q), want unauthorized \"missing header %s\"", name, v, err, meetsync.ErrorField(err), name)
			}
		}
	}
}
