package netease_test

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/netease"
	"github.com/meetsync/meetsync/netease/neteasetest"
)

const (
	testAppKey    = "b882128a2a30430fd3269b2a272565df"
	testAppSecret = "4eb5f9177a7b-test-secret"
)

// setup starts a fake NetEase server and a Provider pointed at it, with
// short backoffs so retries do not slow the tests down.
func setup(t *testing.T, mods ...func(*netease.Config)) (*netease.Provider, *neteasetest.Server) {
	t.Helper()
	fake := neteasetest.NewServer(testAppKey, testAppSecret)
	t.Cleanup(fake.Close)
	cfg := netease.Config{AppKey: testAppKey, AppSecret: testAppSecret, BaseURL: fake.URL,
		Timeout: 5 * time.Second, Backoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond}
	for _, m := range mods {
		m(&cfg)
	}
	p, err := netease.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p, fake
}

// wantCode fails unless err is a meetsync error with this code.
func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s", code)
	}
	if got := meetsync.ErrorCode(err); got != code {
		t.Fatalf("error code = %s, want %s (%v)", got, code, err)
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		cfg   netease.Config
		field string
	}{
		{"no app key", netease.Config{AppSecret: "s"}, "app_key"},
		{"no app secret", netease.Config{AppKey: "k"}, "app_secret"},
		{"relative base url", netease.Config{AppKey: "k", AppSecret: "s", BaseURL: "meeting-api.netease.im"}, "base_url"},
		{"ftp base url", netease.Config{AppKey: "k", AppSecret: "s", BaseURL: "ftp://x"}, "base_url"},
		{"base url with query", netease.Config{AppKey: "k", AppSecret: "s", BaseURL: "https://x/?a=b"}, "base_url"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := netease.New(tc.cfg)
			wantCode(t, err, meetsync.EINVALID)
			if f := meetsync.ErrorField(err); f != tc.field {
				t.Fatalf("field = %q, want %q", f, tc.field)
			}
		})
	}
	p, err := netease.New(netease.ConfigFrom(meetsync.ProviderConfig{Kind: meetsync.ProviderNetEase, AppKey: "k", AppSecret: "s"}))
	if err != nil {
		t.Fatal(err)
	}
	if p.Kind() != meetsync.ProviderNetEase || p.AppKey() != "k" {
		t.Fatalf("Kind, AppKey = %q, %q", p.Kind(), p.AppKey())
	}
}

func TestEnsureAccount(t *testing.T) {
	t.Parallel()
	p, fake := setup(t)
	ctx := context.Background()

	a, err := p.EnsureAccount(ctx, meetsync.AccountRequest{UserUUID: "alice01", DisplayName: "Alice"})
	if err != nil {
		t.Fatal(err)
	}
	if a.Provider != meetsync.ProviderNetEase || a.AppKey != testAppKey || a.UserUUID != "alice01" || !fake.ValidToken("alice01", a.UserToken) {
		t.Fatalf("account = %+v (token valid: %v)", a, fake.ValidToken("alice01", a.UserToken))
	}

	// Again: the same account, still valid credentials, no second account.
	b, err := p.EnsureAccount(ctx, meetsync.AccountRequest{UserUUID: "alice01"})
	if err != nil {
		t.Fatal(err)
	}
	if b.UserToken != a.UserToken || !fake.ValidToken("alice01", b.UserToken) {
		t.Fatalf("second EnsureAccount gave token valid=%v, same=%v", fake.ValidToken("alice01", b.UserToken), b.UserToken == a.UserToken)
	}
	accts, err := p.LookupAccounts(ctx, []string{"alice01"})
	if err != nil {
		t.Fatal(err)
	}
	if !accts[0].Exists || accts[0].Name != "Alice" {
		t.Fatalf("lookup = %+v", accts[0])
	}
	if n := fake.Requests(neteasetest.OpAddUser); n != 2 {
		t.Fatalf("add-user requests = %d, want 2", n)
	}
}

