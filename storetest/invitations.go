package storetest

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
)

// invitation is a new invitation (version 1) of the env's app.
func (e *env) invitation(id, inviter, invitee, num string) *meetsync.Invitation {
	return &meetsync.Invitation{ID: id, AppID: e.app, GroupID: "grp_" + id, MeetingNum: num, Inviter: inviter, Invitee: invitee,
		Subject: "weekly", Password: "1234", State: meetsync.InviteWaitingCall, Source: meetsync.SourceBusiness,
		CreatedAt: e.now, UpdatedAt: e.now, ExpiresAt: e.now.Add(2*time.Minute + 1500*time.Nanosecond), Version: 1}
}

// invitationEvent is the invitee's event for an invitation change, which
// is written with it.
func (e *env) invitationEvent(inv *meetsync.Invitation, typ string, data map[string]any) *meetsync.Event {
	if data == nil {
		data = map[string]any{}
	}
	data["invitation_id"], data["state"] = inv.ID, inv.State
	ev := meetsync.NewServerEvent(inv.AppID, inv.Invitee, typ, inv.Source, data, e.now)
	c := *inv
	ev.Effects = &meetsync.EventEffects{Invitation: &c}
	return ev
}

// next is inv's next version in state.
func (e *env) next(inv *meetsync.Invitation, state string) *meetsync.Invitation {
	n := *inv
	n.State, n.UpdatedAt, n.Version = state, e.now, inv.Version+1
	return &n
}

func (e *env) invitationGet(id string) *meetsync.Invitation {
	e.t.Helper()
	inv, err := e.s.(meetsync.InvitationStore).InvitationGet(e.ctx, e.app, id)
	if err != nil {
		e.t.Fatalf("InvitationGet(%s): %v", id, err)
	}
	return inv
}

func sameInvitation(t *testing.T, what string, got, want *meetsync.Invitation) {
	t.Helper()
	w := *want
	w.CreatedAt, w.UpdatedAt, w.ExpiresAt = w.CreatedAt.Truncate(time.Microsecond), w.UpdatedAt.Truncate(time.Microsecond), w.ExpiresAt.Truncate(time.Microsecond)
	if got.ID != w.ID || got.AppID != w.AppID || got.GroupID != w.GroupID || got.MeetingNum != w.MeetingNum || got.Inviter != w.Inviter ||
		got.Invitee != w.Invitee || got.Subject != w.Subject || got.Password != w.Password || got.State != w.State || got.Reason != w.Reason ||
		!got.CreatedAt.Equal(w.CreatedAt) || !got.UpdatedAt.Equal(w.UpdatedAt) || !got.ExpiresAt.Equal(w.ExpiresAt) || got.Version != w.Version {
		t.Errorf("%s: %+v, want %+v", what, got, &w)
	}
}

