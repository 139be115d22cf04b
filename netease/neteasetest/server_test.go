package neteasetest_test

import (
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meetsync/meetsync/netease/neteasetest"
)

const appKey, appSecret = "fake-app", "fake-secret"

type answer struct {
	Code      int             `json:"code"`
	Msg       string          `json:"msg"`
	RequestID string          `json:"requestId"`
	Data      json.RawMessage `json:"data"`
}

// call sends a request signed with secret, nonce and curTime.
func call(t *testing.T, s *neteasetest.Server, method, path, body, secret, nonce string, curTime time.Time) (int, answer) {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	cur := strconv.FormatInt(curTime.Unix(), 10)
	sum := sha1.Sum([]byte(secret + nonce + cur))
	req.Header.Set("AppKey", appKey)
	req.Header.Set("Nonce", nonce)
	req.Header.Set("CurTime", cur)
	req.Header.Set("CheckSum", hex.EncodeToString(sum[:]))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a answer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		t.Fatalf("answer is not an envelope: %v", err)
	}
	return resp.StatusCode, a
}

func TestSignatureChecks(t *testing.T) {
	t.Parallel()
	s := neteasetest.NewServer(appKey, appSecret)
	t.Cleanup(s.Close)
	now := time.Now()
	add := `{"userUuid":"u1","name":"U"}`

	status, a := call(t, s, "POST", "/scene/meeting/api/v2/add-user", add, "wrong", "n1", now)
	if status != 200 || a.Code != neteasetest.CodeUnauthorized || !strings.Contains(a.Msg, "CheckSum") || a.RequestID == "" {
		t.Fatalf("wrong secret: %d %+v", status, a)
	}
	if _, a = call(t, s, "POST", "/scene/meeting/api/v2/add-user", add, appSecret, "n2", now.Add(-time.Hour)); a.Code != neteasetest.CodeUnauthorized {
		t.Fatalf("stale CurTime: %+v", a)
	}
	if _, a = call(t, s, "POST", "/scene/meeting/api/v2/add-user", add, appSecret, "n3", now); a.Code != neteasetest.CodeOK {
		t.Fatalf("valid: %+v", a)
	}
	var u struct{ UserUUID, UserToken string }
	if err := json.Unmarshal(a.Data, &u); err != nil || u.UserUUID != "u1" || !s.ValidToken("u1", u.UserToken) {
		t.Fatalf("data %s", a.Data)
	}
	if _, a = call(t, s, "POST", "/scene/meeting/api/v2/add-user", `{"userUuid":"u2"}`, appSecret, "n3", now); a.Code != neteasetest.CodeUnauthorized || !strings.Contains(a.Msg, "Nonce") {
		t.Fatalf("reused nonce: %+v", a)
	}
	if _, a = call(t, s, "POST", "/scene/meeting/api/v2/add-user", add, appSecret, "n4", now); a.Code != neteasetest.CodeExists {
		t.Fatalf("existing user: %+v", a)
	}
	if _, a = call(t, s, "GET", "/scene/meeting/api/another-app/v1/info/meetingNum/1", "", appSecret, "n5", now); a.Code != neteasetest.CodeForbidden {
		t.Fatalf("other app in the path: %+v", a)
	}
	if _, a = call(t, s, "GET", "/no/such/api", "", appSecret, "n6", now); a.Code != neteasetest.CodeNotFound {
		t.Fatalf("unknown path: %+v", a)
	}
	if got := s.Requests(""); got != 7 {
		t.Fatalf("requests = %d, want 7", got)
	}
	if got := s.Requests(neteasetest.OpAddUser); got != 5 {
		t.Fatalf("add-user requests = %d, want 5", got)
	}
}

func TestFaultsAreServedInOrder(t *testing.T) {
	t.Parallel()
	s := neteasetest.NewServer(appKey, appSecret)
	t.Cleanup(s.Close)
	s.FailNext(1, 503)
	s.RejectNext(1, 400, "no")
	now := time.Now()
	status, a := call(t, s, "POST", "/scene/meeting/api/v2/ban-user", `{"userUuid":"x"}`, appSecret, "f1", now)
	if status != 503 || a.Code != 503 {
		t.Fatalf("first: %d %+v", status, a)
	}
	status, a = call(t, s, "POST", "/scene/meeting/api/v2/ban-user", `{"userUuid":"x"}`, appSecret, "f2", now)
	if status != 200 || a.Code != 400 || a.Msg != "no" {
		t.Fatalf("second: %d %+v", status, a)
	}
	_, a = call(t, s, "POST", "/scene/meeting/api/v2/ban-user", `{"userUuid":"x"}`, appSecret, "f3", now)
	if a.Code != neteasetest.CodeNotFound {
		t.Fatalf("third (no fault left, unknown user): %+v", a)
	}
}

func TestCallbackSigning(t *testing.T) {
	t.Parallel()
	s := neteasetest.NewServer(appKey, appSecret)
	t.Cleanup(s.Close)
	at := time.UnixMilli(1608110108512)
	h := s.CallbackHeaders(nil, at)
	// The platform's documented probe: empty body, MD5 of "", CurTime in ms.
	want := sha1.Sum([]byte(appSecret + "d41d8cd98f00b204e9800998ecf8427e" + "1608110108512"))
	if h.Get("appkey") != appKey || h.Get("CurTime") != "1608110108512" || h.Get("MD5") != "d41d8cd98f00b204e9800998ecf8427e" ||
		h.Get("CheckSum") != hex.EncodeToString(want[:]) {
		t.Fatalf("headers = %v", h)
	}
}
