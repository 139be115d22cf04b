package session_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
)

type invitationView struct {
	ID         string `json:"id"`
	State      string `json:"state"`
	Invitee    string `json:"invitee"`
	Inviter    string `json:"inviter"`
	MeetingNum string `json:"meeting_num"`
	Source     string `json:"source"`
}

func (e *env) invite(t *testing.T, body map[string]any) []invitationView {
	t.Helper()
	var out struct {
		Invitations []invitationView `json:"invitations"`
	}
	e.want(t, e.do(t, "POST", "/v1/invitations", e.Key, body), 201).decode(t, &out)
	return out.Invitations
}

// platformInvite has the sim platform invite invitee (logged in as
// invited) to the meeting on host's behalf, and waits for the invitation
// meetsync makes of its callback: the invitee's platform invitation to
// that meeting still waiting_call.
func (e *env) platformInvite(t *testing.T, meetingNum string, host, invited loginResult, invitee string) invitationView {
	t.Helper()
	if err := e.Sim.Invite(context.Background(), e.AppID, meetingNum, host.Meeting.UserUUID, invited.Meeting.UserUUID); err != nil {
		t.Fatal(err)
	}
	var found invitationView
	waitFor(t, func() bool {
		var list struct {
			Invitations []invitationView `json:"invitations"`
		}
		e.want(t, e.do(t, "GET", "/v1/invitations?state=waiting_call&user_id="+url.QueryEscape(invitee), e.Key, nil), 200).decode(t, &list)
		for _, v := range list.Invitations {
			if v.Source == "platform" && v.MeetingNum == meetingNum && v.Invitee == invitee {
				found = v
				return true
			}
		}
		return false
	})
	return found
}

func (e *env) invitation(t *testing.T, id string) invitationView {
	t.Helper()
	var v invitationView
	e.want(t, e.do(t, "GET", "/v1/invitations/"+id, e.Key, nil), 200).decode(t, &v)
	return v
}

type commandView struct {
	ID   string         `json:"id"`
	Type string         `json:"type"`
	Data map[string]any `json:"data"`
}

func (e *env) commands(t *testing.T, token string) []commandView {
	t.Helper()
	var out struct {
		Commands []commandView `json:"commands"`
	}
	e.want(t, e.do(t, "GET", "/v1/client/commands", token, nil), 200).decode(t, &out)
	return out.Commands
}

// TestInvitationAcceptedAndJoined: created → the invitee's device gets the
// invitation command and acknowledges it (calling) → accepted with the
// invitee's client token → the invitee joins the meeting → joined.
func TestInvitationAcceptedAndJoined(t *testing.T) {
	e := setup(t)
	e.login(t, "host", "h1")
	guest := e.login(t, "guest", "g1")
	invs := e.invite(t, map[string]any{"meeting_num": "555", "inviter": "host", "invitees": []string{"guest"}, "subject": "1:1",
		"password": "s3cret", "expires_in": "5m"})
	if len(invs) != 1 || invs[0].State != "waiting_call" || invs[0].Invitee != "guest" {
		t.Fatalf("created: %+v", invs)
	}
	id := invs[0].ID
	cmds := e.commands(t, guest.ClientToken)
	if len(cmds) != 1 || cmds[0].Type != "invitation" || cmds[0].Data["invitation_id"] != id || cmds[0].Data["password"] != "s3cret" {
		t.Fatalf("invitee commands: %+v", cmds)
	}
	e.want(t, e.do(t, "POST", "/v1/client/commands/"+cmds[0].ID+"/ack", guest.ClientToken, map[string]any{"ok": true}), 204)
	if v := e.invitation(t, id); v.State != "calling" {
		t.Fatalf("after the device got it: %+v", v)
	}
	e.want(t, e.do(t, "POST", "/v1/client/invitations/"+id+"/accept", guest.ClientToken, nil), 200)
	if v := e.invitation(t, id); v.State != "accepted" {
		t.Fatalf("after accept: %+v", v)
	}
	e.want(t, e.do(t, "POST", "/v1/client/events", guest.ClientToken, map[string]any{"type": "meeting.status_changed", "client_seq": 1,
		"data": map[string]any{"status": "in_meeting", "meeting_num": "555"}}), 200)
	e.advance(t, 0)
	if v := e.invitation(t, id); v.State != "joined" {
		t.Fatalf("after joining: %+v", v)
	}
	var got []string
	for _, ev := range e.events(t, "guest") {
		if strings.HasPrefix(ev.Type, "invitation.") {
			got = append(got, ev.Type)
		}
	}
	if want := "invitation.created,invitation.calling,invitation.accepted,invitation.joined"; strings.Join(got, ",") != want {
		t.Fatalf("invitation events %v, want %s", got, want)
	}
	// The webhook data never carries the password.
	for _, ev := range e.events(t, "guest") {
		if strings.Contains(string(ev.Data), "s3cret") {
			t.Fatalf("%s carries the meeting password: %s", ev.Type, ev.Data)
		}
	}
	// A joined invitation cannot change any more.
	e.want(t, e.do(t, "POST", "/v1/invitations/"+id+"/cancel", e.Key, nil), 409)
}

