package session_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
)

// sessionState is the session of GET /v1/users/{id}, with its deadline.
type sessionState struct {
	ID            string     `json:"id"`
	Business      string     `json:"business"`
	Meeting       string     `json:"meeting"`
	Deadline      *time.Time `json:"deadline"`
	LoginAttempts int        `json:"login_attempts"`
}

func (e *env) session(t *testing.T, user string) sessionState {
	t.Helper()
	var u struct {
		Session sessionState `json:"session"`
	}
	e.want(t, e.do(t, "GET", "/v1/users/"+user, e.Key, nil), 200).decode(t, &u)
	return u.Session
}

// reportLogin posts a device's meeting login result and returns the
// session it answers.
func (e *env) reportLogin(t *testing.T, token string, body map[string]any) sessionState {
	t.Helper()
	var out struct {
		Session sessionState `json:"session"`
	}
	e.want(t, e.do(t, "POST", "/v1/client/login", token, body), 200).decode(t, &out)
	return out.Session
}

type relogin struct {
	SessionID   string     `json:"session_id"`
	MeetingSide string     `json:"meeting_side"`
	Deadline    *time.Time `json:"deadline"`
	ClientToken string     `json:"client_token"`
}

func (e *env) relogin(t *testing.T, user, device string) relogin {
	t.Helper()
	var lr relogin
	e.want(t, e.do(t, "POST", "/v1/users/"+user+"/login", e.Key, map[string]any{"device_id": device}), 200).decode(t, &lr)
	return lr
}

func countOf(evs []feedEvent, typ string) int {
	n := 0
	for _, ev := range evs {
		if ev.Type == typ {
			n++
		}
	}
	return n
}

var sdkFailed = map[string]any{"ok": false, "code": 7, "message": "sdk relogin failed"}

// TestLoginFailureAfterLoggedIn: once a device reported its meeting login,
// a later failure report (the same device, or another one) is recorded as
// session.login_failed, retrying false, and the session stays logged in:
// it never goes back to pending (least of all without a deadline, where
// nothing would ever resolve it).
func TestLoginFailureAfterLoggedIn(t *testing.T) {
	e := setup(t)
	lr := e.login(t, "olga", "o1")
	e.reportLogin(t, lr.ClientToken, map[string]any{"ok": true})

	if s := e.reportLogin(t, lr.ClientToken, sdkFailed); s.Meeting != "logged_in" || s.Deadline != nil {
		t.Fatalf("answer to a failure after logged_in: %+v, want logged_in without a deadline", s)
	}
	if s := e.session(t, "olga"); s.Business != "logged_in" || s.Meeting != "logged_in" || s.Deadline != nil || s.LoginAttempts != 1 {
		t.Fatalf("session after a failure report: %+v, want still logged_in, 1 failed attempt", s)
	}
	d := lastOf(t, e.events(t, "olga"), "session.login_failed")
	if d["retrying"] != false || d["meeting"] != "logged_in" || d["attempt"] != 1.0 || d["code"] != 7.0 ||
		d["message"] != "sdk relogin failed" || d["device_id"] != "o1" || d["deadline"] != nil {
		t.Fatalf("login_failed data %v", d)
	}
	if again := e.relogin(t, "olga", "o1"); again.SessionID != lr.SessionID || again.MeetingSide != "logged_in" || again.Deadline != nil {
		t.Fatalf("login again: %+v, want the same session, logged_in", again)
	}

	// A second device: its failure does not undo the first one's login.
	lr2 := e.relogin(t, "olga", "o2")
	if lr2.MeetingSide != "logged_in" {
		t.Fatalf("second device's login: %+v", lr2)
	}
	if s := e.reportLogin(t, lr2.ClientToken, sdkFailed); s.Meeting != "logged_in" {
		t.Fatalf("o2's failure: %+v, want logged_in", s)
	}
	e.advance(t, 2*time.Minute) // past any login deadline
	if s := e.session(t, "olga"); s.Business != "logged_in" || s.Meeting != "logged_in" || s.Deadline != nil || s.LoginAttempts != 2 {
		t.Fatalf("session after o2's failure and the deadline: %+v", s)
	}
	evs := e.events(t, "olga")
	if n := countOf(evs, "session.rolled_back") + countOf(evs, "session.degraded"); n != 0 {
		t.Fatalf("a consistent session was resolved by the policy: %v", types(evs))
	}
	if n := countOf(evs, "session.login_failed"); n != 2 {
		t.Fatalf("%d login_failed events, want 2: %v", n, types(evs))
	}
	// The session still works: logout and the devices' acks end it.
	e.want(t, e.do(t, "POST", "/v1/users/olga/logout", e.Key, nil), 202)
	for _, tok := range []string{lr.ClientToken, lr2.ClientToken} {
		for _, c := range e.commands(t, tok) {
			e.want(t, e.do(t, "POST", "/v1/client/commands/"+c.ID+"/ack", tok, map[string]any{"ok": true}), 204)
		}
	}
	if d := lastOf(t, e.events(t, "olga"), "session.logged_out"); d["forced"] != false {
		t.Fatalf("logged_out %v", d)
	}
}

