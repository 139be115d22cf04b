package session_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/httpapi"
	"github.com/meetsync/meetsync/ingest"
	"github.com/meetsync/meetsync/netease"
	"github.com/meetsync/meetsync/session"
	"github.com/meetsync/meetsync/sim"
	"github.com/meetsync/meetsync/sqlite"
)

// env is one meetsync with sessions on the sim platform: a real SQLite
// file, the group committer, the session engine (its clock can be moved
// forward), and the HTTP API on 127.0.0.1.
type env struct {
	URL   string
	Store *sqlite.DB
	Svc   *session.Service
	Sim   *sim.Platform
	AppID string
	Key   string

	offset atomic.Int64 // added to the session engine's clock
	// beforeAppend, when set, sees each of the session engine's appends
	// before the committer does.
	beforeAppend atomic.Pointer[func(*meetsync.AppendRequest)]
	// afterAppend, when set, sees each of the session engine's appends
	// once the committer answered it.
	afterAppend atomic.Pointer[func(*meetsync.AppendRequest)]
	// beforeCommands, when set, sees each batch of commands the session
	// engine creates before the store does.
	beforeCommands atomic.Pointer[func([]*meetsync.Command)]
	// commandListErr, when set, is the error of the API's CommandList
	// calls (a database out of reach), counted in commandListFailed.
	commandListErr    atomic.Pointer[error]
	commandListFailed atomic.Int64
}

// apiSessions is the API's session store: env.commandListErr fails its
// CommandList calls.
type apiSessions struct {
	meetsync.SessionStore
	e *env
}

func (a apiSessions) CommandList(ctx context.Context, appID, userID, deviceID string, pendingOnly bool) ([]*meetsync.Command, error) {
	if err := a.e.commandListErr.Load(); err != nil {
		a.e.commandListFailed.Add(1)
		return nil, *err
	}
	return a.SessionStore.CommandList(ctx, appID, userID, deviceID, pendingOnly)
}

// hookedSessions runs env.beforeCommands before each CommandsCreate.
type hookedSessions struct {
	meetsync.SessionStore
	e *env
}

func (h hookedSessions) CommandsCreate(ctx context.Context, cmds []*meetsync.Command) error {
	if f := h.e.beforeCommands.Load(); f != nil {
		(*f)(cmds)
	}
	return h.SessionStore.CommandsCreate(ctx, cmds)
}

// hookedAppender runs env.beforeAppend before each append and
// env.afterAppend after it.
type hookedAppender struct {
	session.Appender
	e *env
}

func (h hookedAppender) Append(ctx context.Context, req *meetsync.AppendRequest) error {
	if f := h.e.beforeAppend.Load(); f != nil {
		(*f)(req)
	}
	err := h.Appender.Append(ctx, req)
	if f := h.e.afterAppend.Load(); f != nil {
		(*f)(req)
	}
	return err
}

func setup(t *testing.T) *env {
	t.Helper()
	db, err := sqlite.Open(filepath.Join(t.TempDir(), "meetsync.db"), sqlite.Config{})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	ing := ingest.New(db, reg, ingest.Config{})
	platform := sim.New()
	sealer, err := meetsync.NewSealer(meetsync.NewSecretKey())
	if err != nil {
		t.Fatal(err)
	}
	e := &env{Store: db, Sim: platform}
	e.Svc = session.New(session.Config{
		Store: db, Sessions: hookedSessions{db, e}, Invitations: db, Appender: hookedAppender{ing, e}, Logger: slog.New(slog.DiscardHandler),
		Providers: func(appID string, cfg meetsync.ProviderConfig) (meetsync.Provider, error) {
			if cfg.Kind == meetsync.ProviderNetEase {
				nc := netease.ConfigFrom(cfg)
				nc.Backoff, nc.MaxBackoff = 10*time.Millisecond, 50*time.Millisecond
				p, err := netease.New(nc)
				if err != nil {
					return nil, err
				}
				return p, nil
			}
			return platform.Provider(appID), nil
		},
		Now:            func() time.Time { return time.Now().Add(time.Duration(e.offset.Load())) },
		ReconcileEvery: -1,
		Sealer:         sealer,
		TickEvery:      time.Hour, // the tests call RunDue themselves
	})
	platform.SetCallbackSink(func(ctx context.Context, appID string, h http.Header, body []byte) error {
		_, err := e.Svc.HandleCallback(ctx, meetsync.ProviderSim, appID, h, body) // a retried one is answered as the first time
		return err
	})
	api := httpapi.New(httpapi.Config{Store: db, Ingester: ing, Logger: slog.New(slog.DiscardHandler), Registry: reg,
		Sessions: e.Svc, SessionStore: apiSessions{db, e}, InvitationStore: db, Sealer: sealer, StreamHeartbeat: 200 * time.Millisecond})
	srv := httptest.NewServer(api)
	if !strings.HasPrefix(srv.Listener.Addr().String(), "127.0.0.1:") {
		t.Fatalf("listening on %s", srv.Listener.Addr())
	}
	e.URL = srv.URL
	t.Cleanup(func() {
		api.BeginShutdown()
		srv.Close()
		platform.Close()
		e.Svc.Close()
		ing.Close()
		db.Close()
	})
	e.Svc.Start()
	now := time.Now().UTC()
	app := &meetsync.App{ID: meetsync.NewID("app"), Name: "sessions", CreatedAt: now}
	k, secret := meetsync.NewAPIKey(app.ID, now)
	if err := db.AppCreate(context.Background(), app, k); err != nil {
		t.Fatal(err)
	}
	e.AppID, e.Key = app.ID, secret
	return e
}