// TestInvitationRejectedExpiredCanceled covers the other ends.
func TestInvitationRejectedExpiredCanceled(t *testing.T) {
	e := setup(t)
	host := e.login(t, "host", "h1")
	a := e.login(t, "a", "d1")
	e.login(t, "b", "d1")
	c := e.login(t, "c", "d1")
	// a completes its meeting login, so its session outlives the login deadline below.
	e.want(t, e.do(t, "POST", "/v1/client/login", a.ClientToken, map[string]any{"ok": true}), 200)
	invs := e.invite(t, map[string]any{"meeting_num": "9", "inviter": "host", "invitees": []string{"a", "b", "c"}, "expires_in": "1m"})
	byUser := map[string]string{}
	for _, v := range invs {
		byUser[v.Invitee] = v.ID
	}
	// Someone else's client token cannot answer a's invitation; the inviter cannot accept it.
	e.want(t, e.do(t, "POST", "/v1/client/invitations/"+byUser["a"]+"/accept", c.ClientToken, nil), 403)
	e.want(t, e.do(t, "POST", "/v1/client/invitations/"+byUser["a"]+"/accept", host.ClientToken, nil), 403)
	// a rejects.
	e.want(t, e.do(t, "POST", "/v1/client/invitations/"+byUser["a"]+"/reject", a.ClientToken, map[string]any{"reason": "busy"}), 200)
	// The inviter cancels c's.
	e.want(t, e.do(t, "POST", "/v1/client/invitations/"+byUser["c"]+"/cancel", host.ClientToken, nil), 200)
	var canceled bool
	for _, cmd := range e.commands(t, c.ClientToken) {
		canceled = canceled || cmd.Type == "invitation_canceled"
	}
	if !canceled {
		t.Fatal("the invitee's device was not told of the cancellation")
	}
	// b's expires.
	e.advance(t, 2*time.Minute)
	states := map[string]string{}
	for u, id := range byUser {
		states[u] = e.invitation(t, id).State
	}
	if states["a"] != "rejected" || states["b"] != "expired" || states["c"] != "canceled" {
		t.Fatalf("states: %v", states)
	}
	r := e.do(t, "POST", "/v1/invitations/"+byUser["b"]+"/accept", e.Key, nil)
	if r.Status != 409 || !strings.Contains(string(r.Body), "expired") {
		t.Fatalf("accepting an expired invitation: %s", r)
	}
	lastOf(t, e.events(t, "b"), "invitation.expired")
	lastOf(t, e.events(t, "a"), "invitation.rejected")
	// Listing and filtering.
	var list struct {
		Invitations []invitationView `json:"invitations"`
	}
	e.want(t, e.do(t, "GET", "/v1/invitations?user_id=host&state=expired", e.Key, nil), 200).decode(t, &list)
	if len(list.Invitations) != 1 || list.Invitations[0].Invitee != "b" {
		t.Fatalf("filtered list: %+v", list)
	}
	e.want(t, e.do(t, "GET", "/v1/client/invitations", a.ClientToken, nil), 200).decode(t, &list)
	if len(list.Invitations) != 1 || list.Invitations[0].Invitee != "a" {
		t.Fatalf("a's own list: %+v", list)
	}
}

// TestInvitationBadInput: each a clear 4xx, nothing changed.
func TestInvitationBadInput(t *testing.T) {
	e := setup(t)
	e.login(t, "host", "h1")
	e.login(t, "guest", "g1")
	before, _ := e.Store.EventFeedHead(context.Background(), e.AppID)
	for _, c := range []struct {
		body   map[string]any
		status int
		field  string
	}{
		{map[string]any{"meeting_num": "1", "inviter": "host", "invitees": []string{"nobody"}}, 404, "invitees[0]"},
		{map[string]any{"meeting_num": "1", "inviter": "host", "invitees": []string{"guest", "nobody"}}, 404, "invitees[1]"},
		{map[string]any{"meeting_num": "1", "inviter": "host", "invitees": []string{}}, 400, "invitees"},
		{map[string]any{"meeting_num": "", "inviter": "host", "invitees": []string{"guest"}}, 400, "meeting_num"},
		{map[string]any{"meeting_num": "abc", "inviter": "host", "invitees": []string{"guest"}}, 400, "meeting_num"},
		{map[string]any{"meeting_num": "123 456", "inviter": "host", "invitees": []string{"guest"}}, 400, "meeting_num"},
		{map[string]any{"meeting_num": "-123", "inviter": "host", "invitees": []string{"guest"}}, 400, "meeting_num"},
		{map[string]any{"meeting_num": "１２３", "inviter": "host", "invitees": []string{"guest"}}, 400, "meeting_num"},
		{map[string]any{"meeting_num": strings.Repeat("1", 65), "inviter": "host", "invitees": []string{"guest"}}, 400, "meeting_num"},
		{map[string]any{"meeting_num": 123456789, "inviter": "host", "invitees": []string{"guest"}}, 400, "meeting_num"},
		{map[string]any{"meeting_num": "1", "inviter": "host", "invitees": []string{"guest"}, "expires_in": "100h"}, 400, "expires_in"},
		{map[string]any{"meeting_num": "1", "inviter": "host", "invitees": []string{"guest", "guest"}}, 400, "invitees[1]"},
	} {
		r := e.do(t, "POST", "/v1/invitations", e.Key, c.body)
		if r.Status != c.status || !strings.Contains(string(r.Body), `"field":"`+c.field+`"`) {
			t.Errorf("%v: %s, want %d naming %s", c.body, r, c.status, c.field)
		}
	}
	// Another app's user is unknown here.
	now := time.Now().UTC()
	other := &meetsync.App{ID: meetsync.NewID("app"), Name: "other", CreatedAt: now}
	k, otherKey := meetsync.NewAPIKey(other.ID, now)
	if err := e.Store.AppCreate(context.Background(), other, k); err != nil {
		t.Fatal(err)
	}
	e.want(t, e.do(t, "POST", "/v1/invitations", otherKey, map[string]any{"meeting_num": "1", "inviter": "x", "invitees": []string{"guest"}}), 404)
	if after, _ := e.Store.EventFeedHead(context.Background(), e.AppID); after != before {
		t.Fatal("bad invitations stored events")
	}
	e.want(t, e.do(t, "GET", "/v1/invitations?state=maybe", e.Key, nil), 400)
	for _, v := range []any{"forever", 120, "-5m", "100h"} {
		r := e.want(t, e.do(t, "POST", "/v1/invitations", e.Key, map[string]any{"meeting_num": "1", "inviter": "host", "invitees": []string{"guest"}, "expires_in": v}), 400)
		if !strings.Contains(string(r.Body), `"field":"expires_in"`) {
			t.Errorf("expires_in %v: %s", v, r)
		}
	}
	for _, c := range []string{"garbage", "inv_", "del_01m98ae53srg18eqdsqmvjz6zz", "inv_01m98ae53srg18eqdsqmvjz6z!"} {
		if r := e.want(t, e.do(t, "GET", "/v1/invitations?cursor="+url.QueryEscape(c), e.Key, nil), 400); !strings.Contains(string(r.Body), `"field":"cursor"`) {
			t.Errorf("cursor %q: %s", c, r)
		}
	}
	e.want(t, e.do(t, "GET", "/v1/invitations?cursor=inv_01m98ae53srg18eqdsqmvjz6zz", e.Key, nil), 200)
	e.want(t, e.do(t, "POST", "/v1/invitations/inv_nope/accept", e.Key, nil), 404)
	invs := e.invite(t, map[string]any{"meeting_num": "1", "inviter": "host", "invitees": []string{"guest"}})
	e.want(t, e.do(t, "GET", "/v1/invitations/"+invs[0].ID, otherKey, nil), 404)
	e.want(t, e.do(t, "POST", "/v1/invitations/"+invs[0].ID+"/accept", otherKey, nil), 404)
}

