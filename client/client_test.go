package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/client"
)

func seq(n int64) *int64 { return &n }

func statusEvent(user, device string, clientSeq int64, status any) meetsync.EventInput {
	ev := meetsync.EventInput{Type: meetsync.TypeMeetingStatusChanged, UserID: user, DeviceID: device,
		Data: json.RawMessage(fmt.Sprintf(`{"status":%q}`, fmt.Sprint(status)))}
	if clientSeq > 0 {
		ev.ClientSeq = seq(clientSeq)
	}
	return ev
}

// requireCode checks that err is a *meetsync.Error with code and field.
func requireCode(t *testing.T, err error, code, field string) *meetsync.Error {
	t.Helper()
	var me *meetsync.Error
	if !errors.As(err, &me) {
		t.Fatalf("error %v (%T) is not a *meetsync.Error", err, err)
	}
	if me.Code != code || me.Field != field {
		t.Fatalf("error = %q field %q (%v), want %q field %q", me.Code, me.Field, err, code, field)
	}
	if me.Message == "" {
		t.Fatalf("error without a message: %#v", me)
	}
	return me
}

func TestErrors(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := context.Background()
	app := s.app()

	t.Run("invalid names the field", func(t *testing.T) {
		_, err := app.PostEvent(ctx, statusEvent("u1", "", 0, "dancing"))
		me := requireCode(t, err, meetsync.EINVALID, "data.status")
		if !strings.Contains(me.Message, "dancing") {
			t.Errorf("message %q does not name the bad value", me.Message)
		}
		_, err = app.PostEvents(ctx, []meetsync.EventInput{statusEvent("u1", "d1", 1, 3), statusEvent("u1", "d1", 2, "nope")})
		requireCode(t, err, meetsync.EINVALID, "events[1].data.status")
	})
	t.Run("unauthorized", func(t *testing.T) {
		_, err := client.New(s.URL, client.WithAPIKey("msk_wrong")).GetApp(ctx)
		requireCode(t, err, meetsync.EUNAUTHORIZED, "")
		_, err = client.New(s.URL).ListUsers(ctx, client.UserListParams{})
		requireCode(t, err, meetsync.EUNAUTHORIZED, "")
	})
	t.Run("not found", func(t *testing.T) {
		_, err := app.GetUser(ctx, "nobody")
		requireCode(t, err, meetsync.ENOTFOUND, "")
		_, err = app.GetEndpoint(ctx, "ep_nope")
		requireCode(t, err, meetsync.ENOTFOUND, "")
	})
	t.Run("conflict", func(t *testing.T) {
		ev := meetsync.EventInput{Type: "crm.a", UserID: "u9"}
		if _, err := app.PostEvent(ctx, ev, client.IdempotencyKey("k1")); err != nil {
			t.Fatal(err)
		}
		ev.UserID = "u10"
		_, err := app.PostEvent(ctx, ev, client.IdempotencyKey("k1"))
		requireCode(t, err, meetsync.ECONFLICT, "")
	})
	t.Run("bad cursor", func(t *testing.T) {
		_, err := app.ListEvents(ctx, client.EventListParams{After: "x"})
		requireCode(t, err, meetsync.EINVALID, "after")
	})
	t.Run("transport failure is unavailable", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close() // nothing listens there now
		c := client.New("http://"+addr, client.WithAPIKey(s.Key), client.WithRetry(client.Retry{Attempts: 2, Backoff: time.Millisecond}))
		_, err = c.GetApp(ctx)
		if got := meetsync.ErrorCode(err); got != meetsync.EUNAVAILABLE {
			t.Fatalf("ErrorCode = %q (%v), want unavailable", got, err)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("error %v does not wrap ECONNREFUSED", err)
		}
		var me *meetsync.Error
		if !errors.As(err, &me) || !strings.Contains(me.Message, "GET /v1/app") {
			t.Errorf("error %v does not say which call failed", err)
		}
	})
	t.Run("cancelled context", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := app.GetApp(cctx)
		if !errors.Is(err, context.Canceled) || meetsync.ErrorCode(err) != meetsync.EUNAVAILABLE {
			t.Fatalf("err = %v, want unavailable wrapping context.Canceled", err)
		}
	})
	t.Run("a proxy's error page", func(t *testing.T) {
		gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusBadGateway)
			fmt.Fprint(w, "<html>bad gateway</html>")
		}))
		defer gw.Close()
		_, err := client.New(gw.URL, client.WithRetry(client.Retry{Attempts: 1})).GetApp(ctx)
		me := requireCode(t, err, meetsync.EUNAVAILABLE, "")
		if !strings.Contains(me.Message, "502") || !strings.Contains(me.Message, "bad gateway") {
			t.Errorf("message %q", me.Message)
		}
	})
}