// TestPendingAlwaysHasDeadline: a meeting side pending again after the
// SDK's auth info expired has a deadline (TestAuthExpiredGetsDeadline)
// that failure reports and a new login keep, and the policy resolves it;
// a degraded session's failure report changes nothing.
func TestPendingAlwaysHasDeadline(t *testing.T) {
	expired := func(t *testing.T, e *env, user string) string {
		t.Helper()
		lr := e.login(t, user, "p1")
		e.reportLogin(t, lr.ClientToken, map[string]any{"ok": true})
		e.want(t, e.do(t, "POST", "/v1/client/events", lr.ClientToken, map[string]any{"type": "session.auth_expired", "client_seq": 1}), 200)
		if s := e.session(t, user); s.Meeting != "pending" || s.Deadline == nil {
			t.Fatalf("after auth_expired: %+v, want pending with a deadline", s)
		}
		return lr.ClientToken
	}
	t.Run("failure report", func(t *testing.T) {
		e := setup(t)
		e.want(t, e.do(t, "PATCH", "/v1/app", e.Key, map[string]any{"login_deadline": "10s"}), 200)
		tok := expired(t, e, "pia")
		s := e.reportLogin(t, tok, sdkFailed)
		if s.Meeting != "pending" || s.Deadline == nil {
			t.Fatalf("failure report while pending after auth_expired: %+v, want pending with a deadline", s)
		}
		if s := e.session(t, "pia"); s.Meeting != "pending" || s.Deadline == nil {
			t.Fatalf("stored session %+v, want pending with a deadline", s)
		}
		if d := lastOf(t, e.events(t, "pia"), "session.login_failed"); d["retrying"] != true || d["deadline"] == nil {
			t.Fatalf("login_failed %v", d)
		}
		// A second failure keeps the deadline.
		if s2 := e.reportLogin(t, tok, sdkFailed); s2.Deadline == nil || !s2.Deadline.Equal(*s.Deadline) {
			t.Fatalf("second failure: deadline %v, want %v", s2.Deadline, s.Deadline)
		}
		e.advance(t, 11*time.Second)
		if s := e.session(t, "pia"); s.Business != "logged_out" || s.Meeting != "logged_out" {
			t.Fatalf("after the deadline: %+v, want rolled back", s)
		}
		if d := lastOf(t, e.events(t, "pia"), "session.rolled_back"); d["login_attempts"] != 2.0 {
			t.Fatalf("rolled_back %v", d)
		}
	})
	t.Run("login again", func(t *testing.T) {
		e := setup(t)
		e.want(t, e.do(t, "PATCH", "/v1/app", e.Key, map[string]any{"login_deadline": "10s", "session_policy": "degrade"}), 200)
		expired(t, e, "pat")
		if lr := e.relogin(t, "pat", "p1"); lr.MeetingSide != "pending" || lr.Deadline == nil {
			t.Fatalf("login while pending after auth_expired: %+v, want pending with a deadline", lr)
		}
		e.advance(t, 11*time.Second)
		if s := e.session(t, "pat"); s.Business != "logged_in" || s.Meeting != "failed" {
			t.Fatalf("after the deadline: %+v, want degraded", s)
		}
		lastOf(t, e.events(t, "pat"), "session.degraded")
	})
	t.Run("degraded", func(t *testing.T) {
		e := setup(t)
		e.want(t, e.do(t, "PATCH", "/v1/app", e.Key, map[string]any{"login_deadline": "10s", "session_policy": "degrade"}), 200)
		lr := e.login(t, "dina", "p1")
		e.advance(t, 11*time.Second)
		if s := e.reportLogin(t, lr.ClientToken, sdkFailed); s.Meeting != "failed" || s.Deadline != nil {
			t.Fatalf("failure report on a degraded session: %+v, want failed", s)
		}
		if d := lastOf(t, e.events(t, "dina"), "session.login_failed"); d["retrying"] != false || d["meeting"] != "failed" {
			t.Fatalf("login_failed %v", d)
		}
		e.advance(t, time.Minute)
		if s := e.session(t, "dina"); s.Meeting != "failed" || s.Deadline != nil {
			t.Fatalf("session %+v, want still failed", s)
		}
		if n := countOf(e.events(t, "dina"), "session.degraded"); n != 1 {
			t.Fatalf("%d degraded events, want 1", n)
		}
		// A success still makes it consistent.
		if s := e.reportLogin(t, lr.ClientToken, map[string]any{"ok": true}); s.Meeting != "logged_in" {
			t.Fatalf("success after degrade: %+v", s)
		}
	})
}