// TestPlatformInvitations: the platform's invite callbacks (sim) drive the
// same state machine; the invitee joining completes it.
func TestPlatformInvitations(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	host := e.login(t, "host", "h1")
	guest := e.login(t, "guest", "g1")
	prov := e.Sim.Provider(e.AppID)
	m, err := prov.CreateMeeting(ctx, meetsync.MeetingRequest{HostUUID: host.Meeting.UserUUID, Subject: "call"})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Sim.Invite(ctx, e.AppID, m.MeetingNum, host.Meeting.UserUUID, guest.Meeting.UserUUID); err != nil {
		t.Fatal(err)
	}
	var list struct {
		Invitations []invitationView `json:"invitations"`
	}
	waitFor(t, func() bool {
		e.want(t, e.do(t, "GET", "/v1/invitations?user_id=guest", e.Key, nil), 200).decode(t, &list)
		return len(list.Invitations) == 1
	})
	v := list.Invitations[0]
	if v.Source != "platform" || v.Inviter != "host" || v.MeetingNum != m.MeetingNum || v.State != "waiting_call" {
		t.Fatalf("platform invitation: %+v", v)
	}
	if err := e.Sim.CancelInvite(ctx, e.AppID, m.MeetingNum, guest.Meeting.UserUUID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return e.invitation(t, v.ID).State == "canceled" })

	// Invited again; the guest joins on the platform: joined.
	if err := e.Sim.Invite(ctx, e.AppID, m.MeetingNum, host.Meeting.UserUUID, guest.Meeting.UserUUID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		e.want(t, e.do(t, "GET", "/v1/invitations?user_id=guest&state=waiting_call", e.Key, nil), 200).decode(t, &list)
		return len(list.Invitations) == 1
	})
	second := list.Invitations[0].ID
	sdk := e.Sim.NewSDK("")
	if err := sdk.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if err := sdk.Login(ctx, *guest.Meeting); err != nil {
		t.Fatal(err)
	}
	if err := sdk.JoinMeeting(ctx, m.MeetingNum); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		e.advance(t, 0)
		return e.invitation(t, second).State == "joined"
	})
}

// errorCode is the code of an error answer.
func errorCode(t *testing.T, r resp) string {
	t.Helper()
	var out struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	r.decode(t, &out)
	return out.Error.Code
}

// TestInvitationClosedIsFinal: an answered or closed invitation does not
// change any more: rejecting or cancelling an accepted one, accepting or
// cancelling a rejected one is 409 conflict (with the app key as with a
// client token) and leaves it as it is, with no new event; repeating the
// same answer is harmless (200, the invitation as it is); an accepted
// invitation still completes when the invitee joins.
func TestInvitationClosedIsFinal(t *testing.T) {
	e := setup(t)
	host := e.login(t, "host", "h1")
	guest := e.login(t, "guest", "g1")
	countEvents := func() int {
		n := 0
		for _, ev := range e.events(t, "guest") {
			if strings.HasPrefix(ev.Type, "invitation.") {
				n++
			}
		}
		return n
	}
	// answered is a new invitation of guest, answered (accept or reject) by guest's device.
	answered := func(answer string) string {
		t.Helper()
		invs := e.invite(t, map[string]any{"meeting_num": "42", "inviter": "host", "invitees": []string{"guest"}, "expires_in": "5m"})
		e.want(t, e.do(t, "POST", "/v1/client/invitations/"+invs[0].ID+"/"+answer, guest.ClientToken, nil), 200)
		return invs[0].ID
	}
	for _, c := range []struct {
		what, answer, path, token string
		body                      map[string]any
	}{
		{"reject an accepted invitation (client)", "accept", "/v1/client/invitations/%s/reject", guest.ClientToken, map[string]any{"reason": "changed my mind"}},
		{"reject an accepted invitation (app)", "accept", "/v1/invitations/%s/reject", e.Key, nil},
		{"no_answer on an accepted invitation", "accept", "/v1/invitations/%s/reject", e.Key, map[string]any{"reason": "no_answer"}},
		{"cancel an accepted invitation (inviter)", "accept", "/v1/client/invitations/%s/cancel", host.ClientToken, nil},
		{"cancel an accepted invitation (app)", "accept", "/v1/invitations/%s/cancel", e.Key, nil},
		{"accept a rejected invitation", "reject", "/v1/client/invitations/%s/accept", guest.ClientToken, nil},
		{"cancel a rejected invitation", "reject", "/v1/invitations/%s/cancel", e.Key, nil},
	} {
		id := answered(c.answer)
		want := map[string]string{"accept": "accepted", "reject": "rejected"}[c.answer]
		before := countEvents()
		r := e.do(t, "POST", strings.Replace(c.path, "%s", id, 1), c.token, c.body)
		if r.Status != 409 || errorCode(t, r) != meetsync.ECONFLICT || !strings.Contains(string(r.Body), "is "+want+" and cannot change any more") {
			t.Errorf("%s: %s, want 409 conflict", c.what, r)
		}
		if v := e.invitation(t, id); v.State != want {
			t.Errorf("%s: the invitation became %s", c.what, v.State)
		}
		if n := countEvents(); n != before {
			t.Errorf("%s: %d invitation events, want %d (none new)", c.what, n, before)
		}
		// The same answer again: harmless.
		var v invitationView
		if r := e.do(t, "POST", "/v1/invitations/"+id+"/"+c.answer, e.Key, nil); r.Status != 200 {
			t.Errorf("%s: answering %s again: %s, want 200", c.what, c.answer, r)
		} else if r.decode(t, &v); v.State != want {
			t.Errorf("%s: answering %s again: %+v", c.what, c.answer, v)
		}
		if n := countEvents(); n != before {
			t.Errorf("%s: answering %s again made an event", c.what, c.answer)
		}
	}
	// Accepted still completes when the invitee joins.
	id := answered("accept")
	e.want(t, e.do(t, "POST", "/v1/client/events", guest.ClientToken, map[string]any{"type": "meeting.status_changed", "client_seq": 1,
		"data": map[string]any{"status": "in_meeting", "meeting_num": "42"}}), 200)
	e.advance(t, 0)
	if v := e.invitation(t, id); v.State != "joined" {
		t.Fatalf("after joining: %+v", v)
	}
}

