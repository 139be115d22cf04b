package meetsync_test

import (
	"testing"
	"time"

	"github.com/meetsync/meetsync"
)

// TestApplyAuthExpiredDeadline: session.auth_expired takes a logged-in
// meeting side to pending with a deadline, the session's LoginDeadline
// (the default login_deadline for a session stored without one) after the
// event was received; a stale one, or one while not logged in, changes
// nothing.
func TestApplyAuthExpiredDeadline(t *testing.T) {
	t.Parallel()
	expired := func(cs int64, recv time.Duration) *meetsync.Event {
		in := &meetsync.EventInput{Type: meetsync.TypeSessionAuthExpired, UserID: "u1", DeviceID: "d1", ClientSeq: &cs}
		ev, err := meetsync.PrepareEvent(in, meetsync.PrepareParams{
			AppID: "app_1", Source: meetsync.SourceClient, ReceivedAt: t0.Add(recv), NewID: func() string { return "evt_a" },
		})
		if err != nil {
			t.Fatalf("PrepareEvent: %v", err)
		}
		return ev
	}
	for _, tc := range []struct {
		name string
		wait meetsync.Duration
		want time.Duration
	}{
		{"session's login deadline", meetsync.Duration(10 * time.Second), 10 * time.Second},
		{"stored without one", 0, time.Duration(meetsync.DefaultAppSettings().LoginDeadline)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := meetsync.NewUserState("app_1", "u1")
			u.Session = meetsync.Session{ID: "ses_1", Business: meetsync.SideLoggedIn, Meeting: meetsync.SideLoggedIn,
				Policy: meetsync.PolicyRollback, LoginDeadline: tc.wait, Devices: []string{"d1"}, Version: 3}
			u.Apply(expired(2, time.Second+1500*time.Nanosecond))
			want := t0.Add(time.Second + time.Microsecond).Add(tc.want)
			if s := u.Session; s.Meeting != meetsync.SidePending || !s.Deadline.Equal(want) || s.Version != 4 || !u.DueAt.Equal(want) {
				t.Fatalf("after auth_expired: %+v due %v, want pending until %v", s, u.DueAt, want)
			}
			// Stale (a lower client_seq), or not logged in: nothing changes.
			before := u.Session
			u.Apply(expired(1, 2*time.Second))
			if u.Session.Version != before.Version || !u.Session.Deadline.Equal(before.Deadline) {
				t.Fatalf("after a second auth_expired: %+v, want %+v", u.Session, before)
			}
		})
	}
}