func TestEvents(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := context.Background()
	app := s.app()

	r1, err := app.PostEvent(ctx, statusEvent("u1", "d1", 1, "MEETING_STATUS_CONNECTING"))
	if err != nil {
		t.Fatal(err)
	}
	if r1.Seq != 1 || r1.Duplicate || r1.Stale || !strings.HasPrefix(r1.ID, "evt_") {
		t.Fatalf("first result %+v", r1)
	}
	rs, err := app.PostEvents(ctx, []meetsync.EventInput{
		statusEvent("u1", "d1", 2, "in_meeting"),
		statusEvent("u1", "d1", 1, "MEETING_STATUS_CONNECTING"), // a repeat
		{Type: "crm.note", UserID: "u2", Data: json.RawMessage(`{"x":1}`)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if rs[0].Seq != 2 || rs[0].Duplicate || !rs[1].Duplicate || rs[1].ID != r1.ID || rs[2].Seq != 1 {
		t.Fatalf("batch results %+v", rs)
	}

	// The feed, page by page.
	var all []*meetsync.Event
	after := ""
	for {
		p, err := app.ListEvents(ctx, client.EventListParams{After: after, Limit: 2})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Events) == 0 {
			if p.Next != after && !(after == "" && p.Next == "0") {
				t.Fatalf("empty page: next %q after %q", p.Next, after)
			}
			break
		}
		if p.Next != meetsync.FormatCursor(p.Events[len(p.Events)-1].Pos) {
			t.Fatalf("next %q is not the last event's cursor", p.Next)
		}
		all = append(all, p.Events...)
		after = p.Next
	}
	if len(all) != 3 || all[0].ID != r1.ID || all[1].Type != meetsync.TypeMeetingStatusChanged || all[2].Type != "crm.note" {
		t.Fatalf("feed = %v", all)
	}
	if st, _, _, ok := all[1].StatusChange(); !ok || st != meetsync.StatusInMeeting || all[1].ClientSeq != 2 || all[1].DeviceID != "d1" {
		t.Fatalf("status event %+v", all[1])
	}
	p, err := app.ListEvents(ctx, client.EventListParams{Types: []string{"crm.*"}, UserID: "u2"})
	if err != nil || len(p.Events) != 1 || p.Events[0].UserID != "u2" {
		t.Fatalf("filtered feed = %v, %v", p, err)
	}

	u, err := app.GetUser(ctx, "u1")
	if err != nil {
		t.Fatal(err)
	}
	if u.Meeting.Status != "in_meeting" || u.Meeting.Code != 3 || u.LastSeq != 2 || len(u.Devices) != 1 || u.Devices[0].LastClientSeq != 2 {
		t.Fatalf("user %+v", u)
	}
	page, err := app.ListUsers(ctx, client.UserListParams{Status: "in_meeting"})
	if err != nil || len(page.Users) != 1 || page.Users[0].UserID != "u1" {
		t.Fatalf("users in a meeting = %+v, %v", page, err)
	}
	page, err = app.ListUsers(ctx, client.UserListParams{Limit: 1})
	if err != nil || len(page.Users) != 1 || page.Next == "" {
		t.Fatalf("first page of users = %+v, %v", page, err)
	}
	page, err = app.ListUsers(ctx, client.UserListParams{Limit: 1, Cursor: page.Next})
	if err != nil || len(page.Users) != 1 || page.Users[0].UserID != "u2" {
		t.Fatalf("second page of users = %+v, %v", page, err)
	}

	types, reserved, err := app.EventTypes(ctx)
	if err != nil || len(types) == 0 || len(reserved) == 0 {
		t.Fatalf("event types: %d, %v, %v", len(types), reserved, err)
	}
}

func TestStreamEventsResumes(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	app := s.app()
	p := newProxy(t, s.URL)
	streamer := client.New(p.URL(), client.WithAPIKey(s.Key), client.WithRetry(client.Retry{Backoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}))

	const total = 30
	var mu sync.Mutex
	var got []*meetsync.Event
	var drops atomic.Int32
	errc := make(chan error, 1)
	go func() {
		errc <- streamer.StreamEvents(ctx, client.StreamParams{After: "0", Types: []string{"crm.*"}}, func(ev *meetsync.Event) error {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, ev)
			if len(got) == total {
				return errDone
			}
			return nil
		}, client.OnStreamError(func(error) { drops.Add(1) }))
	}()
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(got) }
	for i := range total {
		if _, err := app.PostEvent(ctx, meetsync.EventInput{Type: "crm.tick", UserID: fmt.Sprint("u", i%3), Data: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))}); err != nil {
			t.Fatal(err)
		}
		if i == 10 || i == 20 {
			// Cut the network once the stream has caught up, post while
			// it is down, then restore it.
			eventually(t, "the stream to catch up", func() bool { return count() == i+1 })
			p.SetDown(true)
			eventually(t, "the stream to notice the drop", func() bool { return drops.Load() >= int32(i/10) })
			p.SetDown(false)
		}
	}
	if err := <-errc; !errors.Is(err, errDone) {
		t.Fatalf("StreamEvents returned %v", err)
	}
	for i, ev := range got {
		var d struct{ I int }
		if err := json.Unmarshal(ev.Data, &d); err != nil || d.I != i {
			t.Fatalf("event %d of the stream is %s: missed or repeated", i, ev.Data)
		}
	}
}