// invitationCommands is a device's pending commands about one invitation.
func (e *env) invitationCommands(t *testing.T, token, invitationID string) []commandView {
	t.Helper()
	var out []commandView
	for _, c := range e.commands(t, token) {
		if c.Data["invitation_id"] == invitationID {
			out = append(out, c)
		}
	}
	return out
}

// TestInvitationClosedStopsOtherDevices: an invitation rings on every
// device of its invitee; when it closes (accepted or rejected on one
// device, rejected with the app key, canceled, expired, or the invitee
// joined the meeting without answering) its invitation commands still
// pending are resolved (no device is given them again) and every device
// but the one that answered gets an invitation_canceled command with the
// invitation's state.
func TestInvitationClosedStopsOtherDevices(t *testing.T) {
	e := setup(t)
	host := e.login(t, "host", "h1")
	g1 := e.login(t, "guest", "g1")
	g2 := e.login(t, "guest", "g2")
	g3 := e.login(t, "guest", "g3")
	if g1.SessionID != g2.SessionID || g2.SessionID != g3.SessionID {
		t.Fatalf("the guest's devices are in sessions %s, %s, %s", g1.SessionID, g2.SessionID, g3.SessionID)
	}
	// The guest's meeting login completes, so the session outlives the expiry below.
	e.want(t, e.do(t, "POST", "/v1/client/login", g1.ClientToken, map[string]any{"ok": true}), 200)
	tokens := map[string]string{"g1": g1.ClientToken, "g2": g2.ClientToken, "g3": g3.ClientToken}
	seq := 0
	for i, c := range []struct {
		name   string
		state  string
		close  func(id string) // closes the invitation
		except string          // the device that answered (or joined): told nothing
	}{
		{"accepted on g1", "accepted", func(id string) {
			e.want(t, e.do(t, "POST", "/v1/client/invitations/"+id+"/accept", g1.ClientToken, nil), 200)
		}, "g1"},
		{"rejected on g2", "rejected", func(id string) {
			e.want(t, e.do(t, "POST", "/v1/client/invitations/"+id+"/reject", g2.ClientToken, map[string]any{"reason": "busy"}), 200)
		}, "g2"},
		{"rang out on g3", "no_answer", func(id string) {
			e.want(t, e.do(t, "POST", "/v1/client/invitations/"+id+"/reject", g3.ClientToken, map[string]any{"reason": "no_answer"}), 200)
		}, "g3"},
		{"accepted with the app key", "accepted", func(id string) {
			e.want(t, e.do(t, "POST", "/v1/invitations/"+id+"/accept", e.Key, nil), 200)
		}, ""},
		{"rejected with the app key", "rejected", func(id string) {
			e.want(t, e.do(t, "POST", "/v1/invitations/"+id+"/reject", e.Key, nil), 200)
		}, ""},
		{"canceled by the inviter", "canceled", func(id string) {
			e.want(t, e.do(t, "POST", "/v1/client/invitations/"+id+"/cancel", host.ClientToken, nil), 200)
		}, ""},
		{"expired", "expired", func(string) { e.advance(t, 2*time.Minute) }, ""},
		{"joined without answering", "joined", func(string) {
			seq++
			e.want(t, e.do(t, "POST", "/v1/client/events", g1.ClientToken, map[string]any{"type": "meeting.status_changed", "client_seq": seq,
				"data": map[string]any{"status": "in_meeting", "meeting_num": "900000000"}}), 200)
			e.advance(t, 0)
			seq++
			e.want(t, e.do(t, "POST", "/v1/client/events", g1.ClientToken, map[string]any{"type": "meeting.status_changed", "client_seq": seq,
				"data": map[string]any{"status": "idle"}}), 200)
		}, "g1"}, // in the meeting
	} {
		t.Run(c.name, func(t *testing.T) {
			num := fmt.Sprintf("9%08d", i+1) // a meeting per case
			if c.state == "joined" {
				num = "900000000"
			}
			invs := e.invite(t, map[string]any{"meeting_num": num, "inviter": "host", "invitees": []string{"guest"}, "expires_in": "1m"})
			id := invs[0].ID
			// Every device rings; g1 acknowledges (calling), the others have not yet.
			for d, tok := range tokens {
				cmds := e.invitationCommands(t, tok, id)
				if len(cmds) != 1 || cmds[0].Type != "invitation" {
					t.Fatalf("%s's commands for the new invitation: %+v", d, cmds)
				}
				if d == "g1" {
					e.want(t, e.do(t, "POST", "/v1/client/commands/"+cmds[0].ID+"/ack", tok, map[string]any{"ok": true}), 204)
				}
			}
			c.close(id)
			if v := e.invitation(t, id); v.State != c.state {
				t.Fatalf("state %s, want %s", v.State, c.state)
			}
			for d, tok := range tokens {
				cmds := e.invitationCommands(t, tok, id)
				if d == c.except {
					if len(cmds) != 0 {
						t.Errorf("%s answered but still has %+v", d, cmds)
					}
					continue
				}
				if len(cmds) != 1 || cmds[0].Type != "invitation_canceled" || cmds[0].Data["state"] != c.state || cmds[0].Data["meeting_num"] != num {
					t.Errorf("%s's pending commands for the closed invitation: %+v, want one invitation_canceled with state %s", d, cmds, c.state)
				}
			}
			// The invitation commands the devices had not acknowledged were resolved by meetsync.
			for _, d := range []string{"g2", "g3"} {
				all, err := e.Store.CommandList(context.Background(), e.AppID, "guest", d, false)
				if err != nil {
					t.Fatal(err)
				}
				for _, cmd := range all {
					if cmd.Type == meetsync.CommandInvitation && strings.Contains(string(cmd.Data), id) &&
						(cmd.AckedAt == nil || cmd.AckOK || cmd.AckError != "superseded: invitation "+id+" is "+c.state) {
						t.Errorf("%s's invitation command after the close: acked %v ok %v %q", d, cmd.AckedAt, cmd.AckOK, cmd.AckError)
					}
				}
			}
			// The devices take it off the screen and acknowledge.
			for _, tok := range tokens {
				for _, cmd := range e.commands(t, tok) {
					e.want(t, e.do(t, "POST", "/v1/client/commands/"+cmd.ID+"/ack", tok, map[string]any{"ok": true}), 204)
				}
			}
			if v := e.invitation(t, id); v.State != c.state {
				t.Fatalf("after the devices acknowledged: state %s, want %s", v.State, c.state)
			}
		})
	}

	// An accepted invitation that the invitee joins tells no device (the
	// others were told at the acceptance; the one that accepted joined).
	invs := e.invite(t, map[string]any{"meeting_num": "900000100", "inviter": "host", "invitees": []string{"guest"}, "expires_in": "1m"})
	id := invs[0].ID
	e.want(t, e.do(t, "POST", "/v1/client/invitations/"+id+"/accept", g1.ClientToken, nil), 200)
	for _, tok := range []string{g2.ClientToken, g3.ClientToken} {
		for _, cmd := range e.commands(t, tok) {
			e.want(t, e.do(t, "POST", "/v1/client/commands/"+cmd.ID+"/ack", tok, map[string]any{"ok": true}), 204)
		}
	}
	seq++
	e.want(t, e.do(t, "POST", "/v1/client/events", g1.ClientToken, map[string]any{"type": "meeting.status_changed", "client_seq": seq,
		"data": map[string]any{"status": "in_meeting", "meeting_num": "900000100"}}), 200)
	e.advance(t, 0)
	if v := e.invitation(t, id); v.State != "joined" {
		t.Fatalf("the accepted invitation after joining: %s", v.State)
	}
	for d, tok := range tokens {
		if cmds := e.invitationCommands(t, tok, id); len(cmds) != 0 {
			t.Fatalf("%s after the accepted invitation was joined: %+v", d, cmds)
		}
	}
	seq++
	e.want(t, e.do(t, "POST", "/v1/client/events", g1.ClientToken, map[string]any{"type": "meeting.status_changed", "client_seq": seq,
		"data": map[string]any{"status": "idle"}}), 200)

	// An accepted invitation that expires unjoined tells only the device
	// that accepted (the others were told at the acceptance), once.
	invs = e.invite(t, map[string]any{"meeting_num": "900000200", "inviter": "host", "invitees": []string{"guest"}, "expires_in": "1m"})
	id = invs[0].ID
	e.want(t, e.do(t, "POST", "/v1/client/invitations/"+id+"/accept", g1.ClientToken, nil), 200)
	for _, tok := range []string{g2.ClientToken, g3.ClientToken} {
		for _, cmd := range e.commands(t, tok) {
			e.want(t, e.do(t, "POST", "/v1/client/commands/"+cmd.ID+"/ack", tok, map[string]any{"ok": true}), 204)
		}
	}
	e.advance(t, 2*time.Minute)
	if v := e.invitation(t, id); v.State != "expired" {
		t.Fatalf("the accepted invitation never joined: %s", v.State)
	}
	if cmds := e.invitationCommands(t, g1.ClientToken, id); len(cmds) != 1 || cmds[0].Type != "invitation_canceled" || cmds[0].Data["state"] != "expired" {
		t.Fatalf("g1 after its accepted invitation expired: %+v", cmds)
	}
	for _, tok := range []string{g2.ClientToken, g3.ClientToken} {
		if cmds := e.invitationCommands(t, tok, id); len(cmds) != 0 {
			t.Fatalf("a device told twice: %+v", cmds)
		}
	}
}