// testInvitations: invitations written with their events read back whole;
// the invitee's state keeps its open invitations (and is due when the
// first expires); lists filter by user, state and cursor, newest first;
// the open invitations of an invitee to a meeting.
func testInvitations(t *testing.T, su *suite) {
	t.Run("CommandsSupersede", func(t *testing.T) {
		t.Parallel()
		testInvitationCommandsSupersede(t, su)
	})
	e := su.setup(t)
	su.require(e, Invitations)
	is := e.s.(meetsync.InvitationStore)
	e.appendOne(e.note("bob"), e.note("carol"))
	i1 := e.invitation("inv_1", "alice", "bob", "777")
	i2 := e.invitation("inv_2", "alice", "carol", "777")
	e.tick(time.Second)
	i3 := e.invitation("inv_3", "carol", "bob", "888")
	i3.Password, i3.Subject, i3.Source = "", "", meetsync.SourcePlatform
	e.appendOne(e.invitationEvent(i1, meetsync.TypeInvitationCreated, nil), e.invitationEvent(i2, meetsync.TypeInvitationCreated, nil))
	e.appendOne(e.invitationEvent(i3, meetsync.TypeInvitationCreated, nil))
	for _, inv := range []*meetsync.Invitation{i1, i2, i3} {
		got := e.invitationGet(inv.ID)
		sameInvitation(t, "InvitationGet("+inv.ID+")", got, inv)
		if got.Source != inv.Source {
			t.Errorf("invitation %s source %q, want %q", inv.ID, got.Source, inv.Source)
		}
	}
	bob := e.user("bob")
	if len(bob.Invites) != 2 || bob.Invites[0].ID != "inv_1" || bob.Invites[1].ID != "inv_3" || bob.Invites[0].MeetingNum != "777" ||
		!bob.Invites[0].ExpiresAt.Equal(i1.ExpiresAt.Truncate(time.Microsecond)) {
		t.Errorf("bob's open invitations: %+v", bob.Invites)
	}
	if !bob.DueAt.Equal(i1.ExpiresAt.Truncate(time.Microsecond)) {
		t.Errorf("bob is due at %v, want when inv_1 expires (%v)", bob.DueAt, i1.ExpiresAt)
	}

	list := func(p meetsync.InvitationListParams) string {
		t.Helper()
		p.AppID = e.app
		invs, err := is.InvitationList(e.ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, inv := range invs {
			ids = append(ids, inv.ID)
		}
		return fmt.Sprint(ids)
	}
	for _, c := range []struct {
		p    meetsync.InvitationListParams
		want string
	}{
		{meetsync.InvitationListParams{}, "[inv_3 inv_2 inv_1]"},
		{meetsync.InvitationListParams{Limit: 2}, "[inv_3 inv_2]"},
		{meetsync.InvitationListParams{After: "inv_2"}, "[inv_1]"},
		{meetsync.InvitationListParams{UserID: "carol"}, "[inv_3 inv_2]"},
		{meetsync.InvitationListParams{UserID: "bob", After: "inv_3"}, "[inv_1]"},
		{meetsync.InvitationListParams{UserID: "alice"}, "[inv_2 inv_1]"},
		{meetsync.InvitationListParams{State: meetsync.InviteWaitingCall, UserID: "bob"}, "[inv_3 inv_1]"},
		{meetsync.InvitationListParams{State: meetsync.InviteAccepted}, "[]"},
	} {
		if got := list(c.p); got != c.want {
			t.Errorf("InvitationList(%+v) = %s, want %s", c.p, got, c.want)
		}
	}

	// Accepted is still open; joined is not: it leaves bob's state.
	e.tick(time.Second)
	a := e.next(i1, meetsync.InviteAccepted)
	a.Source = meetsync.SourceClient
	e.appendOne(e.invitationEvent(a, meetsync.TypeInvitationAccepted, nil))
	sameInvitation(t, "accepted", e.invitationGet("inv_1"), a)
	open, err := is.InvitationsOpenFor(e.ctx, e.app, "bob", "777")
	if err != nil || len(open) != 1 || open[0].ID != "inv_1" || open[0].State != meetsync.InviteAccepted {
		t.Errorf("bob's open invitations to 777: %+v %v", open, err)
	}
	if got := list(meetsync.InvitationListParams{State: meetsync.InviteAccepted}); got != "[inv_1]" {
		t.Errorf("accepted invitations: %s", got)
	}
	e.tick(time.Second)
	j := e.next(a, meetsync.InviteJoined)
	j.Reason = "joined the meeting"
	e.appendOne(e.invitationEvent(j, meetsync.TypeInvitationJoined, nil))
	sameInvitation(t, "joined", e.invitationGet("inv_1"), j)
	if open, err := is.InvitationsOpenFor(e.ctx, e.app, "bob", "777"); err != nil || len(open) != 0 {
		t.Errorf("bob's open invitations to 777 after joining: %+v %v", open, err)
	}
	bob = e.user("bob")
	if len(bob.Invites) != 1 || bob.Invites[0].ID != "inv_3" || !bob.DueAt.Equal(i3.ExpiresAt.Truncate(time.Microsecond)) {
		t.Errorf("bob after joining: invites %+v due %v", bob.Invites, bob.DueAt)
	}
	if open, err := is.InvitationsOpenFor(e.ctx, e.app, "carol", "777"); err != nil || len(open) != 1 || open[0].ID != "inv_2" {
		t.Errorf("carol's open invitations to 777: %+v %v", open, err)
	}

	_, err = is.InvitationGet(e.ctx, e.app, "inv_missing")
	wantCode(t, "InvitationGet(unknown)", err, meetsync.ENOTFOUND)
	other := e.newApp("other")
	_, err = is.InvitationGet(e.ctx, other, "inv_1")
	wantCode(t, "InvitationGet(another app's)", err, meetsync.ENOTFOUND)
	if invs, err := is.InvitationList(e.ctx, meetsync.InvitationListParams{AppID: other}); err != nil || len(invs) != 0 {
		t.Errorf("another app's invitations: %+v %v", invs, err)
	}
}

// testInvitationCompareAndSet: an invitation change applies only to the
// version before it (none stored, for version 1); otherwise its request
// fails alone with ECONFLICT and has no effect. The versions are checked
// before any event of the request, so a request changing one invitation
// twice fails; requests of one transaction see each other's changes.
func testInvitationCompareAndSet(t *testing.T, su *suite) {
	e := su.setup(t)
	su.require(e, Invitations)
	e.appendOne(e.note("bob"))
	inv := e.invitation("inv_1", "alice", "bob", "777")
	e.appendOne(e.invitationEvent(inv, meetsync.TypeInvitationCreated, nil))
	head := len(e.feed(e.app, 0, 100))
	refused := func(what string, r *meetsync.AppendRequest) {
		t.Helper()
		if err := e.s.EventsAppend(e.ctx, []*meetsync.AppendRequest{r}); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		wantCode(t, what, r.Err, meetsync.ECONFLICT)
		if n := len(e.feed(e.app, 0, 100)); n != head {
			t.Errorf("%s: the feed has %d events, want %d (no effect)", what, n, head)
		}
	}
	again := e.invitation("inv_1", "alice", "bob", "777")
	again.Subject = "another"
	refused("created again", req(e.note("dave"), e.invitationEvent(again, meetsync.TypeInvitationCreated, nil)))
	if _, err := e.s.UserGet(e.ctx, e.app, "dave"); meetsync.ErrorCode(err) != meetsync.ENOTFOUND {
		t.Errorf("a refused request stored another user's event: %v", err)
	}
	skip := e.next(e.next(inv, meetsync.InviteCalling), meetsync.InviteAccepted)
	refused("a version skipped", req(e.invitationEvent(skip, meetsync.TypeInvitationAccepted, nil)))
	sameInvitation(t, "after refused changes", e.invitationGet("inv_1"), inv)

	calling := e.next(inv, meetsync.InviteCalling)
	e.appendOne(e.invitationEvent(calling, meetsync.TypeInvitationCalling, nil))
	head++
	refused("the same change again", req(e.invitationEvent(calling, meetsync.TypeInvitationCalling, nil)))
	twice := e.next(calling, meetsync.InviteAccepted)
	refused("two changes in one request", req(e.invitationEvent(twice, meetsync.TypeInvitationAccepted, nil),
		e.invitationEvent(e.next(twice, meetsync.InviteJoined), meetsync.TypeInvitationJoined, nil)))

	// One transaction: the first change of version 2 wins, the second
	// (also from 2) sees it and fails, the third continues from the first.
	accepted := e.next(calling, meetsync.InviteAccepted)
	rejected := e.next(calling, meetsync.InviteRejected)
	joined := e.next(accepted, meetsync.InviteJoined)
	r1, r2, r3 := req(e.invitationEvent(accepted, meetsync.TypeInvitationAccepted, nil)),
		req(e.invitationEvent(rejected, meetsync.TypeInvitationRejected, nil)), req(e.invitationEvent(joined, meetsync.TypeInvitationJoined, nil))
	if err := e.s.EventsAppend(e.ctx, []*meetsync.AppendRequest{r1, r2, r3}); err != nil {
		t.Fatal(err)
	}
	if r1.Err != nil || r3.Err != nil {
		t.Errorf("the first and third changes: %v, %v", r1.Err, r3.Err)
	}
	wantCode(t, "the second change from version 2", r2.Err, meetsync.ECONFLICT)
	sameInvitation(t, "after the transaction", e.invitationGet("inv_1"), joined)
	if u := e.user("bob"); len(u.Invites) != 0 {
		t.Errorf("bob still has open invitations: %+v", u.Invites)
	}
}

// testInvitationConcurrentWriters races writers (through several handles
// when the store has peers): all create the same invitation at once (one
// succeeds), then change it from the version each read, reading again on
// ECONFLICT. Every version is written once, and the invitee's log holds
// each change once, in version order.
func testInvitationConcurrentWriters(t *testing.T, su *suite) {
	e := su.setup(t)
	su.require(e, Invitations)
	hs := e.handles(su, 4)
	e.appendOne(e.note("bob"))
	const writers, changes = 4, 6
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	var mu sync.Mutex
	created := 0
	start := make(chan struct{})
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := hs[w%len(hs)]
			is := s.(meetsync.InvitationStore)
			<-start
			inv := e.invitation("inv_race", "alice", "bob", "777")
			r := req(e.invitationEvent(inv, meetsync.TypeInvitationCreated, map[string]any{"writer": w, "expected": 0}))
			if err := s.EventsAppend(e.ctx, []*meetsync.AppendRequest{r}); err != nil {
				errs <- err
				return
			}
			switch {
			case r.Err == nil:
				mu.Lock()
				created++
				mu.Unlock()
			case meetsync.ErrorCode(r.Err) != meetsync.ECONFLICT:
				errs <- r.Err
				return
			}
			for c := 0; c < changes; {
				cur, err := is.InvitationGet(e.ctx, e.app, "inv_race")
				if err != nil {
					errs <- err
					return
				}
				n := *cur
				n.Version, n.Reason = cur.Version+1, fmt.Sprint(w, "/", c)
				r := req(e.invitationEvent(&n, meetsync.TypeInvitationCalling, map[string]any{"writer": w, "expected": cur.Version}))
				if err := s.EventsAppend(e.ctx, []*meetsync.AppendRequest{r}); err != nil {
					errs <- err
					return
				}
				switch {
				case r.Err == nil:
					c++
				case meetsync.ErrorCode(r.Err) != meetsync.ECONFLICT:
					errs <- r.Err
					return
				}
				if e.ctx.Err() != nil {
					errs <- e.ctx.Err()
					return
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatalf("writer: %v", err)
	default:
	}
	if created != 1 {
		t.Errorf("the invitation was created %d times, want once", created)
	}
	total := int64(1 + writers*changes)
	if got := e.invitationGet("inv_race"); got.Version != total {
		t.Errorf("version %d after %d writes", got.Version, total)
	}
	var log []*meetsync.Event
	for _, ev := range e.userFeed("bob") {
		if ev.Type != "app.note" {
			log = append(log, ev)
		}
	}
	if int64(len(log)) != total {
		t.Fatalf("bob's log has %d invitation events, want %d", len(log), total)
	}
	for i, ev := range log {
		var d struct{ Expected int64 }
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			t.Fatal(err)
		}
		if d.Expected != int64(i) {
			t.Errorf("invitation event %d was made from version %d, want %d", i, d.Expected, i)
		}
	}
}

// testInvitationCommandsSupersede: once an invitation closes, the
// invitation commands of that invitation still pending on any device of
// its invitee (any session) are marked acknowledged at the given time,
// not ok, with the note, and returned oldest first; commands acknowledged
// before keep their acknowledgement; other invitations' commands, other
// kinds, other users' and other apps' commands are left alone; doing it
// again resolves nothing more. (Listed under Invitations; it also needs
// the Sessions capability, which stores with invitations have.)
func testInvitationCommandsSupersede(t *testing.T, su *suite) {
	e := su.setup(t)
	su.require(e, Invitations)
	su.require(e, Sessions)
	is := e.s.(meetsync.InvitationStore)
	ss := e.s.(meetsync.SessionStore)
	other := e.newApp("other")
	cmd := func(app, id, user, device, session, typ, inv string) *meetsync.Command {
		return &meetsync.Command{ID: id, AppID: app, UserID: user, DeviceID: device, SessionID: session, Type: typ,
			Data: json.RawMessage(`{"invitation_id":"` + inv + `","meeting_num":"777"}`), CreatedAt: e.tick(time.Second)}
	}
	cmds := []*meetsync.Command{
		cmd(e.app, "cmd_phone", "bob", "phone", "ses_1", meetsync.CommandInvitation, "inv_1"),
		cmd(e.app, "cmd_acked", "bob", "laptop", "ses_1", meetsync.CommandInvitation, "inv_1"),
		cmd(e.app, "cmd_old", "bob", "tablet", "ses_0", meetsync.CommandInvitation, "inv_1"), // an ended session's device
		cmd(e.app, "cmd_desk", "bob", "desk", "ses_1", meetsync.CommandInvitation, "inv_1"),
		cmd(e.app, "cmd_inv2", "bob", "phone", "ses_1", meetsync.CommandInvitation, "inv_2"),
		cmd(e.app, "cmd_cancel", "bob", "phone", "ses_1", meetsync.CommandInvitationCanceled, "inv_1"),
		cmd(e.app, "cmd_logout", "bob", "phone", "ses_1", meetsync.CommandLogout, "inv_1"),
		cmd(e.app, "cmd_carol", "carol", "phone", "ses_9", meetsync.CommandInvitation, "inv_1"),
		cmd(other, "cmd_other", "bob", "phone", "ses_1", meetsync.CommandInvitation, "inv_1"),
	}
	if err := ss.CommandsCreate(e.ctx, cmds); err != nil {
		t.Fatal(err)
	}
	ackedAt := e.tick(time.Second)
	if _, err := ss.CommandAck(e.ctx, e.app, "bob", "laptop", "cmd_acked", true, "", ackedAt); err != nil {
		t.Fatal(err)
	}
	at := e.tick(time.Second)
	const note = "superseded: invitation inv_1 is accepted"
	got, err := is.InvitationCommandsSupersede(e.ctx, e.app, "bob", "inv_1", note, at)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range got {
		ids = append(ids, c.ID)
		if c.AckedAt == nil || !c.AckedAt.Equal(at) || c.AckOK || c.AckError != note || c.Type != meetsync.CommandInvitation ||
			c.UserID != "bob" || c.AppID != e.app {
			t.Errorf("superseded command %+v, want acked at %v, not ok, %q", c, at, note)
		}
	}
	if fmt.Sprint(ids) != "[cmd_phone cmd_old cmd_desk]" {
		t.Errorf("superseded %v, want [cmd_phone cmd_old cmd_desk] (bob's pending invitation commands of inv_1, oldest first)", ids)
	}
	pending := func(app, user, device string) string {
		t.Helper()
		cs, err := ss.CommandList(e.ctx, app, user, device, true)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, c := range cs {
			out = append(out, c.ID)
		}
		return fmt.Sprint(out)
	}
	for _, c := range []struct{ app, user, device, want string }{
		{e.app, "bob", "phone", "[cmd_inv2 cmd_cancel cmd_logout]"},
		{e.app, "bob", "laptop", "[]"},
		{e.app, "bob", "tablet", "[]"},
		{e.app, "bob", "desk", "[]"},
		{e.app, "carol", "phone", "[cmd_carol]"},
		{other, "bob", "phone", "[cmd_other]"},
	} {
		if got := pending(c.app, c.user, c.device); got != c.want {
			t.Errorf("%s's %s pending commands after superseding: %s, want %s", c.user, c.device, got, c.want)
		}
	}
	all, err := ss.CommandList(e.ctx, e.app, "bob", "laptop", false)
	if err != nil || len(all) != 1 || all[0].AckedAt == nil || !all[0].AckedAt.Equal(ackedAt) || !all[0].AckOK || all[0].AckError != "" {
		t.Errorf("a command acked before: %+v %v, want its own acknowledgement", all, err)
	}
	// A device acknowledging a superseded command later keeps meetsync's.
	c, err := ss.CommandAck(e.ctx, e.app, "bob", "phone", "cmd_phone", true, "", e.tick(time.Second))
	if err != nil || c.AckedAt == nil || !c.AckedAt.Equal(at) || c.AckOK || c.AckError != note {
		t.Errorf("acked after superseding: %+v %v", c, err)
	}
	if again, err := is.InvitationCommandsSupersede(e.ctx, e.app, "bob", "inv_1", note, e.tick(time.Second)); err != nil || len(again) != 0 {
		t.Errorf("superseding again: %+v %v, want nothing", again, err)
	}
	if none, err := is.InvitationCommandsSupersede(e.ctx, e.app, "dave", "inv_9", note, e.now); err != nil || len(none) != 0 {
		t.Errorf("superseding an invitation without commands: %+v %v", none, err)
	}
}