var errDone = errors.New("done")

func TestStreamEventsUnauthorized(t *testing.T) {
	t.Parallel()
	s := setup(t)
	err := client.New(s.URL, client.WithAPIKey("msk_nope")).StreamEvents(context.Background(), client.StreamParams{}, func(*meetsync.Event) error { return nil })
	requireCode(t, err, meetsync.EUNAUTHORIZED, "")
}

func TestEndpointsAndDeliveries(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := context.Background()
	app := s.app()

	_, err := app.CreateEndpoint(ctx, client.EndpointParams{})
	requireCode(t, err, meetsync.EINVALID, "url")
	ep, err := app.CreateEndpoint(ctx, client.EndpointParams{URL: client.Ptr("http://127.0.0.1:9/hook"),
		EventTypes: &[]string{"crm.*"}, DebounceMS: client.Ptr[int64](0), Description: client.Ptr("test")})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ep.Secret, meetsync.SecretPrefix) || !ep.Enabled || ep.DebounceMS != 0 || ep.EventTypes[0] != "crm.*" {
		t.Fatalf("created %+v", ep)
	}
	got, err := app.GetEndpoint(ctx, ep.ID)
	if err != nil || got.Secret != "" || got.URL != ep.URL {
		t.Fatalf("get = %+v, %v (the secret is shown once)", got, err)
	}
	list, err := app.ListEndpoints(ctx)
	if err != nil || len(list) != 1 || list[0].ID != ep.ID {
		t.Fatalf("list = %+v, %v", list, err)
	}
	if _, err := app.PostEvent(ctx, meetsync.EventInput{Type: "crm.paid", UserID: "u1"}); err != nil {
		t.Fatal(err)
	}
	// Disabled, the endpoint keeps its pending delivery and gets no new ones.
	upd, err := app.UpdateEndpoint(ctx, ep.ID, client.EndpointParams{Enabled: client.Ptr(false), RateLimitPerS: client.Ptr(5)})
	if err != nil || upd.Enabled || upd.RateLimitPerS != 5 || upd.Description != "test" {
		t.Fatalf("update = %+v, %v", upd, err)
	}
	rot, err := app.RotateSecret(ctx, ep.ID, client.Ptr(time.Hour))
	if err != nil || rot.Secret == ep.Secret || !strings.HasPrefix(rot.Secret, meetsync.SecretPrefix) || rot.PreviousExpiresAt.IsZero() {
		t.Fatalf("rotate = %+v, %v", rot, err)
	}
	if _, err := app.RotateSecret(ctx, ep.ID, nil); err != nil {
		t.Fatalf("rotate with the default grace: %v", err)
	}

	ds, err := app.ListDeliveries(ctx, ep.ID, client.DeliveryListParams{})
	if err != nil || len(ds.Deliveries) != 1 || ds.Deliveries[0].EventType != "crm.paid" || ds.Deliveries[0].Status != meetsync.DeliveryPending {
		t.Fatalf("deliveries = %+v, %v", ds, err)
	}
	if _, err := app.ListDeliveries(ctx, ep.ID, client.DeliveryListParams{Status: "bogus"}); err == nil {
		t.Fatal("a bogus status filter was accepted")
	} else {
		requireCode(t, err, meetsync.EINVALID, "status")
	}
	d, err := app.GetDelivery(ctx, ds.Deliveries[0].ID)
	if err != nil || d.Delivery.ID != ds.Deliveries[0].ID || d.Attempts == nil {
		t.Fatalf("delivery = %+v, %v", d, err)
	}
	if _, err := app.ReplayDelivery(ctx, "del_nope"); meetsync.ErrorCode(err) != meetsync.ENOTFOUND {
		t.Fatalf("replay of an unknown delivery: %v", err)
	}
	if n, err := app.RecoverEndpoint(ctx, ep.ID, time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("recover = %d, %v (nothing failed)", n, err)
	}
	if err := app.DeleteEndpoint(ctx, ep.ID); err != nil {
		t.Fatal(err)
	}
	_, err = app.GetEndpoint(ctx, ep.ID)
	requireCode(t, err, meetsync.ENOTFOUND, "")
}