// advance moves the session engine's clock and runs what became due.
func (e *env) advance(t *testing.T, d time.Duration) {
	t.Helper()
	e.offset.Add(int64(d))
	if _, err := e.Svc.RunDue(context.Background()); err != nil {
		t.Fatalf("run due: %v", err)
	}
}

type resp struct {
	Status int
	Body   []byte
}

func (r resp) String() string { return fmt.Sprintf("%d %s", r.Status, r.Body) }

func (r resp) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r, err)
	}
}

func (e *env) do(t *testing.T, method, path, token string, body any) resp {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		buf, _ := json.Marshal(b)
		rd = bytes.NewReader(buf)
	}
	req, _ := http.NewRequest(method, e.URL+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if strings.HasPrefix(path, "/v1/client/commands") && method == "GET" {
		req.Header.Set("Accept", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{res.StatusCode, b}
}

func (e *env) want(t *testing.T, r resp, status int) resp {
	t.Helper()
	if r.Status != status {
		t.Fatalf("got %s, want status %d", r, status)
	}
	return r
}

type loginResult struct {
	SessionID   string                   `json:"session_id"`
	Business    string                   `json:"business"`
	MeetingSide string                   `json:"meeting_side"`
	Meeting     *meetsync.MeetingAccount `json:"meeting"`
	ClientToken string                   `json:"client_token"`
}

func (e *env) login(t *testing.T, user, device string) loginResult {
	t.Helper()
	var lr loginResult
	e.want(t, e.do(t, "POST", "/v1/users/"+user+"/login", e.Key, map[string]any{"device_id": device}), 200).decode(t, &lr)
	return lr
}

type userView struct {
	Session struct {
		ID            string `json:"id"`
		Business      string `json:"business"`
		Meeting       string `json:"meeting"`
		RevokePending bool   `json:"revoke_pending"`
	} `json:"session"`
	Meeting struct {
		Status     string `json:"status"`
		Reason     string `json:"reason"`
		MeetingNum string `json:"meeting_num"`
	} `json:"meeting"`
}

func (e *env) user(t *testing.T, id string) userView {
	t.Helper()
	var u userView
	e.want(t, e.do(t, "GET", "/v1/users/"+id, e.Key, nil), 200).decode(t, &u)
	return u
}

type feedEvent struct {
	ID     string          `json:"id"`
	Type   string          `json:"type"`
	UserID string          `json:"user_id"`
	Seq    int64           `json:"seq"`
	Data   json.RawMessage `json:"data"`
}

// events returns a user's events in order.
func (e *env) events(t *testing.T, user string) []feedEvent {
	t.Helper()
	var out struct {
		Events []feedEvent `json:"events"`
	}
	e.want(t, e.do(t, "GET", "/v1/events?limit=1000&user_id="+user, e.Key, nil), 200).decode(t, &out)
	return out.Events
}

func types(evs []feedEvent) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Type)
	}
	return out
}

func lastOf(t *testing.T, evs []feedEvent, typ string) map[string]any {
	t.Helper()
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Type == typ {
			var m map[string]any
			if err := json.Unmarshal(evs[i].Data, &m); err != nil {
				t.Fatal(err)
			}
			return m
		}
	}
	t.Fatalf("no %s event in %v", typ, types(evs))
	return nil
}