func TestEnsureAccountExistingMadeElsewhere(t *testing.T) {
	t.Parallel()
	p, fake := setup(t)
	token := fake.AddUser("bob01", "Bob")
	a, err := p.EnsureAccount(context.Background(), meetsync.AccountRequest{UserUUID: "bob01"})
	if err != nil {
		t.Fatal(err)
	}
	if a.UserToken != token || !fake.ValidToken("bob01", token) {
		t.Fatal("EnsureAccount of an existing account must return its current token without revoking it")
	}
}

func TestEnsureAccountBanned(t *testing.T) {
	t.Parallel()
	p, fake := setup(t)
	ctx := context.Background()
	if _, err := p.EnsureAccount(ctx, meetsync.AccountRequest{UserUUID: "carol"}); err != nil {
		t.Fatal(err)
	}
	if err := p.SetBanned(ctx, "carol", true); err != nil {
		t.Fatal(err)
	}
	_, err := p.EnsureAccount(ctx, meetsync.AccountRequest{UserUUID: "carol"})
	wantCode(t, err, meetsync.EFORBIDDEN)
	if !strings.Contains(err.Error(), "banned") {
		t.Fatalf("message should say banned: %v", err)
	}
	if !fake.Banned("carol") {
		t.Fatal("fake does not show the ban")
	}
}

func TestEnsureAccountInvalidUUID(t *testing.T) {
	t.Parallel()
	p, fake := setup(t)
	for _, id := range []string{"", "Alice", "a b", "x/y", strings.Repeat("a", 33), "ü"} {
		_, err := p.EnsureAccount(context.Background(), meetsync.AccountRequest{UserUUID: id})
		wantCode(t, err, meetsync.EINVALID)
		if meetsync.ErrorField(err) != "user_uuid" {
			t.Fatalf("%q: field = %q", id, meetsync.ErrorField(err))
		}
	}
	if n := fake.Requests(""); n != 0 {
		t.Fatalf("invalid input sent %d requests", n)
	}
	// meetsync's account ids: "ms" + 24 lowercase base32 characters.
	if !netease.ValidUserUUID("ms" + strings.Repeat("a2z7", 6)) {
		t.Fatal("meetsync's account ids must be valid NetEase userUuids")
	}
}