// TestInvitationCommandsDocumented checks the commands an expiry sends
// against docs/sessions.md: the invitee's device gets invitation_canceled
// (the event is invitation.expired), and the doc's list of command types
// says so and names every field of its data.
func TestInvitationCommandsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/sessions.md")
	if err != nil {
		t.Fatal(err)
	}
	// The command types bullet: from "- Command types:" to the next bullet or paragraph.
	text := string(doc)
	i := strings.Index(text, "- Command types:")
	if i < 0 {
		t.Fatal("docs/sessions.md has no command types list")
	}
	bullet := text[i+2:]
	if j := strings.Index(bullet, "\n- "); j >= 0 {
		bullet = bullet[:j]
	}
	if j := strings.Index(bullet, "\n\n"); j >= 0 {
		bullet = bullet[:j]
	}
	j := strings.Index(bullet, "`invitation_canceled`")
	if j < 0 {
		t.Fatalf("the command types list does not name invitation_canceled: %s", bullet)
	}
	canceledDoc := bullet[j:]

	e := setup(t)
	e.login(t, "host", "h1")
	guest := e.login(t, "guest", "g1")
	e.want(t, e.do(t, "POST", "/v1/client/login", guest.ClientToken, map[string]any{"ok": true}), 200)
	invs := e.invite(t, map[string]any{"meeting_num": "77", "inviter": "host", "invitees": []string{"guest"}, "expires_in": "1m"})
	e.advance(t, 2*time.Minute)
	if v := e.invitation(t, invs[0].ID); v.State != "expired" {
		t.Fatalf("state %s, want expired", v.State)
	}
	lastOf(t, e.events(t, "guest"), "invitation.expired")
	var canceled *commandView
	for _, c := range e.invitationCommands(t, guest.ClientToken, invs[0].ID) {
		if c.Type == "invitation_canceled" {
			canceled = &c
		}
	}
	if canceled == nil {
		t.Fatal("the expiry sent the device no invitation_canceled")
	}
	for k := range canceled.Data {
		if !strings.Contains(canceledDoc, "`"+k+"`") {
			t.Errorf("invitation_canceled carries %q, which docs/sessions.md does not list: %s", k, canceledDoc)
		}
	}
	if canceled.Data["state"] != "expired" {
		t.Errorf("invitation_canceled of an expiry: %+v", canceled.Data)
	}
	if !strings.Contains(canceledDoc, "xpir") {
		t.Errorf("docs/sessions.md does not say that an expiry sends invitation_canceled: %s", canceledDoc)
	}
}