// listener records what a sim SDK reports.
type listener struct {
	mu       sync.Mutex
	statuses []meetsync.MeetingStatus
	kicked   int
	expired  int
}

func (l *listener) OnMeetingStatusChanged(st meetsync.MeetingStatus, _ meetsync.Reason, _ string) {
	l.mu.Lock()
	l.statuses = append(l.statuses, st)
	l.mu.Unlock()
}
func (l *listener) OnKickOut()         { l.mu.Lock(); l.kicked++; l.mu.Unlock() }
func (l *listener) OnAuthInfoExpired() { l.mu.Lock(); l.expired++; l.mu.Unlock() }

// TestSeedFlow is the seed's whole flow through the HTTP API: init, login
// business then meeting, meeting status, logout business then meeting
// with the device's confirmation, and the platform credentials revoked.
func TestSeedFlow(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	lr := e.login(t, "alice", "laptop")
	if lr.SessionID == "" || lr.Meeting == nil || lr.Meeting.UserToken == "" || !strings.HasPrefix(lr.ClientToken, "mct_") {
		t.Fatalf("login: %+v", lr)
	}
	if lr.Business != "logged_in" || lr.MeetingSide != "pending" {
		t.Fatalf("login sides: %+v", lr)
	}
	tok := lr.ClientToken
	// The meeting token is encrypted at rest.
	if a, err := e.Store.AccountGet(ctx, e.AppID, "alice"); err != nil || !strings.HasPrefix(a.UserToken, "enc:v1:") || strings.Contains(a.UserToken, lr.Meeting.UserToken) {
		t.Fatalf("stored meeting token %q (%v): want it encrypted", a.UserToken, err)
	}

	sdk := e.Sim.NewSDK("")
	var l listener
	sdk.SetListener(&l)
	if err := sdk.Init(ctx); err != nil {
		t.Fatal(err)
	}
	e.want(t, e.do(t, "POST", "/v1/client/init", tok, map[string]any{"business": map[string]any{"ok": true}, "meeting": map[string]any{"ok": true}}), 200)
	if err := sdk.Login(ctx, *lr.Meeting); err != nil {
		t.Fatalf("sdk login with meetsync's credentials: %v", err)
	}
	e.want(t, e.do(t, "POST", "/v1/client/login", tok, map[string]any{"ok": true}), 200)
	if u := e.user(t, "alice"); u.Session.Business != "logged_in" || u.Session.Meeting != "logged_in" || u.Session.ID != lr.SessionID {
		t.Fatalf("after meeting login: %+v", u.Session)
	}
	// A second login while the session is open is the same session.
	if again := e.login(t, "alice", "laptop"); again.SessionID != lr.SessionID || again.Meeting.UserToken != lr.Meeting.UserToken {
		t.Fatalf("repeated login: %+v, first %+v", again, lr)
	}

	e.want(t, e.do(t, "POST", "/v1/client/events", tok, map[string]any{"type": "meeting.status_changed", "client_seq": 1,
		"data": map[string]any{"status": "MEETING_STATUS_INMEETING", "meeting_num": "123456"}}), 200)
	if u := e.user(t, "alice"); u.Meeting.Status != "in_meeting" {
		t.Fatalf("status: %+v", u.Meeting)
	}
	// A client token acts only for its own user.
	e.want(t, e.do(t, "POST", "/v1/client/events", tok, map[string]any{"type": "meeting.status_changed", "user_id": "bob",
		"data": map[string]any{"status": 0}}), 403)

	// Logout: business side at once, the device told, the platform token revoked.
	var lo struct {
		State           string `json:"state"`
		PlatformRevoked bool   `json:"platform_revoked"`
	}
	e.want(t, e.do(t, "POST", "/v1/users/alice/logout", e.Key, map[string]any{"reason": "user clicked logout"}), 202).decode(t, &lo)
	if lo.State != "logging_out" || !lo.PlatformRevoked {
		t.Fatalf("logout: %+v", lo)
	}
	var cmds struct {
		Commands []meetsync.Command `json:"commands"`
	}
	e.want(t, e.do(t, "GET", "/v1/client/commands", tok, nil), 200).decode(t, &cmds)
	if len(cmds.Commands) != 1 || cmds.Commands[0].Type != "logout" {
		t.Fatalf("commands: %+v", cmds)
	}
	if err := sdk.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	e.want(t, e.do(t, "POST", "/v1/client/commands/"+cmds.Commands[0].ID+"/ack", tok, map[string]any{"ok": true}), 204)
	if u := e.user(t, "alice"); u.Session.Business != "logged_out" || u.Session.Meeting != "logged_out" {
		t.Fatalf("after logout: %+v", u.Session)
	}
	// The old meeting token is dead at the platform; the client token too,
	// but for acknowledging its session's commands again (none pending).
	if err := loginSDK(ctx, e.Sim, *lr.Meeting); err == nil {
		t.Fatal("the meeting token still logs in after logout")
	}
	e.want(t, e.do(t, "POST", "/v1/client/events", tok, map[string]any{"type": "crm.a"}), 401)
	e.want(t, e.do(t, "POST", "/v1/client/commands/"+cmds.Commands[0].ID+"/ack", tok, map[string]any{"ok": true}), 204)
	e.want(t, e.do(t, "GET", "/v1/client/commands", tok, nil), 401) // nothing left to fetch

	evs := e.events(t, "alice")
	want := []string{"session.login_started", "client.initialized", "session.logged_in", "meeting.status_changed", "session.logout_started", "session.logged_out"}
	var got []string
	for _, ev := range evs {
		if ev.Type != "meeting.member_joined" && ev.Type != "meeting.member_left" {
			got = append(got, ev.Type)
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("events %v, want %v", got, want)
	}
	if d := lastOf(t, evs, "session.logged_out"); d["forced"] != false || d["platform_revoked"] != true {
		t.Fatalf("logged_out data: %v", d)
	}
}

// TestLoginPlatformDown: the platform is down at login; the login answers
// without credentials, is retried, and the deadline applies the policy.
func TestLoginPlatformDown(t *testing.T) {
	for _, policy := range []string{"rollback", "degrade"} {
		t.Run(policy, func(t *testing.T) {
			e := setup(t)
			e.want(t, e.do(t, "PATCH", "/v1/app", e.Key, map[string]any{"session_policy": policy, "login_deadline": "10s"}), 200)
			e.Sim.SetOutage(true)
			lr := e.login(t, "bob", "phone")
			if lr.Meeting != nil || lr.MeetingSide != "pending" || lr.ClientToken == "" {
				t.Fatalf("login during outage: %+v", lr)
			}
			// The client reports its failed meeting login; retrying the login is the same session.
			e.want(t, e.do(t, "POST", "/v1/client/login", lr.ClientToken, map[string]any{"ok": false, "code": -1, "message": "no credentials"}), 200)
			if again := e.login(t, "bob", "phone"); again.SessionID != lr.SessionID || again.Meeting != nil {
				t.Fatalf("retried login: %+v", again)
			}
			e.advance(t, 5*time.Second) // before the deadline: nothing happens
			if u := e.user(t, "bob"); u.Session.Meeting != "pending" {
				t.Fatalf("before deadline: %+v", u.Session)
			}
			e.advance(t, 6*time.Second)
			u := e.user(t, "bob")
			evs := e.events(t, "bob")
			if policy == "rollback" {
				if u.Session.Business != "logged_out" || u.Session.Meeting != "logged_out" {
					t.Fatalf("after rollback: %+v", u.Session)
				}
				d := lastOf(t, evs, "session.rolled_back")
				if d["policy"] != "rollback" {
					t.Fatalf("rolled_back: %v", d)
				}
				// The device is told to log out: its revoked token still
				// fetches and acknowledges that session's logout command
				// (for session.EndedCommandsGrace), and nothing else.
				var cmds struct {
					Commands []struct {
						ID        string `json:"id"`
						Type      string `json:"type"`
						SessionID string `json:"session_id"`
					} `json:"commands"`
				}
				e.want(t, e.do(t, "GET", "/v1/client/commands", lr.ClientToken, nil), 200).decode(t, &cmds)
				if len(cmds.Commands) != 1 || cmds.Commands[0].Type != "logout" || cmds.Commands[0].SessionID != lr.SessionID {
					t.Fatalf("commands after rollback: %+v", cmds)
				}
				ack := "/v1/client/commands/" + cmds.Commands[0].ID + "/ack"
				e.want(t, e.do(t, "POST", ack, lr.ClientToken, map[string]any{"ok": true}), 204)
				e.want(t, e.do(t, "POST", ack, lr.ClientToken, map[string]any{"ok": true}), 204) // again: harmless
				e.want(t, e.do(t, "POST", "/v1/client/events", lr.ClientToken, map[string]any{"type": "crm.a"}), 401)
				e.want(t, e.do(t, "POST", "/v1/client/login", lr.ClientToken, map[string]any{"ok": true}), 401)
				// Acknowledged, it is refused as any revoked token; a new
				// session's commands are not the old token's.
				e.want(t, e.do(t, "GET", "/v1/client/commands", lr.ClientToken, nil), 401)
				lr2 := e.login(t, "bob", "phone")
				e.want(t, e.do(t, "POST", "/v1/users/bob/logout", e.Key, nil), 202)
				e.want(t, e.do(t, "GET", "/v1/client/commands", lr.ClientToken, nil), 401)
				if r := e.want(t, e.do(t, "GET", "/v1/client/commands", lr2.ClientToken, nil), 200); !strings.Contains(string(r.Body), `"logout"`) {
					t.Fatalf("the new session's token does not see its logout: %s", r)
				}

			} else {
				if u.Session.Business != "logged_in" || u.Session.Meeting != "failed" {
					t.Fatalf("after degrade: %+v", u.Session)
				}
				lastOf(t, evs, "session.degraded")
				// Later, with the platform back, a new login gets credentials.
				e.Sim.SetOutage(false)
				lr2 := e.login(t, "bob", "phone")
				if lr2.Meeting == nil || lr2.MeetingSide != "pending" || lr2.SessionID != lr.SessionID {
					t.Fatalf("login after recovery: %+v", lr2)
				}
			}
			lastOf(t, evs, "session.login_failed")
		})
	}
}

// TestLogoutPlatformUnreachable: a logout while the platform is down is
// completed on the business side, reported, and the revocation is forced
// when the platform comes back.
func TestLogoutPlatformUnreachable(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	lr := e.login(t, "carol", "d1")
	e.want(t, e.do(t, "POST", "/v1/client/login", lr.ClientToken, map[string]any{"ok": true}), 200)
	e.Sim.SetOutage(true)
	var lo struct {
		PlatformRevoked bool `json:"platform_revoked"`
	}
	e.want(t, e.do(t, "POST", "/v1/users/carol/logout", e.Key, nil), 202).decode(t, &lo)
	if lo.PlatformRevoked {
		t.Fatal("platform_revoked during an outage")
	}
	// The device never confirms: the deadline forces the logout.
	e.advance(t, 31*time.Second)
	u := e.user(t, "carol")
	if u.Session.Business != "logged_out" || u.Session.Meeting != "logged_out" || !u.Session.RevokePending {
		t.Fatalf("after forced logout: %+v", u.Session)
	}
	d := lastOf(t, e.events(t, "carol"), "session.logged_out")
	if d["forced"] != true || d["platform_revoked"] != false {
		t.Fatalf("logged_out: %v", d)
	}
	// The platform comes back: the revocation is retried and reported.
	e.Sim.SetOutage(false)
	e.advance(t, 10*time.Minute)
	if u := e.user(t, "carol"); u.Session.RevokePending {
		t.Fatalf("revocation still pending: %+v", u.Session)
	}
	if d := lastOf(t, e.events(t, "carol"), "session.diverged"); d["kind"] != "logout_not_revoked" || d["healed"] != true {
		t.Fatalf("diverged: %v", d)
	}
	if err := loginSDK(ctx, e.Sim, *lr.Meeting); err == nil {
		t.Fatal("the old meeting token still works after the forced revocation")
	}
}

// TestKickedOutAndStaleReports: a device kicked out (another device logged
// in) reports it; a late status from an offline queue does not move the
// state back.
func TestKickedOutAndStaleReports(t *testing.T) {
	e := setup(t)
	lr := e.login(t, "dave", "d1")
	tok := lr.ClientToken
	e.want(t, e.do(t, "POST", "/v1/client/login", tok, map[string]any{"ok": true}), 200)
	post := func(seq int, status string) {
		e.want(t, e.do(t, "POST", "/v1/client/events", tok, map[string]any{"type": "meeting.status_changed", "client_seq": seq,
			"data": map[string]any{"status": status, "meeting_num": "42"}}), 200)
	}
	post(2, "in_meeting")
	post(3, "idle")
	post(1, "connecting") // flushed late from the offline queue
	if u := e.user(t, "dave"); u.Meeting.Status != "idle" {
		t.Fatalf("a stale report moved the state: %+v", u.Meeting)
	}
	e.want(t, e.do(t, "POST", "/v1/client/events", tok, map[string]any{"type": "session.kicked_out", "client_seq": 4}), 200)
	if u := e.user(t, "dave"); u.Session.Business != "logged_in" || u.Session.Meeting != "logged_out" {
		t.Fatalf("after kick-out: %+v", u.Session)
	}
	// Logging in again re-opens the meeting side.
	if again := e.login(t, "dave", "d2"); again.MeetingSide != "pending" || again.SessionID != lr.SessionID {
		t.Fatalf("login after kick-out: %+v", again)
	}
}

// joinMeeting sets a reconcile grace of 20 s, logs user in on device d1
// and has its meeting SDK join a meeting a host created (the platform's
// member-joined callback follows); the device reports nothing.
func (e *env) joinMeeting(t *testing.T, user string) (loginResult, *meetsync.PlatformMeeting) {
	t.Helper()
	ctx := context.Background()
	e.want(t, e.do(t, "PATCH", "/v1/app", e.Key, map[string]any{"reconcile_grace": "20s"}), 200)
	lr := e.login(t, user, "d1")
	host := e.login(t, "host", "h1")
	m, err := e.Sim.Provider(e.AppID).CreateMeeting(ctx, meetsync.MeetingRequest{HostUUID: host.Meeting.UserUUID, Subject: "standup"})
	if err != nil {
		t.Fatal(err)
	}
	sdk := e.Sim.NewSDK("")
	if err := sdk.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if err := sdk.Login(ctx, *lr.Meeting); err != nil {
		t.Fatal(err)
	}
	if err := sdk.JoinMeeting(ctx, m.MeetingNum); err != nil {
		t.Fatal(err)
	}
	return lr, m
}

// TestReconcilerCorrectsStatus: the platform says the user left the
// meeting; the device (crashed) still says INMEETING; after the grace
// period meetsync corrects the status with the reason "reconciled".
func TestReconcilerCorrectsStatus(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	lr, m := e.joinMeeting(t, "erin")
	e.want(t, e.do(t, "POST", "/v1/client/events", lr.ClientToken, map[string]any{"type": "meeting.status_changed", "client_seq": 1,
		"data": map[string]any{"status": "MEETING_STATUS_INMEETING", "meeting_num": m.MeetingNum}}), 200)
	// The device crashes: it never reports IDLE; the platform removes it.
	if err := e.Sim.RemoveMember(ctx, e.AppID, m.MeetingNum, lr.Meeting.UserUUID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		for _, ev := range e.events(t, "erin") {
			if ev.Type == "meeting.member_left" {
				return true
			}
		}
		return false
	})
	e.advance(t, 5*time.Second)
	if u := e.user(t, "erin"); u.Meeting.Status != "in_meeting" {
		t.Fatalf("corrected before the grace period: %+v", u.Meeting)
	}
	e.advance(t, 20*time.Second)
	u := e.user(t, "erin")
	if u.Meeting.Status != "idle" || u.Meeting.Reason != "reconciled" {
		t.Fatalf("after grace: %+v", u.Meeting)
	}
	evs := e.events(t, "erin")
	if last := evs[len(evs)-1]; last.Type != "meeting.status_changed" {
		t.Fatalf("last event %s", last.Type)
	}
	// meetsync's own reason, with its own code (docs/sessions.md).
	if d := lastOf(t, evs, "meeting.status_changed"); d["reason"] != "reconciled" || d["reason_code"] != 1000.0 || d["device_id"] != "d1" {
		t.Fatalf("the correction's data %v, want reason reconciled, reason_code 1000", d)
	}
}

