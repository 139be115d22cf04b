package session_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/meetsync/meetsync/netease/neteasetest"
)

// setupNetEase is setup with the app on the NetEase provider, against the
// local fake NetEase Meeting server, whose callbacks go to meetsync.
func setupNetEase(t *testing.T) (*env, *neteasetest.Server) {
	t.Helper()
	e := setup(t)
	fake := neteasetest.NewServer("ne-app-key", "ne-app-secret")
	t.Cleanup(fake.Close)
	e.want(t, e.do(t, "PATCH", "/v1/app", e.Key, map[string]any{"provider": map[string]any{
		"kind": "netease", "app_key": "ne-app-key", "app_secret": "ne-app-secret", "base_url": fake.URL}}), 200)
	fake.SetCallbackURL(e.URL + "/v1/providers/netease/callback/" + e.AppID)
	return e, fake
}

// TestNetEaseSeedFlow: login provisions the account with add-user and
// returns its token; logout revokes it with refresh-user-token.
func TestNetEaseSeedFlow(t *testing.T) {
	e, fake := setupNetEase(t)
	if set, err := e.Store.AppSettingsGet(context.Background(), e.AppID); err != nil || strings.Contains(set.Provider.AppSecret, "ne-app-secret") {
		t.Fatalf("the NetEase app secret is stored as %q (%v): want it encrypted", set.Provider.AppSecret, err)
	}
	r := e.do(t, "GET", "/v1/app", e.Key, nil)
	if strings.Contains(string(r.Body), "ne-app-secret") || !strings.Contains(string(r.Body), `"app_secret_set":true`) {
		t.Fatalf("GET /v1/app shows the secret or hides that it is set: %s", r)
	}
	lr := e.login(t, "alice", "laptop")
	if lr.Meeting == nil || lr.Meeting.Provider != "netease" || lr.Meeting.AppKey != "ne-app-key" {
		t.Fatalf("login: %+v", lr.Meeting)
	}
	if !fake.ValidToken(lr.Meeting.UserUUID, lr.Meeting.UserToken) {
		t.Fatal("the token meetsync returned is not valid at the platform")
	}
	if n := fake.Requests("add-user"); n != 1 {
		t.Fatalf("add-user called %d times", n)
	}
	e.want(t, e.do(t, "POST", "/v1/client/login", lr.ClientToken, map[string]any{"ok": true}), 200)
	// A second device of the same user reuses the account.
	lr2 := e.login(t, "alice", "phone")
	if lr2.Meeting.UserUUID != lr.Meeting.UserUUID || fake.Requests("add-user") != 1 {
		t.Fatalf("second device provisioned again: %+v", lr2.Meeting)
	}
	e.want(t, e.do(t, "POST", "/v1/users/alice/logout", e.Key, nil), 202)
	if fake.ValidToken(lr.Meeting.UserUUID, lr.Meeting.UserToken) {
		t.Fatal("the meeting token is still valid after logout")
	}
	for _, tok := range []string{lr.ClientToken, lr2.ClientToken} {
		var cmds struct {
			Commands []struct {
				ID   string `json:"id"`
				Type string `json:"type"`
			} `json:"commands"`
		}
		e.want(t, e.do(t, "GET", "/v1/client/commands", tok, nil), 200).decode(t, &cmds)
		if len(cmds.Commands) != 1 || cmds.Commands[0].Type != "logout" {
			t.Fatalf("commands: %+v", cmds)
		}
		e.want(t, e.do(t, "POST", "/v1/client/commands/"+cmds.Commands[0].ID+"/ack", tok, map[string]any{"ok": true}), 204)
	}
	if u := e.user(t, "alice"); u.Session.Business != "logged_out" || u.Session.Meeting != "logged_out" {
		t.Fatalf("after logout: %+v", u.Session)
	}
	if d := lastOf(t, e.events(t, "alice"), "session.logged_out"); d["forced"] != false || d["platform_revoked"] != true {
		t.Fatalf("logged_out: %v", d)
	}
}

// TestNetEasePlatformDown: NetEase unreachable at login (after the
// adapter's retries) → no credentials → the rollback policy at the
// deadline; unreachable at logout → forced, reported, revoked later.
func TestNetEasePlatformDown(t *testing.T) {
	e, fake := setupNetEase(t)
	e.want(t, e.do(t, "PATCH", "/v1/app", e.Key, map[string]any{"login_deadline": "5s"}), 200)
	fake.SetDown(true)
	lr := e.login(t, "bob", "d1")
	if lr.Meeting != nil {
		t.Fatalf("credentials while NetEase is down: %+v", lr.Meeting)
	}
	e.advance(t, 6*time.Second)
	if u := e.user(t, "bob"); u.Session.Business != "logged_out" {
		t.Fatalf("not rolled back: %+v", u.Session)
	}
	lastOf(t, e.events(t, "bob"), "session.rolled_back")

	fake.SetDown(false)
	lr = e.login(t, "carol", "d1")
	if lr.Meeting == nil {
		t.Fatal("no credentials with NetEase up")
	}
	e.want(t, e.do(t, "POST", "/v1/client/login", lr.ClientToken, map[string]any{"ok": true}), 200)
	fake.SetDown(true)
	e.want(t, e.do(t, "POST", "/v1/users/carol/logout", e.Key, nil), 202)
	e.advance(t, 31*time.Second)
	if d := lastOf(t, e.events(t, "carol"), "session.logged_out"); d["forced"] != true || d["platform_revoked"] != false {
		t.Fatalf("logged_out: %v", d)
	}
	if !fake.ValidToken(lr.Meeting.UserUUID, lr.Meeting.UserToken) {
		t.Fatal("token revoked while NetEase was down?")
	}
	fake.SetDown(false)
	e.advance(t, 10*time.Minute)
	if fake.ValidToken(lr.Meeting.UserUUID, lr.Meeting.UserToken) {
		t.Fatal("the token was not revoked after NetEase recovered")
	}
	if d := lastOf(t, e.events(t, "carol"), "session.diverged"); d["healed"] != true {
		t.Fatalf("diverged: %v", d)
	}
}