type sessionCommand struct {
	ID        string         `json:"id"`
	Type      string         `json:"type"`
	SessionID string         `json:"session_id"`
	Data      map[string]any `json:"data"`
}

func (e *env) sessionCommands(t *testing.T, token string) []sessionCommand {
	t.Helper()
	var out struct {
		Commands []sessionCommand `json:"commands"`
	}
	e.want(t, e.do(t, "GET", "/v1/client/commands", token, nil), 200).decode(t, &out)
	return out.Commands
}

// superseded checks that a device's command id was resolved by meetsync
// when the device started session newSession.
func (e *env) superseded(t *testing.T, user, device, id, newSession string) {
	t.Helper()
	cmds, err := e.Store.CommandList(context.Background(), e.AppID, user, device, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cmds {
		if c.ID == id {
			if c.AckedAt == nil || c.AckOK || !strings.HasPrefix(c.AckError, "superseded: ") || !strings.Contains(c.AckError, newSession) {
				t.Fatalf("old command %+v, want acknowledged by meetsync, not ok, superseded by %s", c, newSession)
			}
			return
		}
	}
	t.Fatalf("command %s of %s's %s not found", id, user, device)
}

// TestNewSessionSeesOnlyItsCommands: a device's new session does not get
// what an earlier session left pending for it (the logout of a forced
// logout, of a rollback): those commands are superseded when the device
// starts the new session, and its token sees only the new session's.
func TestNewSessionSeesOnlyItsCommands(t *testing.T) {
	t.Run("forced logout", func(t *testing.T) {
		e := setup(t)
		lr := e.login(t, "hank", "h1")
		e.reportLogin(t, lr.ClientToken, map[string]any{"ok": true})
		e.want(t, e.do(t, "POST", "/v1/users/hank/logout", e.Key, nil), 202)
		old := e.sessionCommands(t, lr.ClientToken)
		if len(old) != 1 || old[0].Type != "logout" {
			t.Fatalf("commands after logout: %+v", old)
		}
		e.advance(t, 31*time.Second) // no ack: the logout is forced
		if d := lastOf(t, e.events(t, "hank"), "session.logged_out"); d["forced"] != true {
			t.Fatalf("logged_out %v", d)
		}

		lr2 := e.login(t, "hank", "h1")
		if lr2.SessionID == lr.SessionID {
			t.Fatal("same session after the logout")
		}
		if cmds := e.sessionCommands(t, lr2.ClientToken); len(cmds) != 0 {
			t.Fatalf("the new session's token gets %+v, want nothing (the old session's logout is not its own)", cmds)
		}
		e.superseded(t, "hank", "h1", old[0].ID, lr2.SessionID)
		// The old token has nothing of its session left to fetch; its late
		// ack is harmless and keeps meetsync's resolution.
		e.want(t, e.do(t, "GET", "/v1/client/commands", lr.ClientToken, nil), 401)
		e.want(t, e.do(t, "POST", "/v1/client/commands/"+old[0].ID+"/ack", lr.ClientToken, map[string]any{"ok": true}), 204)
		e.superseded(t, "hank", "h1", old[0].ID, lr2.SessionID)
		if s := e.session(t, "hank"); s.ID != lr2.SessionID || s.Business != "logged_in" {
			t.Fatalf("session %+v", s)
		}

		// The new session's own logout comes, and its ack ends it.
		e.reportLogin(t, lr2.ClientToken, map[string]any{"ok": true})
		e.want(t, e.do(t, "POST", "/v1/users/hank/logout", e.Key, nil), 202)
		cmds := e.sessionCommands(t, lr2.ClientToken)
		if len(cmds) != 1 || cmds[0].Type != "logout" || cmds[0].SessionID != lr2.SessionID || cmds[0].Data["session_id"] != lr2.SessionID {
			t.Fatalf("the new session's commands after its logout: %+v", cmds)
		}
		e.want(t, e.do(t, "POST", "/v1/client/commands/"+cmds[0].ID+"/ack", lr2.ClientToken, map[string]any{"ok": true}), 204)
		if d := lastOf(t, e.events(t, "hank"), "session.logged_out"); d["forced"] != false || d["session_id"] != lr2.SessionID {
			t.Fatalf("logged_out %v", d)
		}
	})

	t.Run("rollback", func(t *testing.T) {
		e := setup(t)
		e.want(t, e.do(t, "PATCH", "/v1/app", e.Key, map[string]any{"login_deadline": "10s"}), 200)
		lr := e.login(t, "ivan", "i1")
		other := e.login(t, "ivan", "i2")
		e.advance(t, 11*time.Second)
		lastOf(t, e.events(t, "ivan"), "session.rolled_back")
		old := e.sessionCommands(t, lr.ClientToken)
		if len(old) != 1 || old[0].Type != "logout" {
			t.Fatalf("commands after rollback: %+v", old)
		}
		lr2 := e.login(t, "ivan", "i1")
		if cmds := e.sessionCommands(t, lr2.ClientToken); len(cmds) != 0 {
			t.Fatalf("the new session's token gets %+v, want nothing", cmds)
		}
		e.superseded(t, "ivan", "i1", old[0].ID, lr2.SessionID)
		// i2 is not in the new session: its rollback logout still waits
		// for it, fetched with its old token.
		if cmds := e.sessionCommands(t, other.ClientToken); len(cmds) != 1 || cmds[0].Type != "logout" || cmds[0].SessionID != lr.SessionID {
			t.Fatalf("i2's commands: %+v, want the rollback's logout", cmds)
		}
		// Once i2 joins the new session, that one is superseded too.
		lr3 := e.login(t, "ivan", "i2")
		if lr3.SessionID != lr2.SessionID {
			t.Fatalf("i2 joined %s, want %s", lr3.SessionID, lr2.SessionID)
		}
		if cmds := e.sessionCommands(t, lr3.ClientToken); len(cmds) != 0 {
			t.Fatalf("i2's new token gets %+v", cmds)
		}
	})

	// The rollback's logout is pushed after the rollback is stored: a
	// device that logs in again in between must not get it either.
	t.Run("rollback racing a new login", func(t *testing.T) {
		e := setup(t)
		e.want(t, e.do(t, "PATCH", "/v1/app", e.Key, map[string]any{"login_deadline": "10s"}), 200)
		lr := e.login(t, "jane", "j1")
		var fired atomic.Bool
		var newToken, newSession atomic.Value
		hook := func(cmds []*meetsync.Command) {
			if len(cmds) == 0 || cmds[0].Type != meetsync.CommandLogout || cmds[0].SessionID != lr.SessionID || !fired.CompareAndSwap(false, true) {
				return
			}
			req, _ := http.NewRequest("POST", e.URL+"/v1/users/jane/login", strings.NewReader(`{"device_id":"j1"}`))
			req.Header.Set("Authorization", "Bearer "+e.Key)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				return
			}
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body)
			var r relogin
			if res.StatusCode == 200 && json.Unmarshal(b, &r) == nil {
				newToken.Store(r.ClientToken)
				newSession.Store(r.SessionID)
			}
		}
		e.beforeCommands.Store(&hook)
		e.advance(t, 11*time.Second)
		e.beforeCommands.Store(nil)
		tok, _ := newToken.Load().(string)
		sid, _ := newSession.Load().(string)
		if !fired.Load() || tok == "" || sid == lr.SessionID {
			t.Fatalf("the login between the rollback and its logout command did not happen (token %q, session %q)", tok, sid)
		}
		if cmds := e.sessionCommands(t, tok); len(cmds) != 0 {
			t.Fatalf("the new session's token gets %+v, want nothing", cmds)
		}
		if s := e.session(t, "jane"); s.ID != sid || s.Business != "logged_in" || s.Meeting != "pending" {
			t.Fatalf("session %+v, want the new one", s)
		}
	})
}