// TestReconcilerReportsPlatformMeeting: the platform says the user joined
// a meeting (from an app that does not report to meetsync); no device says
// so; after the grace period meetsync reports the meeting on the device
// "@platform" (reason "reconciled"), and corrects it again once the
// platform says the user left.
func TestReconcilerReportsPlatformMeeting(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	lr, m := e.joinMeeting(t, "gina")
	hasEvent := func(typ string) func() bool {
		return func() bool {
			for _, ev := range e.events(t, "gina") {
				if ev.Type == typ {
					return true
				}
			}
			return false
		}
	}
	waitFor(t, hasEvent("meeting.member_joined"))
	e.advance(t, 5*time.Second)
	if u := e.user(t, "gina"); u.Meeting.Status == "in_meeting" {
		t.Fatalf("reported before the grace period: %+v", u.Meeting)
	}
	e.advance(t, 20*time.Second)
	u := e.user(t, "gina")
	if u.Meeting.Status != "in_meeting" || u.Meeting.Reason != "reconciled" || u.Meeting.MeetingNum != m.MeetingNum {
		t.Fatalf("after grace: %+v", u.Meeting)
	}
	if d := lastOf(t, e.events(t, "gina"), "meeting.status_changed"); d["device_id"] != meetsync.PlatformDeviceID || d["status"] != "in_meeting" || d["reason_code"] != 1000.0 {
		t.Fatalf("the report's data %v, want in_meeting on %s, reason_code 1000", d, meetsync.PlatformDeviceID)
	}
	// Once is enough: later due rounds (the session's login deadline
	// passes meanwhile) report nothing more.
	statuses := func() (n int) {
		for _, ev := range e.events(t, "gina") {
			if ev.Type == "meeting.status_changed" {
				n++
			}
		}
		return n
	}
	n := statuses()
	e.advance(t, time.Minute)
	if got := statuses(); got != n {
		t.Fatalf("%d more status events after the report", got-n)
	}
	// The platform says the user left: the platform's device is corrected.
	if err := e.Sim.RemoveMember(ctx, e.AppID, m.MeetingNum, lr.Meeting.UserUUID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, hasEvent("meeting.member_left"))
	e.advance(t, 25*time.Second)
	if u := e.user(t, "gina"); u.Meeting.Status != "idle" || u.Meeting.Reason != "reconciled" {
		t.Fatalf("after the leave's grace: %+v", u.Meeting)
	}
}