// TestPlatformCancelStopsDevices: when the platform reports that an
// invitation was withdrawn (MEETING_MEMBER_INVITE_CANCEL, here from the
// sim), the invitee's open invitations to that meeting close as a
// cancellation through the API does: their invitation commands still
// pending are resolved and every device of the invitee gets an
// invitation_canceled command with state canceled. An invitation already
// answered (accepted) stays as it is, and no device hears of it again.
func TestPlatformCancelStopsDevices(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	host := e.login(t, "host", "h1")
	g1 := e.login(t, "guest", "g1")
	g2 := e.login(t, "guest", "g2")
	e.want(t, e.do(t, "POST", "/v1/client/login", g1.ClientToken, map[string]any{"ok": true}), 200)
	tokens := map[string]string{"g1": g1.ClientToken, "g2": g2.ClientToken}
	m, err := e.Sim.Provider(e.AppID).CreateMeeting(ctx, meetsync.MeetingRequest{HostUUID: host.Meeting.UserUUID, Subject: "call"})
	if err != nil {
		t.Fatal(err)
	}
	// The platform invites the guest (an invitation of source platform) …
	platformID := e.platformInvite(t, m.MeetingNum, host, g1, "guest").ID
	// … and so does the business system, twice: one rings on both devices
	// (g1 acknowledges it), the other is accepted on g1.
	ringing := e.invite(t, map[string]any{"meeting_num": m.MeetingNum, "inviter": "host", "invitees": []string{"guest"}, "expires_in": "5m"})[0].ID
	accepted := e.invite(t, map[string]any{"meeting_num": m.MeetingNum, "inviter": "host", "invitees": []string{"guest"}, "expires_in": "5m"})[0].ID
	for d, tok := range tokens {
		cmds := e.invitationCommands(t, tok, ringing)
		if len(cmds) != 1 || cmds[0].Type != "invitation" {
			t.Fatalf("%s's commands for the invitation: %+v", d, cmds)
		}
		if d == "g1" {
			e.want(t, e.do(t, "POST", "/v1/client/commands/"+cmds[0].ID+"/ack", tok, map[string]any{"ok": true}), 204)
		}
	}
	e.want(t, e.do(t, "POST", "/v1/client/invitations/"+accepted+"/accept", g1.ClientToken, nil), 200)
	for _, tok := range tokens {
		for _, cmd := range e.commands(t, tok) {
			if cmd.Data["invitation_id"] == accepted {
				e.want(t, e.do(t, "POST", "/v1/client/commands/"+cmd.ID+"/ack", tok, map[string]any{"ok": true}), 204)
			}
		}
	}

	// The inviter withdraws the invitation on the platform.
	if err := e.Sim.CancelInvite(ctx, e.AppID, m.MeetingNum, g1.Meeting.UserUUID); err != nil {
		t.Fatal(err)
	}
	canceled := func(tok, id string) bool {
		cmds := e.invitationCommands(t, tok, id)
		return len(cmds) == 1 && cmds[0].Type == "invitation_canceled" && cmds[0].Data["state"] == "canceled" &&
			cmds[0].Data["meeting_num"] == m.MeetingNum
	}
	for _, id := range []string{ringing, platformID} {
		waitFor(t, func() bool {
			return e.invitation(t, id).State == "canceled" && canceled(g1.ClientToken, id) && canceled(g2.ClientToken, id)
		})
	}
	lastOf(t, e.events(t, "guest"), "invitation.canceled")
	// The invitation command g2 never acknowledged was resolved by meetsync.
	all, err := e.Store.CommandList(ctx, e.AppID, "guest", "g2", false)
	if err != nil {
		t.Fatal(err)
	}
	for _, cmd := range all {
		if cmd.Type == meetsync.CommandInvitation && strings.Contains(string(cmd.Data), ringing) &&
			(cmd.AckedAt == nil || cmd.AckOK || cmd.AckError != "superseded: invitation "+ringing+" is canceled") {
			t.Errorf("g2's invitation command after the platform canceled it: acked %v ok %v %q", cmd.AckedAt, cmd.AckOK, cmd.AckError)
		}
	}
	// The accepted invitation is answered: the platform's cancel leaves it be.
	if v := e.invitation(t, accepted); v.State != "accepted" {
		t.Errorf("the accepted invitation after the platform's cancel: %s", v.State)
	}
	for d, tok := range tokens {
		if cmds := e.invitationCommands(t, tok, accepted); len(cmds) != 0 {
			t.Errorf("%s was told of the accepted invitation again: %+v", d, cmds)
		}
	}
}