func TestAppAndKeys(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := context.Background()
	app := s.app()

	a, err := app.GetApp(ctx)
	if err != nil || a.ID != s.AppID || a.Name == "" {
		t.Fatalf("app = %+v, %v", a, err)
	}
	k, err := app.CreateKey(ctx)
	if err != nil || !strings.HasPrefix(k.Key, meetsync.APIKeyPrefix) {
		t.Fatalf("create key = %+v, %v", k, err)
	}
	second := app.WithToken(k.Key)
	keys, err := second.ListKeys(ctx)
	if err != nil || len(keys) != 2 {
		t.Fatalf("keys = %+v, %v", keys, err)
	}
	for _, key := range keys {
		if key.Key != "" {
			t.Fatalf("a listed key shows its secret")
		}
		if key.Current != (key.ID == k.ID) {
			t.Fatalf("key %s current = %v", key.ID, key.Current)
		}
	}
	if err := app.RevokeKey(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	_, err = second.GetApp(ctx)
	requireCode(t, err, meetsync.EUNAUTHORIZED, "")
}

// TestUpdateApp: PATCH /v1/app changes the session settings and the provider.
func TestUpdateApp(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := context.Background()
	app := s.app()
	a, err := app.UpdateApp(ctx, client.AppParams{SessionPolicy: client.Ptr(client.PolicyDegrade), LoginDeadline: client.Ptr(client.Duration(45 * time.Second))})
	if err != nil {
		t.Fatal(err)
	}
	if a.SessionPolicy != client.PolicyDegrade || time.Duration(a.LoginDeadline) != 45*time.Second {
		t.Fatalf("app = %+v", a)
	}
	a, err = app.UpdateApp(ctx, client.AppParams{Provider: &meetsync.ProviderConfig{Kind: meetsync.ProviderNetEase, AppKey: "k", AppSecret: "s3cret", BaseURL: "https://127.0.0.1:9"}})
	if err != nil {
		t.Fatal(err)
	}
	if a.Provider == nil || a.Provider.Kind != meetsync.ProviderNetEase || !a.Provider.AppSecretSet {
		t.Fatalf("provider = %+v", a.Provider)
	}
	_, err = app.UpdateApp(ctx, client.AppParams{SessionPolicy: client.Ptr("maybe")})
	requireCode(t, err, meetsync.EINVALID, "session_policy")
}

// flaky answers fail for the first n requests, then passes them on.
type flaky struct {
	next   http.Handler
	fail   func(w http.ResponseWriter)
	n      atomic.Int32
	served atomic.Int32
}

func (f *flaky) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.served.Add(1)
	if f.n.Add(-1) >= 0 {
		f.fail(w)
		return
	}
	f.next.ServeHTTP(w, r)
}

