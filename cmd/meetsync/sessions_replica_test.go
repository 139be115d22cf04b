package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/internal/pgtest"
	"github.com/meetsync/meetsync/netease/neteasetest"
)

// sessionCaller calls the API of one replica with a key or a client token.
type sessionCaller struct {
	t   *testing.T
	ctx context.Context
}

// call sends body (JSON) and decodes the answer into out, failing unless
// the status is want.
func (sc sessionCaller) call(c *apiClient, method, path string, body any, want int, out any) {
	sc.t.Helper()
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			sc.t.Fatal(err)
		}
	}
	hdr := http.Header{}
	if strings.HasPrefix(path, "/v1/client/commands") && method == http.MethodGet {
		hdr.Set("Accept", "application/json")
	}
	status, res, err := c.do(sc.ctx, method, path, b, hdr)
	if err != nil {
		sc.t.Fatalf("%s %s on %s: %v", method, path, c.base, err)
	}
	if status != want {
		sc.t.Fatalf("%s %s on %s: %d %s, want %d", method, path, c.base, status, res, want)
	}
	if out != nil {
		if err := json.Unmarshal(res, out); err != nil {
			sc.t.Fatalf("%s %s: %v in %s", method, path, err, res)
		}
	}
}

// await polls cond until it holds or the test's deadline passes.
func (sc sessionCaller) await(what string, cond func() bool) {
	sc.t.Helper()
	for !cond() {
		if sc.ctx.Err() != nil {
			sc.t.Fatalf("%s: not before the deadline", what)
		}
		time.Sleep(20 * time.Millisecond) // polling, bounded by the test's context
	}
}

type sessionUser struct {
	Session struct {
		ID            string `json:"id"`
		Business      string `json:"business"`
		Meeting       string `json:"meeting"`
		RevokePending bool   `json:"revoke_pending"`
	} `json:"session"`
	Meeting struct {
		Status string `json:"status"`
	} `json:"meeting"`
}

type loginAnswer struct {
	SessionID   string `json:"session_id"`
	MeetingSide string `json:"meeting_side"`
	ClientToken string `json:"client_token"`
	Meeting     *struct {
		Provider  string `json:"provider"`
		UserUUID  string `json:"user_uuid"`
		UserToken string `json:"user_token"`
	} `json:"meeting"`
}

type commandList struct {
	Commands []struct {
		ID   string          `json:"id"`
		Type string          `json:"type"`
		Data json.RawMessage `json:"data"`
	} `json:"commands"`
}

type invitationView struct {
	ID      string `json:"id"`
	State   string `json:"state"`
	Version int64  `json:"version"`
}