// TestPlatformCancelRace: an invitation changes (its command is
// acknowledged: waiting_call → calling) between the platform's cancel
// callback reading it and storing the cancel. The callback reads again and
// cancels it, rather than losing the cancel to the conflict.
func TestPlatformCancelRace(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	host := e.login(t, "host", "h1")
	g1 := e.login(t, "guest", "g1")
	m, err := e.Sim.Provider(e.AppID).CreateMeeting(ctx, meetsync.MeetingRequest{HostUUID: host.Meeting.UserUUID, Subject: "call"})
	if err != nil {
		t.Fatal(err)
	}
	platformID := e.platformInvite(t, m.MeetingNum, host, g1, "guest").ID
	// The business system's invitation to the same meeting: the platform's
	// cancel closes it too; the race is its acknowledgement.
	id := e.invite(t, map[string]any{"meeting_num": m.MeetingNum, "inviter": "host", "invitees": []string{"guest"}, "expires_in": "5m"})[0].ID
	cmds := e.invitationCommands(t, g1.ClientToken, id)
	if len(cmds) != 1 || cmds[0].Type != "invitation" {
		t.Fatalf("g1's commands for the invitation: %+v", cmds)
	}
	var once sync.Once
	raced := make(chan int, 1)
	hook := func(req *meetsync.AppendRequest) {
		for _, ev := range req.Events {
			if ev.Type == meetsync.TypeInvitationCanceled && ev.Source == meetsync.SourcePlatform {
				once.Do(func() {
					// No t.Fatal here: this runs on the callback's goroutine.
					r := e.do(t, "POST", "/v1/client/commands/"+cmds[0].ID+"/ack", g1.ClientToken, map[string]any{"ok": true})
					raced <- r.Status
				})
			}
		}
	}
	e.beforeAppend.Store(&hook)
	if err := e.Sim.CancelInvite(ctx, e.AppID, m.MeetingNum, g1.Meeting.UserUUID); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-raced:
		if code != 204 {
			t.Fatalf("the racing ack: %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the platform's cancel never reached the store")
	}
	waitFor(t, func() bool {
		return e.invitation(t, id).State == "canceled" && e.invitation(t, platformID).State == "canceled"
	})
}

// TestPlatformInviteRingsDevices: an invitation the platform reports
// (MEETING_MEMBER_INVITE) pushes the invitation command to every device
// of the invitee's open session, as POST /v1/invitations does
// (docs/client.md: "the platform reported an invite"); acknowledging it
// makes the invitation calling. An invitee without an open session gets
// the invitation and no command.
func TestPlatformInviteRingsDevices(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	host := e.login(t, "host", "h1")
	g1 := e.login(t, "guest", "g1")
	g2 := e.login(t, "guest", "g2")
	away := e.login(t, "away", "a1")
	e.want(t, e.do(t, "POST", "/v1/users/away/logout", e.Key, nil), 202)
	for _, c := range e.commands(t, away.ClientToken) {
		e.want(t, e.do(t, "POST", "/v1/client/commands/"+c.ID+"/ack", away.ClientToken, map[string]any{"ok": true}), 204)
	}
	waitFor(t, func() bool { return e.user(t, "away").Session.Business == "logged_out" })
	m, err := e.Sim.Provider(e.AppID).CreateMeeting(ctx, meetsync.MeetingRequest{HostUUID: host.Meeting.UserUUID, Subject: "call"})
	if err != nil {
		t.Fatal(err)
	}
	id := e.platformInvite(t, m.MeetingNum, host, g1, "guest").ID
	var ringing commandView
	for _, tok := range []string{g1.ClientToken, g2.ClientToken} {
		var cmds []commandView
		deadline := time.Now().Add(5 * time.Second)
		for len(cmds) == 0 && time.Now().Before(deadline) {
			if cmds = e.invitationCommands(t, tok, id); len(cmds) == 0 {
				time.Sleep(20 * time.Millisecond)
			}
		}
		if len(cmds) != 1 || cmds[0].Type != "invitation" || cmds[0].Data["meeting_num"] != m.MeetingNum ||
			cmds[0].Data["inviter"] != "host" || cmds[0].Data["source"] != "platform" {
			t.Fatalf("the guest's device's commands for the platform's invitation %s: %+v", id, cmds)
		}
		if tok == g1.ClientToken {
			ringing = cmds[0]
		}
	}
	e.want(t, e.do(t, "POST", "/v1/client/commands/"+ringing.ID+"/ack", g1.ClientToken, map[string]any{"ok": true}), 204)
	if v := e.invitation(t, id); v.State != "calling" || v.Source != "platform" {
		t.Errorf("the platform's invitation after g1 acknowledged it: %+v", v)
	}

	// The invitee without a session: an invitation, no command.
	e.platformInvite(t, m.MeetingNum, host, away, "away")
	cmds, err := e.Store.CommandList(ctx, e.AppID, "away", "a1", false)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cmds {
		if c.Type == meetsync.CommandInvitation {
			t.Errorf("a logged-out invitee's device got an invitation command: %+v", c)
		}
	}
}

