package session_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
)

// post is e.do for a hook, which runs on another goroutine than the test
// (no t.Fatal there): the status and body, or status 0 on a failure.
func (e *env) post(path, token string, body any) (int, []byte) {
	b, _ := json.Marshal(body)
	req, err := http.NewRequest("POST", e.URL+path, bytes.NewReader(b))
	if err != nil {
		return 0, nil
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	return res.StatusCode, out
}

// onFirstLogoutPush runs fn (once) just before the logout commands of
// session sid are first stored: between the logout's read of the session
// and its change.
func (e *env) onFirstLogoutPush(sid string, fn func()) *atomic.Bool {
	var fired atomic.Bool
	hook := func(cmds []*meetsync.Command) {
		if len(cmds) == 0 || cmds[0].Type != meetsync.CommandLogout || cmds[0].SessionID != sid || !fired.CompareAndSwap(false, true) {
			return
		}
		fn()
	}
	e.beforeCommands.Store(&hook)
	return &fired
}

// TestLogoutRace: a logout pushes its commands for the session it read
// and changes the session only at that version. A change in between is
// read again: a device that logged in meanwhile is told to log out too
// (and waited for). A session that ended meanwhile, replaced by a new
// login, makes the logout 409 and leaves the new session alone.
func TestLogoutRace(t *testing.T) {
	t.Run("a device joins the session", func(t *testing.T) {
		e := setup(t)
		lr := e.login(t, "lara", "l1")
		e.reportLogin(t, lr.ClientToken, map[string]any{"ok": true})
		var l2 atomic.Value
		fired := e.onFirstLogoutPush(lr.SessionID, func() {
			if code, b := e.post("/v1/users/lara/login", e.Key, map[string]any{"device_id": "l2"}); code == 200 {
				var r relogin
				if json.Unmarshal(b, &r) == nil {
					l2.Store(r)
				}
			}
		})
		var lo struct {
			SessionID string `json:"session_id"`
			State     string `json:"state"`
		}
		e.want(t, e.do(t, "POST", "/v1/users/lara/logout", e.Key, nil), 202).decode(t, &lo)
		e.beforeCommands.Store(nil)
		second, _ := l2.Load().(relogin)
		if !fired.Load() || second.SessionID != lr.SessionID {
			t.Fatalf("l2's login during the logout did not happen in the session (%+v)", second)
		}
		if lo.SessionID != lr.SessionID || lo.State != "logging_out" {
			t.Fatalf("logout %+v", lo)
		}
		for _, tok := range []string{lr.ClientToken, second.ClientToken} {
			cmds := e.sessionCommands(t, tok)
			if len(cmds) != 1 || cmds[0].Type != "logout" || cmds[0].SessionID != lr.SessionID {
				t.Fatalf("commands after the logout: %+v, want the session's logout", cmds)
			}
			e.want(t, e.do(t, "POST", "/v1/client/commands/"+cmds[0].ID+"/ack", tok, map[string]any{"ok": true}), 204)
		}
		evs := e.events(t, "lara")
		if d := lastOf(t, evs, "session.logout_started"); !slices.Equal(anyStrings(d["devices"]), []string{"l1", "l2"}) {
			t.Fatalf("logout_started %v, want devices l1, l2", d)
		}
		if d := lastOf(t, evs, "session.logged_out"); d["forced"] != false || !slices.Equal(anyStrings(d["devices_confirmed"]), []string{"l1", "l2"}) {
			t.Fatalf("logged_out %v, want both devices confirmed", d)
		}
		if n := countOf(evs, "session.logout_started"); n != 1 {
			t.Fatalf("%d logout_started events: %v", n, types(evs))
		}
	})

	t.Run("the session ends and another begins", func(t *testing.T) {
		e := setup(t)
		lr := e.login(t, "mona", "m1")
		e.reportLogin(t, lr.ClientToken, map[string]any{"ok": true})
		var next atomic.Value
		var steps atomic.Value
		fired := e.onFirstLogoutPush(lr.SessionID, func() {
			// Another logout ends the session (its device confirms), and
			// the device logs in again: a new session.
			code, _ := e.post("/v1/users/mona/logout", e.Key, nil)
			ack, _ := e.post("/v1/client/commands/"+commandIDOf(e, "mona", "m1", lr.SessionID)+"/ack", lr.ClientToken, map[string]any{"ok": true})
			login, b := e.post("/v1/users/mona/login", e.Key, map[string]any{"device_id": "m1"})
			steps.Store([3]int{code, ack, login})
			var r relogin
			if login == 200 && json.Unmarshal(b, &r) == nil {
				next.Store(r)
			}
		})
		r := e.do(t, "POST", "/v1/users/mona/logout", e.Key, nil)
		e.beforeCommands.Store(nil)
		got, _ := steps.Load().([3]int)
		second, _ := next.Load().(relogin)
		if !fired.Load() || got != [3]int{202, 204, 200} || second.SessionID == "" || second.SessionID == lr.SessionID {
			t.Fatalf("the other logout and the new login did not happen during the logout: statuses %v, new session %+v", got, second)
		}
		var eb struct {
			Error struct{ Code, Message string }
		}
		e.want(t, r, 409).decode(t, &eb)
		if eb.Error.Code != "conflict" || !strings.Contains(eb.Error.Message, lr.SessionID) || !strings.Contains(eb.Error.Message, second.SessionID) {
			t.Fatalf("the logout's answer %s, want a conflict naming both sessions", r)
		}
		// The new session is as its login left it, and its device has no
		// command.
		if s := e.session(t, "mona"); s.ID != second.SessionID || s.Business != "logged_in" || s.Meeting != "pending" {
			t.Fatalf("session %+v, want the new one, untouched", s)
		}
		if cmds := e.sessionCommands(t, second.ClientToken); len(cmds) != 0 {
			t.Fatalf("the new session's device got %+v", cmds)
		}
		evs := e.events(t, "mona")
		if n := countOf(evs, "session.logout_started"); n != 1 {
			t.Fatalf("%d logout_started events, want the other logout's only: %v", n, types(evs))
		}
		// A logout now ends the new session.
		e.want(t, e.do(t, "POST", "/v1/users/mona/logout", e.Key, nil), 202)
		if cmds := e.sessionCommands(t, second.ClientToken); len(cmds) != 1 || cmds[0].SessionID != second.SessionID {
			t.Fatalf("the new session's device after its logout: %+v", cmds)
		}
	})
}

// commandIDOf is the id of the logout command of a session's device, as
// the store has it ("" if none).
func commandIDOf(e *env, user, device, sid string) string {
	cmds, err := e.Store.CommandsForSession(context.Background(), e.AppID, user, sid)
	if err != nil {
		return ""
	}
	for _, c := range cmds {
		if c.DeviceID == device && c.Type == meetsync.CommandLogout {
			return c.ID
		}
	}
	return ""
}

func anyStrings(v any) []string {
	var out []string
	xs, _ := v.([]any)
	for _, x := range xs {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

// TestRollbackLogoutRace: a rollback's logout commands are for the
// session rolled back, also when the device logs in again between the
// rollback and the push: its new session's token does not get them
// (they are superseded), and the new session stays as its login left it.
func TestRollbackLogoutRace(t *testing.T) {
	e := setup(t)
	e.want(t, e.do(t, "PATCH", "/v1/app", e.Key, map[string]any{"login_deadline": "10s"}), 200)
	lr := e.login(t, "nora", "n1")
	var fired atomic.Bool
	var next atomic.Value
	hook := func(req *meetsync.AppendRequest) {
		if req.Err != nil || len(req.Events) == 0 || req.Events[0].Type != meetsync.TypeSessionRolledBack || !fired.CompareAndSwap(false, true) {
			return
		}
		if code, b := e.post("/v1/users/nora/login", e.Key, map[string]any{"device_id": "n1"}); code == 200 {
			var r relogin
			if json.Unmarshal(b, &r) == nil {
				next.Store(r)
			}
		}
	}
	e.afterAppend.Store(&hook)
	e.advance(t, 11*time.Second)
	e.afterAppend.Store(nil)
	second, _ := next.Load().(relogin)
	if !fired.Load() || second.SessionID == "" || second.SessionID == lr.SessionID {
		t.Fatalf("the login between the rollback and its logout command did not happen (%+v)", second)
	}
	if cmds := e.sessionCommands(t, second.ClientToken); len(cmds) != 0 {
		t.Fatalf("the new session's token gets %+v, want nothing", cmds)
	}
	cmds, err := e.Store.CommandsForSession(context.Background(), e.AppID, "nora", lr.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	if len(cmds) != 1 || cmds[0].Type != meetsync.CommandLogout || cmds[0].DeviceID != "n1" {
		t.Fatalf("the rolled back session's commands: %+v, want n1's logout", cmds)
	}
	e.superseded(t, "nora", "n1", cmds[0].ID, second.SessionID)
	if s := e.session(t, "nora"); s.ID != second.SessionID || s.Business != "logged_in" || s.Meeting != "pending" {
		t.Fatalf("session %+v, want the new one", s)
	}
}
