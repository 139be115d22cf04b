package session_test

import (
	"context"
	"net/url"
	"strings"
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