func TestRetry(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := context.Background()
	u, err := url.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	pass := httputil.NewSingleHostReverseProxy(u)
	unavailable := func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, `{"error":{"code":"unavailable","message":"shutting down"}}`)
	}
	fast := client.WithRetry(client.Retry{Attempts: 3, Backoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})

	for _, tc := range []struct {
		name     string
		fails    int32
		fail     func(w http.ResponseWriter)
		call     func(c *client.Client) error
		wantErr  string // "" for success
		wantSent int32
	}{
		{"a read is retried", 2, unavailable, func(c *client.Client) error { _, err := c.GetApp(ctx); return err }, "", 3},
		{"a read gives up after its attempts", 5, unavailable, func(c *client.Client) error { _, err := c.GetApp(ctx); return err }, meetsync.EUNAVAILABLE, 3},
		{"an event post with client_seq is retried", 2, unavailable, func(c *client.Client) error {
			_, err := c.PostEvent(ctx, statusEvent("u1", "d1", 1, 3))
			return err
		}, "", 3},
		{"an event post with an Idempotency-Key is retried", 1, unavailable, func(c *client.Client) error {
			_, err := c.PostEvents(ctx, []meetsync.EventInput{{Type: "crm.a", UserID: "u1"}}, client.IdempotencyKey("retry-1"))
			return err
		}, "", 2},
		{"an event post without either is not retried", 1, unavailable, func(c *client.Client) error {
			_, err := c.PostEvent(ctx, meetsync.EventInput{Type: "crm.a", UserID: "u1"})
			return err
		}, meetsync.EUNAVAILABLE, 1},
		{"an event type put is retried", 2, unavailable, func(c *client.Client) error {
			_, _, err := c.PutEventType(ctx, "crm.retried", client.EventTypeParams{Schema: json.RawMessage(`true`)})
			return err
		}, "", 3},
		{"a key creation is not retried", 1, unavailable, func(c *client.Client) error { _, err := c.CreateKey(ctx); return err }, meetsync.EUNAVAILABLE, 1},
		{"429 is retried whatever the call", 1, func(w http.ResponseWriter) {
			w.Header().Set("Retry-After", "0")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprint(w, `{"error":{"code":"rate_limited","message":"slow down"}}`)
		}, func(c *client.Client) error { _, err := c.CreateKey(ctx); return err }, "", 2},
		{"a proxy's 501 is not retried", 3, func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusNotImplemented)
			fmt.Fprint(w, "not implemented")
		}, func(c *client.Client) error { _, err := c.GetApp(ctx); return err }, meetsync.EINVALID, 1},
		{"a proxy's 500 is retried", 1, func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusInternalServerError)
		}, func(c *client.Client) error { _, err := c.GetApp(ctx); return err }, "", 2},
		{"4xx is not retried", 3, func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error":{"code":"invalid","message":"no","field":"x"}}`)
		}, func(c *client.Client) error { _, err := c.GetApp(ctx); return err }, meetsync.EINVALID, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &flaky{next: pass, fail: tc.fail}
			f.n.Store(tc.fails)
			srv := httptest.NewServer(f)
			defer srv.Close()
			err := tc.call(client.New(srv.URL, client.WithAPIKey(s.Key), fast))
			if got := meetsync.ErrorCode(err); got != tc.wantErr {
				t.Fatalf("error %v, want code %q", err, tc.wantErr)
			}
			if got := f.served.Load(); got != tc.wantSent {
				t.Fatalf("%d requests, want %d", got, tc.wantSent)
			}
		})
	}
	// The retried event post was stored once.
	evs := s.events(t, "u1", meetsync.TypeMeetingStatusChanged)
	if len(evs) != 1 {
		t.Fatalf("%d status events stored, want 1", len(evs))
	}
}