// sourcedEvent is an event of the feed with its source.
type sourcedEvent struct {
	Type   string `json:"type"`
	Source string `json:"source"`
	Data   struct {
		InvitationID string `json:"invitation_id"`
		Source       string `json:"source"`
	} `json:"data"`
}

// TestInvitationSourceIsTheCreator: an invitation's source is who created
// it and never changes: the answer's response, a repeated answer, GET and
// the lists all say the same, as does the data of its events; the event's
// own source is who made that change (client for an answer with a client
// token and for the acknowledgement that makes it calling, business for the
// app key, platform for the platform's cancel).
func TestInvitationSourceIsTheCreator(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	host := e.login(t, "host", "h1")
	g1 := e.login(t, "guest", "g1")
	m, err := e.Sim.Provider(e.AppID).CreateMeeting(ctx, meetsync.MeetingRequest{HostUUID: host.Meeting.UserUUID, Subject: "call"})
	if err != nil {
		t.Fatal(err)
	}
	invite := func() string {
		return e.invite(t, map[string]any{"meeting_num": m.MeetingNum, "inviter": "host", "invitees": []string{"guest"}, "expires_in": "5m"})[0].ID
	}
	same := func(what string, v invitationView, want string) {
		t.Helper()
		if v.Source != want {
			t.Errorf("%s: source %q, want %q (who created the invitation)", what, v.Source, want)
		}
	}
	listed := func(path, token, id string) invitationView {
		t.Helper()
		var list struct {
			Invitations []invitationView `json:"invitations"`
		}
		e.want(t, e.do(t, "GET", path, token, nil), 200).decode(t, &list)
		for _, v := range list.Invitations {
			if v.ID == id {
				return v
			}
		}
		t.Fatalf("%s does not list %s: %+v", path, id, list.Invitations)
		return invitationView{}
	}
	answer := func(path, token string) invitationView {
		t.Helper()
		var v invitationView
		e.want(t, e.do(t, "POST", path, token, nil), 200).decode(t, &v)
		return v
	}

	// Accepted with the invitee's client token (after its device
	// acknowledged the command).
	accepted := invite()
	cmds := e.invitationCommands(t, g1.ClientToken, accepted)
	if len(cmds) != 1 {
		t.Fatalf("g1's commands for %s: %+v", accepted, cmds)
	}
	e.want(t, e.do(t, "POST", "/v1/client/commands/"+cmds[0].ID+"/ack", g1.ClientToken, map[string]any{"ok": true}), 204)
	same("the acceptance's response", answer("/v1/client/invitations/"+accepted+"/accept", g1.ClientToken), "business")
	same("the repeated acceptance", answer("/v1/client/invitations/"+accepted+"/accept", g1.ClientToken), "business")
	same("the repeated acceptance with the app key", answer("/v1/invitations/"+accepted+"/accept", e.Key), "business")
	same("GET", e.invitation(t, accepted), "business")
	same("the list", listed("/v1/invitations?user_id=guest", e.Key, accepted), "business")
	same("the client's list", listed("/v1/client/invitations", g1.ClientToken, accepted), "business")

	// Rejected with the app key.
	rejected := invite()
	same("the rejection's response", answer("/v1/invitations/"+rejected+"/reject", e.Key), "business")
	same("the repeated rejection", answer("/v1/client/invitations/"+rejected+"/reject", g1.ClientToken), "business")

	// Canceled by the platform (the business system's invitation, and the
	// platform's own).
	canceled := invite()
	platformID := e.platformInvite(t, m.MeetingNum, host, g1, "guest").ID
	if err := e.Sim.CancelInvite(ctx, e.AppID, m.MeetingNum, g1.Meeting.UserUUID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		return e.invitation(t, canceled).State == "canceled" && e.invitation(t, platformID).State == "canceled"
	})
	same("GET after the platform's cancel", e.invitation(t, canceled), "business")
	same("the repeated cancel", answer("/v1/invitations/"+canceled+"/cancel", e.Key), "business")
	same("GET of the platform's invitation after its cancel", e.invitation(t, platformID), "platform")

	// The events: data.source is the invitation's, source who changed it.
	var feed struct {
		Events []sourcedEvent `json:"events"`
	}
	e.want(t, e.do(t, "GET", "/v1/events?limit=1000&user_id=guest", e.Key, nil), 200).decode(t, &feed)
	want := map[string]string{
		accepted + " invitation.created": "business", accepted + " invitation.calling": "client", accepted + " invitation.accepted": "client",
		rejected + " invitation.created": "business", rejected + " invitation.rejected": "business",
		canceled + " invitation.created": "business", canceled + " invitation.canceled": "platform",
		platformID + " invitation.created": "platform", platformID + " invitation.canceled": "platform",
	}
	creator := map[string]string{accepted: "business", rejected: "business", canceled: "business", platformID: "platform"}
	for _, ev := range feed.Events {
		id := ev.Data.InvitationID
		if creator[id] == "" {
			continue
		}
		k := id + " " + ev.Type
		by, ok := want[k]
		if !ok {
			t.Errorf("unexpected event %s", k)
			continue
		}
		delete(want, k)
		if ev.Source != by || ev.Data.Source != creator[id] {
			t.Errorf("%s: source %q, data.source %q; want %q (who made the change), %q (who created the invitation)",
				k, ev.Source, ev.Data.Source, by, creator[id])
		}
	}
	for k := range want {
		t.Errorf("no event %s", k)
	}
}