// TestNetEaseCallbacks: member entry/leave callbacks become events of the
// business user and drive the reconciler; bad or replayed callbacks are
// refused with nothing stored.
func TestNetEaseCallbacks(t *testing.T) {
	e, fake := setupNetEase(t)
	e.want(t, e.do(t, "PATCH", "/v1/app", e.Key, map[string]any{"reconcile_grace": "10s"}), 200)
	lr := e.login(t, "dave", "d1")
	uuid := lr.Meeting.UserUUID
	num := fake.AddMeeting(uuid, "weekly")
	url := e.URL + "/v1/providers/netease/callback/" + e.AppID
	head := func() int64 {
		n, err := e.Store.EventFeedHead(context.Background(), e.AppID)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	res, err := fake.SendProbe(url)
	if err != nil || res.Status != http.StatusOK {
		t.Fatalf("probe: %v %+v", err, res)
	}
	before := head()
	for name, opts := range map[string][]neteasetest.CallbackOption{
		"wrong checksum": {neteasetest.WithBadCheckSum()},
		"bad md5":        {neteasetest.WithBadMD5()},
		"stale curtime":  {neteasetest.WithCurTime(time.Now().Add(-time.Hour))},
		"other app key":  {neteasetest.WithAppKey("someone-else")},
	} {
		res, err := fake.SendCallback(url, "MEETING_MEMBER_ENTRY", map[string]any{"meetingNum": num, "userUuid": uuid}, opts...)
		if err != nil || res.Status != http.StatusUnauthorized || !strings.Contains(string(res.Body), "unauthorized") {
			t.Errorf("%s: %v %d %s", name, err, res.Status, res.Body)
		}
	}
	if head() != before {
		t.Fatal("rejected callbacks stored events")
	}
	e.want(t, e.do(t, "POST", "/v1/client/events", lr.ClientToken, map[string]any{"type": "meeting.status_changed", "client_seq": 1,
		"data": map[string]any{"status": "MEETING_STATUS_INMEETING", "meeting_num": num}}), 200)
	if err := fake.MemberEnter(num, uuid); err != nil {
		t.Fatal(err)
	}
	good, err := fake.SendCallback(url, "MEETING_MEMBER_ENTRY", map[string]any{"meetingNum": num, "userUuid": uuid})
	if err != nil || good.Status != 200 {
		t.Fatalf("good callback: %v %+v", err, good)
	}
	at := head()
	replay, err := fake.Resend(url, good)
	// A repeat (the platform missed the answer) is answered as the first
	// time, so the platform stops sending it, and stores nothing.
	if err != nil || replay.Status != http.StatusOK || !strings.Contains(string(replay.Body), `"duplicate":true`) ||
		!strings.Contains(string(replay.Body), `"events":1`) {
		t.Fatalf("replay: %v %d %s", err, replay.Status, replay.Body)
	}
	if !strings.Contains(string(good.Body), `"duplicate":false`) {
		t.Fatalf("first callback answered %s", good.Body)
	}
	if head() != at {
		t.Fatal("a replayed callback stored events")
	}
	// The member leaves on the platform (the client crashed, it never says IDLE).
	if err := fake.MemberLeave(num, uuid); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		for _, ev := range e.events(t, "dave") {
			if ev.Type == "meeting.member_left" {
				return true
			}
		}
		return false
	})
	e.advance(t, 11*time.Second)
	if u := e.user(t, "dave"); u.Meeting.Status != "idle" || u.Meeting.Reason != "reconciled" {
		t.Fatalf("not reconciled: %+v", u.Meeting)
	}
}

// TestNetEaseInviteCallbacks: MEETING_MEMBER_INVITE / _CANCEL from NetEase
// drive the invitation state machine.
func TestNetEaseInviteCallbacks(t *testing.T) {
	e, fake := setupNetEase(t)
	host := e.login(t, "host", "h1")
	guest := e.login(t, "guest", "g1")
	num := fake.AddMeeting(host.Meeting.UserUUID, "review")
	if err := fake.Invite(num, host.Meeting.UserUUID, guest.Meeting.UserUUID); err != nil {
		t.Fatal(err)
	}
	var list struct {
		Invitations []invitationView `json:"invitations"`
	}
	e.want(t, e.do(t, "GET", "/v1/invitations?user_id=guest", e.Key, nil), 200).decode(t, &list)
	if len(list.Invitations) != 1 || list.Invitations[0].Source != "platform" || list.Invitations[0].Inviter != "host" {
		t.Fatalf("after MEETING_MEMBER_INVITE: %+v", list)
	}
	id := list.Invitations[0].ID
	if err := fake.CancelInvite(num, host.Meeting.UserUUID, guest.Meeting.UserUUID); err != nil {
		t.Fatal(err)
	}
	if v := e.invitation(t, id); v.State != "canceled" {
		t.Fatalf("after MEETING_MEMBER_INVITE_CANCEL: %+v", v)
	}
}