func TestRevokeTokenInvalidatesTheOldOne(t *testing.T) {
	t.Parallel()
	p, fake := setup(t)
	ctx := context.Background()
	a, err := p.EnsureAccount(ctx, meetsync.AccountRequest{UserUUID: "dave"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.RevokeToken(ctx, "dave")
	if err != nil {
		t.Fatal(err)
	}
	if b.UserToken == a.UserToken || fake.ValidToken("dave", a.UserToken) || !fake.ValidToken("dave", b.UserToken) {
		t.Fatalf("after refresh: old valid=%v new valid=%v", fake.ValidToken("dave", a.UserToken), fake.ValidToken("dave", b.UserToken))
	}
	_, err = p.RevokeToken(ctx, "nobody")
	wantCode(t, err, meetsync.ENOTFOUND)
}

func TestSetBanned(t *testing.T) {
	t.Parallel()
	p, fake := setup(t)
	ctx := context.Background()
	if _, err := p.EnsureAccount(ctx, meetsync.AccountRequest{UserUUID: "erin"}); err != nil {
		t.Fatal(err)
	}
	for _, banned := range []bool{true, true, false, false} {
		if err := p.SetBanned(ctx, "erin", banned); err != nil {
			t.Fatal(err)
		}
		if fake.Banned("erin") != banned {
			t.Fatalf("banned = %v, want %v", fake.Banned("erin"), banned)
		}
	}
	wantCode(t, p.SetBanned(ctx, "nobody", true), meetsync.ENOTFOUND)
}

func TestLookupAccounts(t *testing.T) {
	t.Parallel()
	p, fake := setup(t)
	ctx := context.Background()
	var ids []string
	for i := range 60 {
		id := fmt.Sprintf("user%02d", i)
		ids = append(ids, id)
		if i%2 == 0 {
			fake.AddUser(id, "U"+id)
		}
	}
	if err := p.SetBanned(ctx, "user10", true); err != nil {
		t.Fatal(err)
	}
	got, err := p.LookupAccounts(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(ids) {
		t.Fatalf("got %d accounts, want %d", len(got), len(ids))
	}
	for i, a := range got {
		if a.UserUUID != ids[i] || a.Exists != (i%2 == 0) || a.Banned != (ids[i] == "user10") {
			t.Fatalf("account %d = %+v", i, a)
		}
		if a.Exists && a.Name != "U"+ids[i] {
			t.Fatalf("account %d name = %q", i, a.Name)
		}
	}
	if n := fake.Requests(neteasetest.OpBatchGetUser); n != 2 {
		t.Fatalf("batch-get-user requests = %d, want 2 (50 per batch)", n)
	}
	none, err := p.LookupAccounts(ctx, nil)
	if err != nil || len(none) != 0 {
		t.Fatalf("empty lookup = %v, %v", none, err)
	}
}

func TestMeetings(t *testing.T) {
	t.Parallel()
	p, fake := setup(t)
	ctx := context.Background()
	for _, id := range []string{"host1", "guest1", "guest2"} {
		if _, err := p.EnsureAccount(ctx, meetsync.AccountRequest{UserUUID: id}); err != nil {
			t.Fatal(err)
		}
	}

	start := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	sched, err := p.CreateMeeting(ctx, meetsync.MeetingRequest{HostUUID: "host1", Subject: "Weekly", Password: "1234",
		StartTime: start, EndTime: start.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if sched.MeetingNum == "" || sched.MeetingID == "" || sched.State != meetsync.MeetingStateScheduled ||
		sched.HostUUID != "host1" || sched.Subject != "Weekly" || !sched.StartTime.Equal(start) {
		t.Fatalf("scheduled meeting = %+v", sched)
	}

	instant, err := p.CreateMeeting(ctx, meetsync.MeetingRequest{HostUUID: "host1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := fake.MemberEnter(instant.MeetingNum, "host1"); err != nil {
		t.Fatal(err)
	}
	if err := fake.MemberEnter(instant.MeetingNum, "guest1"); err != nil {
		t.Fatal(err)
	}
	m, err := p.Meeting(ctx, instant.MeetingNum)
	if err != nil {
		t.Fatal(err)
	}
	if m.State != meetsync.MeetingStateStarted || strings.Join(m.Members, ",") != "host1,guest1" {
		t.Fatalf("meeting = %+v", m)
	}

	// Cancel a scheduled meeting (cancel by id), end a started one (close by number).
	if err := p.CancelMeeting(ctx, sched.MeetingNum); err != nil {
		t.Fatal(err)
	}
	if err := p.CancelMeeting(ctx, instant.MeetingNum); err != nil {
		t.Fatal(err)
	}
	if fake.Requests(neteasetest.OpCancelMeeting) != 1 || fake.Requests(neteasetest.OpCloseMeeting) != 1 {
		t.Fatalf("cancel, close requests = %d, %d", fake.Requests(neteasetest.OpCancelMeeting), fake.Requests(neteasetest.OpCloseMeeting))
	}
	for num, want := range map[string]string{sched.MeetingNum: meetsync.MeetingStateCanceled, instant.MeetingNum: meetsync.MeetingStateEnded} {
		m, err := p.Meeting(ctx, num)
		if err != nil {
			t.Fatal(err)
		}
		if m.State != want || len(m.Members) != 0 {
			t.Fatalf("meeting %s after cancel = %+v, want state %s", num, m, want)
		}
		if err := p.CancelMeeting(ctx, num); err != nil {
			t.Fatalf("cancelling again must be a no-op: %v", err)
		}
	}

	_, err = p.Meeting(ctx, "999999999")
	wantCode(t, err, meetsync.ENOTFOUND)
	wantCode(t, p.CancelMeeting(ctx, "999999999"), meetsync.ENOTFOUND)
	_, err = p.CreateMeeting(ctx, meetsync.MeetingRequest{HostUUID: "nobody"})
	wantCode(t, err, meetsync.ENOTFOUND)
	_, err = p.CreateMeeting(ctx, meetsync.MeetingRequest{HostUUID: "host1", StartTime: start, EndTime: start})
	wantCode(t, err, meetsync.EINVALID)
	if meetsync.ErrorField(err) != "end_time" {
		t.Fatalf("field = %q", meetsync.ErrorField(err))
	}
	_, err = p.Meeting(ctx, "")
	wantCode(t, err, meetsync.EINVALID)
}

func TestRetriesOn5xx(t *testing.T) {
	t.Parallel()
	p, fake := setup(t)
	ctx := context.Background()
	fake.AddUser("frank", "")

	fake.FailNext(2, http.StatusServiceUnavailable)
	if _, err := p.RevokeToken(ctx, "frank"); err != nil {
		t.Fatalf("two 503s then success must succeed: %v", err)
	}
	if n := fake.Requests(neteasetest.OpRefreshUserToken); n != 3 {
		t.Fatalf("requests = %d, want 3", n)
	}

	fake.FailNext(3, http.StatusBadGateway)
	_, err := p.RevokeToken(ctx, "frank")
	wantCode(t, err, meetsync.EUNAVAILABLE)
	if !strings.Contains(err.Error(), "HTTP 502") || !strings.Contains(err.Error(), "3 attempts") {
		t.Fatalf("message = %v", err)
	}
	if n := fake.Requests(neteasetest.OpRefreshUserToken); n != 6 {
		t.Fatalf("requests = %d, want 6", n)
	}
}

func TestRetriesOnConnectionErrors(t *testing.T) {
	t.Parallel()
	p, fake := setup(t)
	ctx := context.Background()

	fake.ResetNext(1)
	if _, err := p.EnsureAccount(ctx, meetsync.AccountRequest{UserUUID: "gina"}); err != nil {
		t.Fatalf("a reset then success must succeed: %v", err)
	}
	if n := fake.Requests(neteasetest.OpAddUser); n != 2 {
		t.Fatalf("add-user requests = %d, want 2", n)
	}

	fake.SetDown(true)
	_, err := p.RevokeToken(ctx, "gina")
	wantCode(t, err, meetsync.EUNAVAILABLE)
	if !strings.Contains(err.Error(), "connection") {
		t.Fatalf("message should say the connection failed: %v", err)
	}
	if n := fake.Requests(neteasetest.OpRefreshUserToken); n != netease.DefaultMaxAttempts {
		t.Fatalf("requests while down = %d, want %d", n, netease.DefaultMaxAttempts)
	}
	fake.SetDown(false)
	if _, err := p.RevokeToken(ctx, "gina"); err != nil {
		t.Fatalf("after the outage: %v", err)
	}

	// Nothing listening at all.
	dead := httptest.NewServer(http.NotFoundHandler())
	url := dead.URL
	dead.Close()
	q, err := netease.New(netease.Config{AppKey: testAppKey, AppSecret: testAppSecret, BaseURL: url, MaxAttempts: 2, Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, err = q.RevokeToken(ctx, "gina")
	wantCode(t, err, meetsync.EUNAVAILABLE)
	if !strings.Contains(err.Error(), "2 attempts") {
		t.Fatalf("message = %v", err)
	}
}

func TestTimeout(t *testing.T) {
	t.Parallel()
	p, fake := setup(t, func(c *netease.Config) { c.Timeout = 150 * time.Millisecond; c.MaxAttempts = 2 })
	ctx := context.Background()
	fake.AddUser("hank", "")

	fake.HangNext(1)
	if _, err := p.RevokeToken(ctx, "hank"); err != nil {
		t.Fatalf("a hang then success must succeed: %v", err)
	}
	if n := fake.Requests(neteasetest.OpRefreshUserToken); n != 2 {
		t.Fatalf("requests = %d, want 2", n)
	}

	fake.HangNext(2)
	_, err := p.RevokeToken(ctx, "hank")
	wantCode(t, err, meetsync.EUNAVAILABLE)
	if !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("message should say timed out: %v", err)
	}
}

func TestContextEndsRetries(t *testing.T) {
	t.Parallel()
	p, fake := setup(t, func(c *netease.Config) { c.Backoff = time.Hour; c.MaxBackoff = time.Hour })
	fake.AddUser("ivy", "")
	fake.FailNext(1, http.StatusInternalServerError)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var err error
	wg.Go(func() { _, err = p.RevokeToken(ctx, "ivy") })
	// The first attempt fails and the provider waits an hour: cancel it.
	deadline := time.Now().Add(10 * time.Second)
	for fake.Requests(neteasetest.OpRefreshUserToken) < 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	wantCode(t, err, meetsync.EUNAVAILABLE)
	if n := fake.Requests(neteasetest.OpRefreshUserToken); n != 1 {
		t.Fatalf("requests = %d, want 1", n)
	}
}

func TestNoRetryOnClientAndBusinessErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		code int
		want string
	}{
		{400, meetsync.EINVALID},
		{401, meetsync.EFORBIDDEN},
		{402, meetsync.EUNAUTHORIZED},
		{403, meetsync.EFORBIDDEN},
		{404, meetsync.ENOTFOUND},
		{406, meetsync.EUNAUTHORIZED},
		{409, meetsync.ECONFLICT},
		{414, meetsync.EINVALID},
		{416, meetsync.ERATELIMIT},
		{500, meetsync.EUNAVAILABLE}, // a business code 500 in an HTTP 200 answer: final
		{503, meetsync.EUNAVAILABLE},
		{701, meetsync.ENOTFOUND},
		{3411, meetsync.EINVALID},
		{600420, meetsync.EFORBIDDEN},
		{123456, meetsync.EINVALID},
	} {
		t.Run(fmt.Sprint(tc.code), func(t *testing.T) {
			t.Parallel()
			p, fake := setup(t)
			fake.AddUser("jack", "")
			fake.RejectNext(1, tc.code, "refused for a test")
			_, err := p.RevokeToken(context.Background(), "jack")
			wantCode(t, err, tc.want)
			if !strings.Contains(err.Error(), fmt.Sprintf("code %d", tc.code)) || !strings.Contains(err.Error(), "refused for a test") {
				t.Fatalf("message = %v", err)
			}
			if n := fake.Requests(""); n != 1 {
				t.Fatalf("requests = %d, want 1 (no retry)", n)
			}
		})
	}
	// HTTP 4xx statuses are final too.
	for _, tc := range []struct {
		status int
		want   string
	}{{400, meetsync.EINVALID}, {404, meetsync.ENOTFOUND}, {429, meetsync.ERATELIMIT}, {401, meetsync.EFORBIDDEN}} {
		t.Run(fmt.Sprint("HTTP ", tc.status), func(t *testing.T) {
			t.Parallel()
			p, fake := setup(t)
			fake.FailNext(1, tc.status)
			_, err := p.EnsureAccount(context.Background(), meetsync.AccountRequest{UserUUID: "kate"})
			wantCode(t, err, tc.want)
			if n := fake.Requests(""); n != 1 {
				t.Fatalf("requests = %d, want 1 (no retry)", n)
			}
		})
	}
}

func TestWrongCredentials(t *testing.T) {
	t.Parallel()
	fake := neteasetest.NewServer(testAppKey, testAppSecret)
	t.Cleanup(fake.Close)
	secret := "the-wrong-secret-value"
	p, err := netease.New(netease.Config{AppKey: testAppKey, AppSecret: secret, BaseURL: fake.URL})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.EnsureAccount(context.Background(), meetsync.AccountRequest{UserUUID: "liam"})
	wantCode(t, err, meetsync.EFORBIDDEN)
	if !strings.Contains(err.Error(), "app_secret") || strings.Contains(err.Error(), secret) {
		t.Fatalf("message must point at the credentials without showing them: %v", err)
	}
	if n := fake.Requests(""); n != 1 {
		t.Fatalf("requests = %d, want 1", n)
	}
}

func TestNoTokenInErrors(t *testing.T) {
	t.Parallel()
	p, fake := setup(t)
	ctx := context.Background()
	a, err := p.EnsureAccount(ctx, meetsync.AccountRequest{UserUUID: "mia"})
	if err != nil {
		t.Fatal(err)
	}
	var errs []error
	fake.FailNext(3, 503)
	_, err = p.RevokeToken(ctx, "mia")
	errs = append(errs, err)
	fake.RejectNext(1, 400, "bad")
	_, err = p.EnsureAccount(ctx, meetsync.AccountRequest{UserUUID: "mia"})
	errs = append(errs, err)
	for _, err := range errs {
		if err == nil {
			t.Fatal("want an error")
		}
		if msg := err.Error(); strings.Contains(msg, a.UserToken) || strings.Contains(msg, testAppSecret) {
			t.Fatalf("error shows a secret: %v", msg)
		}
	}
}

func TestNonEnvelopeAnswers(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	hits := 0
	status := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits++
		st := status
		mu.Unlock()
		w.WriteHeader(st)
		fmt.Fprint(w, "<html>gateway page</html>")
	}))
	t.Cleanup(srv.Close)
	p, err := netease.New(netease.Config{AppKey: testAppKey, AppSecret: testAppSecret, BaseURL: srv.URL, Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		status int
		want   string
		hits   int
	}{{200, meetsync.EUNAVAILABLE, 1}, {404, meetsync.ENOTFOUND, 1}, {403, meetsync.EFORBIDDEN, 1}, {502, meetsync.EUNAVAILABLE, 3}} {
		mu.Lock()
		status, hits = tc.status, 0
		mu.Unlock()
		err := p.SetBanned(context.Background(), "nora", true)
		wantCode(t, err, tc.want)
		mu.Lock()
		if hits != tc.hits {
			t.Fatalf("HTTP %d: %d requests, want %d", tc.status, hits, tc.hits)
		}
		mu.Unlock()
	}
}

func TestRequestSignature(t *testing.T) {
	t.Parallel()
	now := time.Unix(1700000000, 0)
	var mu sync.Mutex
	var headers []http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		headers = append(headers, r.Header.Clone())
		mu.Unlock()
		fmt.Fprint(w, `{"code":200,"msg":"success","requestId":"r1","data":null}`)
	}))
	t.Cleanup(srv.Close)
	p, err := netease.New(netease.Config{AppKey: testAppKey, AppSecret: testAppSecret, BaseURL: srv.URL, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := p.SetBanned(context.Background(), "olga", true); err != nil {
			t.Fatal(err)
		}
	}
	if len(headers) != 2 {
		t.Fatalf("got %d requests", len(headers))
	}
	for _, h := range headers {
		nonce := h.Get("Nonce")
		sum := sha1.Sum([]byte(testAppSecret + nonce + "1700000000"))
		if h.Get("AppKey") != testAppKey || h.Get("CurTime") != "1700000000" || nonce == "" ||
			h.Get("CheckSum") != hex.EncodeToString(sum[:]) || !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
			t.Fatalf("headers = %v", h)
		}
	}
	if headers[0].Get("Nonce") == headers[1].Get("Nonce") {
		t.Fatal("the nonce must change from one request to the next")
	}
}