// TestSessionsReplicas runs the seed flow through two `meetsync serve`
// replicas on one PostgreSQL database, with the app on the NetEase
// provider (the local fake NetEase server: a platform the replicas share,
// as the real one is; the built-in sim platform keeps its state per
// replica):
//
//   - alice logs in on replica A; her client reports its init, meeting
//     login and statuses on replica B; she is logged out on B, and her
//     device's acknowledgement of the logout command on B completes it;
//   - an invitation of bob made on A is received (acked), accepted and
//     joined through B, and the leader's background job marks it joined;
//   - the background jobs run on one replica only (the RunSingleton
//     leader): with the platform down, bob's logout cannot revoke his
//     meeting token, and only one replica's log shows the retries of the
//     session deadline; the platform back, that replica heals it;
//   - when the leader stops, the other replica takes the jobs over: carol's
//     login is rolled back at its deadline.
//
// Then every user's session and event log are as the flow made them.
func TestSessionsReplicas(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	sc := sessionCaller{t, ctx}
	db := pgtest.NewDatabase(t)
	fake := neteasetest.NewServer("ne-app-key", "ne-app-secret")
	defer fake.Close()
	dir := t.TempDir()
	// Replicas share one secret key (docs/scaling.md): each decrypts what
	// the other sealed (meeting tokens, the NetEase app secret).
	keyFile := sharedSecretKey(t, dir)
	a := startServer(t, filepath.Join(dir, "a"), "--database-url", db, "--secret-key-file", keyFile)
	b := startServer(t, filepath.Join(dir, "b"), "--database-url", db, "--secret-key-file", keyFile)
	key := readKey(t, a.Data)
	ca, cb := newClient(t, a.URL, key), newClient(t, b.URL, key)
	for _, s := range []*server{a, b} {
		if log := s.stderr.String(); strings.Contains(log, "keeps no sessions") {
			t.Fatalf("a replica runs without sessions:\n%s", log)
		}
	}

	// The app on the shared platform; a logout's reconciliation check an
	// hour later (after this test).
	sc.call(ca, "PATCH", "/v1/app", map[string]any{"provider": map[string]any{"kind": "netease", "app_key": "ne-app-key",
		"app_secret": "ne-app-secret", "base_url": fake.URL}, "reconcile_grace": "1h"}, 200, nil)
	user := func(c *apiClient, id string) sessionUser {
		t.Helper()
		var u sessionUser
		sc.call(c, "GET", "/v1/users/"+id, nil, 200, &u)
		return u
	}
	login := func(c *apiClient, id, device string) (loginAnswer, *apiClient) {
		t.Helper()
		var lr loginAnswer
		sc.call(c, "POST", "/v1/users/"+id+"/login", map[string]any{"device_id": device}, 200, &lr)
		if lr.Meeting == nil || lr.Meeting.Provider != "netease" || !fake.ValidToken(lr.Meeting.UserUUID, lr.Meeting.UserToken) {
			t.Fatalf("login of %s: %+v (meeting %+v)", id, lr, lr.Meeting)
		}
		return lr, newClient(t, cb.base, lr.ClientToken) // the device talks to B
	}
	commands := func(c *apiClient, typ string) []string {
		t.Helper()
		var cl commandList
		sc.call(c, "GET", "/v1/client/commands", nil, 200, &cl)
		var ids []string
		for _, cmd := range cl.Commands {
			if cmd.Type == typ {
				ids = append(ids, cmd.ID)
			}
		}
		return ids
	}
	ack := func(c *apiClient, typ string) {
		t.Helper()
		ids := commands(c, typ)
		if len(ids) != 1 {
			t.Fatalf("the device has %d pending %s commands, want 1", len(ids), typ)
		}
		sc.call(c, "POST", "/v1/client/commands/"+ids[0]+"/ack", map[string]any{"ok": true}, 204, nil)
	}

	// alice: login on A, her client on B.
	alr, alice := login(ca, "alice", "laptop")
	sc.call(alice, "POST", "/v1/client/init", map[string]any{"business": map[string]any{"ok": true}, "meeting": map[string]any{"ok": true}}, 200, nil)
	sc.call(alice, "POST", "/v1/client/login", map[string]any{"ok": true}, 200, nil)
	for i, st := range []string{"connecting", "in_meeting", "idle"} {
		sc.call(alice, "POST", "/v1/client/events", map[string]any{"type": "meeting.status_changed", "client_seq": i + 1,
			"data": map[string]any{"status": st, "meeting_num": "123456"}}, 200, nil)
	}
	if u := user(ca, "alice"); u.Session.ID != alr.SessionID || u.Session.Business != "logged_in" || u.Session.Meeting != "logged_in" ||
		u.Meeting.Status != "idle" {
		t.Fatalf("alice on A after her client's reports on B: %+v", u)
	}

	// bob: invited on A by alice; his device on B receives, accepts and
	// joins; the leader sees him in the invitation's meeting.
	_, bob := login(ca, "bob", "phone")
	sc.call(bob, "POST", "/v1/client/login", map[string]any{"ok": true}, 200, nil)
	var invs struct{ Invitations []invitationView }
	sc.call(ca, "POST", "/v1/invitations", map[string]any{"meeting_num": "123456", "inviter": "alice", "invitees": []string{"bob"}}, 201, &invs)
	if len(invs.Invitations) != 1 || invs.Invitations[0].State != "waiting_call" {
		t.Fatalf("invitation: %+v", invs)
	}
	invID := invs.Invitations[0].ID
	ack(bob, "invitation")
	var inv invitationView
	sc.call(bob, "POST", "/v1/client/invitations/"+invID+"/accept", nil, 200, &inv)
	if inv.State != "accepted" || inv.Version != 3 {
		t.Errorf("accepted on B: %+v, want accepted at version 3 (created, calling, accepted)", inv)
	}
	sc.call(bob, "POST", "/v1/client/events", map[string]any{"type": "meeting.status_changed", "client_seq": 1,
		"data": map[string]any{"status": "in_meeting", "meeting_num": "123456"}}, 200, nil)
	sc.await("the invitation joined", func() bool {
		sc.call(ca, "GET", "/v1/invitations/"+invID, nil, 200, &inv)
		return inv.State == "joined"
	})
	sc.call(bob, "POST", "/v1/client/events", map[string]any{"type": "meeting.status_changed", "client_seq": 2,
		"data": map[string]any{"status": "idle", "meeting_num": "123456"}}, 200, nil)

	// alice's logout on B, completed by her device's ack on B.
	var lo struct {
		State           string `json:"state"`
		PlatformRevoked bool   `json:"platform_revoked"`
	}
	sc.call(cb, "POST", "/v1/users/alice/logout", nil, 202, &lo)
	if lo.State != "logging_out" || !lo.PlatformRevoked || fake.ValidToken(alr.Meeting.UserUUID, alr.Meeting.UserToken) {
		t.Errorf("logout on B: %+v; the old meeting token valid: %v", lo, fake.ValidToken(alr.Meeting.UserUUID, alr.Meeting.UserToken))
	}
	ack(alice, "logout")
	if u := user(ca, "alice"); u.Session.Business != "logged_out" || u.Session.Meeting != "logged_out" || u.Session.RevokePending {
		t.Errorf("alice on A after the ack on B: %+v", u.Session)
	}
	sc.call(alice, "GET", "/v1/client/commands", nil, 401, nil) // her client token went with the session

	// The platform down: bob's logout (on A) cannot revoke his token; once
	// his device acked, the session's deadline retries the revocation on
	// the leader only.
	fake.SetDown(true)
	sc.call(ca, "POST", "/v1/users/bob/logout", nil, 202, &lo)
	if lo.PlatformRevoked {
		t.Errorf("bob's logout with the platform down: %+v", lo)
	}
	ack(bob, "logout")
	const retrying = "session action failed; will retry"
	var leader, other *server
	// Twice: the other replica's loop ticks meanwhile (every 500 ms), and
	// would show the same if it ran the deadlines too.
	sc.await("the leader retrying the revocation", func() bool {
		for _, s := range []*server{a, b} {
			if strings.Count(s.stderr.String(), retrying) >= 2 {
				leader = s
			}
		}
		return leader != nil
	})
	other = a
	if leader == a {
		other = b
	}
	fake.SetDown(false)
	sc.await("the revocation healed", func() bool {
		u := user(cb, "bob")
		return u.Session.Business == "logged_out" && u.Session.Meeting == "logged_out" && !u.Session.RevokePending
	})
	if strings.Contains(other.stderr.String(), retrying) {
		t.Errorf("both replicas ran the session deadlines; the non-leader's log:\n%s", other.stderr.String())
	}

	// The leader stops: the other replica takes the jobs over.
	if code := leader.term(t); code != 0 {
		t.Errorf("the leader's SIGTERM: exit %d; log:\n%s", code, leader.stderr.String())
	}
	co := newClient(t, other.URL, key)
	sc.call(co, "PATCH", "/v1/app", map[string]any{"login_deadline": "1s"}, 200, nil)
	login(co, "carol", "tablet")
	sc.await("carol's login rolled back", func() bool {
		return user(co, "carol").Session.Business == "logged_out"
	})

	// The event logs, read on the replica left.
	types := func(id string) []string {
		t.Helper()
		var page struct {
			Events []struct {
				Type string          `json:"type"`
				Data json.RawMessage `json:"data"`
			} `json:"events"`
		}
		sc.call(co, "GET", "/v1/events?limit=1000&user_id="+id, nil, 200, &page)
		var out []string
		for _, ev := range page.Events {
			out = append(out, ev.Type)
		}
		return out
	}
	for _, c := range []struct {
		user string
		want []string
	}{
		{"alice", []string{"session.login_started", "client.initialized", "session.logged_in", "meeting.status_changed", "meeting.status_changed",
			"meeting.status_changed", "session.logout_started", "session.logged_out"}},
		{"bob", []string{"session.login_started", "session.logged_in", "invitation.created", "invitation.calling", "invitation.accepted",
			"meeting.status_changed", "invitation.joined", "meeting.status_changed", "session.logout_started", "session.logged_out", "session.diverged"}},
		{"carol", []string{"session.login_started", "session.rolled_back"}},
	} {
		if got := types(c.user); !slices.Equal(got, c.want) {
			t.Errorf("%s's events:\n got %v\nwant %v", c.user, got, c.want)
		}
	}
	if n := fake.Requests("add-user"); n != 3 {
		t.Errorf("the platform provisioned %d accounts, want 3 (each user once, whichever replica)", n)
	}
	if t.Failed() {
		t.Logf("replica logs:\n--- %s\n%s\n--- %s\n%s", a.Data, a.stderr.String(), b.Data, b.stderr.String())
	}
}

// sharedSecretKey writes a secret key file in dir for replicas to share
// (docs/scaling.md: replicas must open what the others sealed).
func sharedSecretKey(t *testing.T, dir string) string {
	t.Helper()
	keyFile := filepath.Join(dir, "secret.key")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(meetsync.NewSecretKey())+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return keyFile
}