// TestCallbackRejections: callbacks with a wrong CheckSum, a stale
// CurTime or a bad MD5 are refused and store nothing; a replayed requestId
// is answered as the first time and stores nothing.
func TestCallbackRejections(t *testing.T) {
	e := setup(t)
	lr := e.login(t, "frank", "d1")
	body := []byte(fmt.Sprintf(`{"requestId":"req-1","eventType":"MEETING_MEMBER_ENTRY","timestamp":%d,"data":{"meetingNum":"777","userUuid":%q}}`,
		time.Now().UnixMilli(), lr.Meeting.UserUUID))
	path := "/v1/providers/sim/callback/" + e.AppID
	send := func(h http.Header, b []byte) resp {
		req, _ := http.NewRequest("POST", e.URL+path, bytes.NewReader(b))
		for k, v := range h {
			req.Header[k] = v
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		rb, _ := io.ReadAll(res.Body)
		return resp{res.StatusCode, rb}
	}
	head := func() int64 {
		n, err := e.Store.EventFeedHead(context.Background(), e.AppID)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := head()
	good := e.Sim.SignCallback(e.AppID, body, time.Now())
	bad := func(mut func(h http.Header)) http.Header {
		h := good.Clone()
		mut(h)
		return h
	}
	for name, h := range map[string]http.Header{
		"wrong checksum": bad(func(h http.Header) { h.Set("CheckSum", strings.Repeat("0", 40)) }),
		"bad md5":        bad(func(h http.Header) { h.Set("MD5", strings.Repeat("a", 32)) }),
		"stale curtime":  e.Sim.SignCallback(e.AppID, body, time.Now().Add(-time.Hour)),
	} {
		if r := send(h, body); r.Status != 401 || !strings.Contains(string(r.Body), `"unauthorized"`) {
			t.Errorf("%s: %s", name, r)
		}
	}
	if h := head(); h != before {
		t.Fatalf("rejected callbacks stored events: head %d → %d", before, h)
	}
	e.want(t, send(good, body), 200)
	after := head()
	if after != before+1 {
		t.Fatalf("one callback stored %d events", after-before)
	}
	// A replayed requestId (the platform missed the answer) is answered as
	// the first time, and marked: nothing new is stored.
	if r := send(good, body); r.Status != 200 || !strings.Contains(string(r.Body), `"duplicate":true`) || !strings.Contains(string(r.Body), `"events":1`) {
		t.Fatalf("replayed requestId: %s", r)
	}
	if h := head(); h != after {
		t.Fatal("a replayed callback stored events")
	}
	// An empty-body validation probe is answered 200.
	e.want(t, send(e.Sim.SignCallback(e.AppID, nil, time.Now()), nil), 200)
	// Another app's path or provider: not found.
	if r := send(good, body); !strings.Contains(string(r.Body), `"duplicate":true`) {
		t.Fatalf("replay after the probe: %s", r)
	}
	if h := head(); h != after {
		t.Fatal("a replayed callback stored events")
	}
	req, _ := http.NewRequest("POST", e.URL+"/v1/providers/netease/callback/"+e.AppID, bytes.NewReader(body))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 404 {
		t.Fatalf("netease callback to a sim app: %d", res.StatusCode)
	}
}

// TestSessionBadInput: every bad request is a clear 4xx and changes nothing.
func TestSessionBadInput(t *testing.T) {
	e := setup(t)
	e.want(t, e.do(t, "POST", "/v1/users/@system/login", e.Key, nil), 400)
	e.want(t, e.do(t, "POST", "/v1/users/u1/login", e.Key, `{"device_id":""x}`), 400)
	e.want(t, e.do(t, "POST", "/v1/users/u1/login", e.Key, map[string]any{"bogus": 1}), 400)
	e.want(t, e.do(t, "POST", "/v1/users/u1/logout", e.Key, nil), 404)
	e.want(t, e.do(t, "POST", "/v1/users/u1/login", "msk_wrong", nil), 401)
	e.want(t, e.do(t, "POST", "/v1/client/login", "mct_wrong", map[string]any{"ok": true}), 401)
	e.want(t, e.do(t, "POST", "/v1/client/login", e.Key, map[string]any{"ok": true}), 401) // an app key is not a client token
	r := e.do(t, "PATCH", "/v1/app", e.Key, map[string]any{"session_policy": "maybe"})
	if r.Status != 400 || !strings.Contains(string(r.Body), `"session_policy"`) {
		t.Fatalf("bad policy: %s", r)
	}
	// A bad duration is a 400 naming its field, whatever the field.
	for _, f := range []string{"login_deadline", "logout_deadline", "client_token_ttl", "reconcile_grace", "retention"} {
		for _, v := range []any{"soon", "-5s", 30, true} {
			r := e.want(t, e.do(t, "PATCH", "/v1/app", e.Key, map[string]any{f: v, "session_policy": "degrade"}), 400)
			if !strings.Contains(string(r.Body), `"field":"`+f+`"`) {
				t.Errorf("PATCH /v1/app %s=%v: %s, want the error to name the field", f, v, r)
			}
		}
	}
	// null leaves a duration as it was.
	e.want(t, e.do(t, "PATCH", "/v1/app", e.Key, map[string]any{"login_deadline": nil}), 200)
	e.want(t, e.do(t, "PATCH", "/v1/app", e.Key, map[string]any{"provider": map[string]any{"kind": "netease"}}), 400)
	var app struct {
		SessionPolicy string `json:"session_policy"`
		Provider      struct {
			Kind string `json:"kind"`
		} `json:"provider"`
	}
	e.want(t, e.do(t, "GET", "/v1/app", e.Key, nil), 200).decode(t, &app)
	if app.SessionPolicy != "rollback" || app.Provider.Kind != "sim" {
		t.Fatalf("bad patches changed the app: %+v", app)
	}
	if _, err := e.Store.UserGet(context.Background(), e.AppID, "u1"); meetsync.ErrorCode(err) != meetsync.ENOTFOUND {
		t.Fatalf("bad logins created the user: %v", err)
	}
	lr := e.login(t, "u1", "d1")
	e.want(t, e.do(t, "POST", "/v1/client/login", lr.ClientToken, map[string]any{}), 400)
	e.want(t, e.do(t, "POST", "/v1/client/commands/cmd_nope/ack", lr.ClientToken, nil), 404)
	// Another app's key cannot see or log out this user.
	now := time.Now().UTC()
	other := &meetsync.App{ID: meetsync.NewID("app"), Name: "other", CreatedAt: now}
	k, otherKey := meetsync.NewAPIKey(other.ID, now)
	if err := e.Store.AppCreate(context.Background(), other, k); err != nil {
		t.Fatal(err)
	}
	e.want(t, e.do(t, "POST", "/v1/users/u1/logout", otherKey, nil), 404)
	e.want(t, e.do(t, "GET", "/v1/users/u1", otherKey, nil), 404)
}

// loginSDK logs a fresh sim SDK in with an account's credentials.
func loginSDK(ctx context.Context, p *sim.Platform, acct meetsync.MeetingAccount) error {
	sdk := p.NewSDK("")
	if err := sdk.Init(ctx); err != nil {
		return err
	}
	return sdk.Login(ctx, acct)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
