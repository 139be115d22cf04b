package client_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/client"
)

// TestCoordinatorIgnoresOtherSessionsLogout: a logout command naming
// another session than the Coordinator's (an earlier session of the
// device, which meetsync supersedes when the new one starts; one that
// reached the stream all the same) does not log the session out: it is
// acknowledged as not carried out, and the session goes on. Its own
// session's logout is obeyed.
func TestCoordinatorIgnoresOtherSessionsLogout(t *testing.T) {
	t.Parallel()
	s := setup(t)
	d := newDevice(t, s, s.URL, "hank", "")
	ctx := ctxT(t)
	if err := d.Login(ctx); err != nil {
		t.Fatal(err)
	}
	st := d.State()
	if st.SessionID == "" || st.Business != meetsync.SideLoggedIn {
		t.Fatalf("state after login: %+v", st)
	}
	foreign := &meetsync.Command{ID: "cmd_earlier_logout", AppID: s.AppID, UserID: "hank", DeviceID: "d1", SessionID: "ses_earlier",
		Type: meetsync.CommandLogout, Data: json.RawMessage(`{"session_id":"ses_earlier","reason":"forced"}`), CreatedAt: time.Now().UTC()}
	if err := s.Store.CommandsCreate(ctx, []*meetsync.Command{foreign}); err != nil {
		t.Fatal(err)
	}
	s.Svc.Commands.Notify()
	var acked *meetsync.Command
	eventually(t, "the other session's logout to be acknowledged", func() bool {
		cmds, err := s.Store.CommandList(ctx, s.AppID, "hank", "d1", false)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cmds {
			if c.ID == foreign.ID && c.AckedAt != nil {
				acked = c
				return true
			}
		}
		return false
	})
	if acked.AckOK || !strings.Contains(acked.AckError, "ses_earlier") || !strings.Contains(acked.AckError, st.SessionID) {
		t.Fatalf("ack of the other session's logout: ok %v, %q; want not ok, naming both sessions", acked.AckOK, acked.AckError)
	}
	if got := d.State(); got.Business != meetsync.SideLoggedIn || got.Meeting != meetsync.SideLoggedIn || got.SessionID != st.SessionID {
		t.Fatalf("state after another session's logout: %+v, want the session going on", got)
	}
	if _, _, logouts := d.sdk.counts(); logouts != 0 {
		t.Fatalf("SDK logouts %d, want 0", logouts)
	}
	if b, m := s.sessionOf(t, "hank"); b != meetsync.SideLoggedIn || m != meetsync.SideLoggedIn {
		t.Fatalf("server session %s/%s", b, m)
	}
	// The session still works, and its own logout is obeyed.
	d.sdk.status(meetsync.StatusIdle, 0, "")
	d.sync(t)
	if _, err := s.app().Logout(ctx, "hank", client.LogoutRequest{Reason: "admin"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the device to log out", func() bool { return d.State().Business == meetsync.SideLoggedOut })
	if _, _, logouts := d.sdk.counts(); logouts != 1 {
		t.Fatalf("SDK logouts %d, want 1", logouts)
	}
	s.sessionEnded(t, "hank")
}