// TestContractSessions checks the real server's session routes against
// docs/sessions.md.
func TestContractSessions(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := context.Background()
	app := s.app()

	res, err := app.Login(ctx, "alice", client.LoginRequest{DeviceID: "d1", DisplayName: "Alice"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(res.SessionID, "ses_") || !strings.HasPrefix(res.ClientToken, meetsync.ClientTokenPrefix) ||
		res.Business != meetsync.SideLoggedIn || res.MeetingSide != meetsync.SidePending || res.Meeting == nil ||
		res.Meeting.UserToken == "" || res.Deadline.IsZero() || res.ExpiresAt.IsZero() {
		t.Fatalf("login = %+v", res)
	}
	again, err := app.Login(ctx, "alice", client.LoginRequest{DeviceID: "d1"})
	if err != nil || again.SessionID != res.SessionID || again.ClientToken == res.ClientToken {
		t.Fatalf("a second login of an open session = %+v, %v: want the same session with a new token", again, err)
	}
	dev := client.New(s.URL, client.WithClientToken(res.ClientToken))
	ev, err := dev.ClientInit(ctx, client.InitReport{Business: client.Result{OK: true}, Meeting: client.Result{Code: -1, Message: "no camera"}})
	if err != nil || ev == nil || !strings.HasPrefix(ev.ID, "evt_") || ev.Seq == 0 {
		t.Fatalf("client init = %+v, %v", ev, err)
	}
	if inits := s.events(t, "alice", meetsync.TypeClientInitialized); len(inits) != 1 || inits[0].ID != ev.ID || inits[0].DeviceID != "d1" {
		t.Fatalf("client.initialized events %+v, want the one stored as %s", inits, ev.ID)
	}
	ses, err := dev.ClientLogin(ctx, client.Result{OK: true})
	if err != nil || ses == nil || ses.Meeting != meetsync.SideLoggedIn {
		t.Fatalf("client login = %+v, %v", ses, err)
	}
	u, err := app.GetUser(ctx, "alice")
	if err != nil || u.Session.ID != res.SessionID || u.Session.Business != meetsync.SideLoggedIn || u.Session.Meeting != meetsync.SideLoggedIn {
		t.Fatalf("user session = %+v, %v", u, err)
	}
	acct, err := dev.ClientCredentials(ctx, false)
	if err != nil || acct.UserUUID != res.Meeting.UserUUID {
		t.Fatalf("credentials = %+v, %v", acct, err)
	}
	fresh, err := dev.ClientCredentials(ctx, true)
	if err != nil || fresh.UserToken == acct.UserToken {
		t.Fatalf("refreshed credentials = %+v, %v: want a new token", fresh, err)
	}
	rs, err := dev.ClientEvents(ctx, []meetsync.EventInput{{Type: meetsync.TypeMeetingStatusChanged, ClientSeq: seq(1), Data: json.RawMessage(`{"status":3}`)}})
	if err != nil || rs[0].Seq == 0 {
		t.Fatalf("client events = %+v, %v", rs, err)
	}
	_, err = dev.ClientEvents(ctx, []meetsync.EventInput{{Type: "crm.x", UserID: "bob"}})
	if meetsync.ErrorCode(err) != meetsync.EFORBIDDEN {
		t.Fatalf("an event for another user: %v, want forbidden", err)
	}
	if cmds, err := dev.PendingCommands(ctx); err != nil || len(cmds) != 0 {
		t.Fatalf("pending commands = %+v, %v", cmds, err)
	}

	out, err := app.Logout(ctx, "alice", client.LogoutRequest{Reason: "test"})
	if err != nil || out.SessionID != res.SessionID || out.State != meetsync.SideLoggingOut {
		t.Fatalf("logout = %+v, %v", out, err)
	}
	if _, err := app.Login(ctx, "alice", client.LoginRequest{DeviceID: "d1"}); meetsync.ErrorCode(err) != meetsync.ECONFLICT {
		t.Fatalf("login while logging out: %v, want conflict", err)
	}
	// While the session logs out the device gets no meeting credentials:
	// the platform token was just revoked for this logout, and a new one
	// would log the device in again.
	for _, refresh := range []bool{false, true} {
		if acct, err := dev.ClientCredentials(ctx, refresh); meetsync.ErrorCode(err) != meetsync.ECONFLICT {
			t.Errorf("credentials (refresh %v) while logging out: got credentials %v, error %v; want conflict", refresh, acct != nil, err)
		}
	}
	cmds, err := dev.PendingCommands(ctx)
	if err != nil || len(cmds) != 1 || cmds[0].Type != client.CommandLogout {
		t.Fatalf("pending commands after logout = %+v, %v", cmds, err)
	}
	// The stream sends the same command.
	sctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	err = dev.Commands(sctx, func(c client.Command) error {
		if c.ID != cmds[0].ID {
			return fmt.Errorf("stream sent %s, want %s", c.ID, cmds[0].ID)
		}
		return errDone
	})
	if !errors.Is(err, errDone) {
		t.Fatal(err)
	}
	if err := dev.AckCommand(ctx, cmds[0].ID, client.Result{OK: true}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the session to end", func() bool {
		_, err := dev.PendingCommands(ctx)
		return meetsync.ErrorCode(err) == meetsync.EUNAUTHORIZED
	})
	if _, err := app.Logout(ctx, "alice", client.LogoutRequest{}); meetsync.ErrorCode(err) != meetsync.ENOTFOUND {
		t.Fatalf("logout without a session: %v, want not found", err)
	}
	types := map[string]bool{}
	for _, e := range s.events(t, "alice", "session.*") {
		types[e.Type] = true
	}
	for _, want := range []string{meetsync.TypeSessionLoggedIn, meetsync.TypeSessionLogoutStarted, meetsync.TypeSessionLoggedOut} {
		if !types[want] {
			t.Errorf("no %s event in the feed (got %v)", want, types)
		}
	}
}

// TestStreamResumesFromAnIDOnlyBlock: a stream that starts by saying where
// it stands (an id without data) is resumed from there, even before its
// first event.
func TestStreamResumesFromAnIDOnlyBlock(t *testing.T) {
	t.Parallel()
	var conns atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		switch conns.Add(1) {
		case 1:
			if r.Header.Get("Last-Event-ID") != "" {
				t.Errorf("first connection sent Last-Event-ID %q", r.Header.Get("Last-Event-ID"))
			}
			fmt.Fprint(w, "retry: 1\n\nid: 5\n\n") // then the connection ends
		default:
			if got := r.Header.Get("Last-Event-ID"); got != "5" {
				t.Errorf("reconnection sent Last-Event-ID %q, want 5", got)
			}
			fmt.Fprint(w, `id: 6`+"\n"+`data: {"id":"evt_6","type":"crm.a","user_id":"u1","seq":1,"cursor":"6"}`+"\n\n")
		}
	}))
	defer srv.Close()
	c := client.New(srv.URL, client.WithAPIKey("msk_x"), client.WithRetry(client.Retry{Backoff: time.Millisecond}))
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	err := c.StreamEvents(ctx, client.StreamParams{}, func(ev *meetsync.Event) error {
		if ev.ID != "evt_6" || ev.Pos != 6 {
			t.Errorf("event %+v", ev)
		}
		return errDone
	})
	if !errors.Is(err, errDone) {
		t.Fatal(err)
	}
}
