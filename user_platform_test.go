package meetsync_test

import (
	"testing"
	"time"

	"github.com/meetsync/meetsync"
)

// member is the platform's word that u1 joined (or left) meeting m-A at
// t0+at, stamped in milliseconds as platform callbacks are, with a grace
// period of 30 s.
func member(joined bool, at time.Duration) *meetsync.Event {
	typ := meetsync.TypeMeetingMemberLeft
	if joined {
		typ = meetsync.TypeMeetingMemberJoined
	}
	when := t0.Add(at).Truncate(time.Millisecond)
	ev := meetsync.NewServerEvent("app_1", "u1", typ, meetsync.SourcePlatform, map[string]any{"meeting_num": "m-A"}, t0.Add(at))
	ev.OccurredAt = when
	ev.Effects = &meetsync.EventEffects{Member: &meetsync.Membership{MeetingNum: "m-A", Joined: joined, CheckAt: when.Add(30 * time.Second)}}
	return ev
}

// TestPlatformWord: what the reconciler does after the grace period, from
// the platform's member events and the devices' reports. The platform's
// membership wins both ways, except over a device that reported after it.
func TestPlatformWord(t *testing.T) {
	t.Parallel()
	type want struct {
		contradicted int  // devices corrected to idle
		unreported   bool // the meeting reported on @platform
	}
	check := func(t *testing.T, u *meetsync.UserState, w want) {
		t.Helper()
		if got := len(u.ContradictedDevices()); got != w.contradicted {
			t.Errorf("%d contradicted devices, want %d", got, w.contradicted)
		}
		if got := u.UnreportedMeeting(); got != w.unreported {
			t.Errorf("unreported meeting %v, want %v", got, w.unreported)
		}
		if due := w.contradicted > 0 || w.unreported; due != u.DueAt.Equal(u.Platform.CheckAt) || due == u.DueAt.IsZero() {
			t.Errorf("due at %v (platform check at %v), want due %v", u.DueAt, u.Platform.CheckAt, due)
		}
	}
	t.Run("joined, no device", func(t *testing.T) {
		u := meetsync.NewUserState("app_1", "u1")
		u.Apply(member(true, 0))
		check(t, u, want{unreported: true})
	})
	t.Run("joined, a device idle since before", func(t *testing.T) {
		u := meetsync.NewUserState("app_1", "u1")
		u.Apply(report(t, "A", 1, "idle", 0, 0))
		u.Apply(member(true, time.Second))
		check(t, u, want{unreported: true})
		u.Apply(report(t, "A", 2, "in_meeting", 2*time.Second, 2*time.Second)) // the device reports it after all
		check(t, u, want{})
	})
	t.Run("joined, then a device said idle", func(t *testing.T) {
		u := meetsync.NewUserState("app_1", "u1")
		u.Apply(member(true, 0))
		u.Apply(report(t, "A", 1, "idle", time.Second, time.Second)) // left; the platform's leave is late
		check(t, u, want{})
	})
	t.Run("reported on the platform's device, then left", func(t *testing.T) {
		u := meetsync.NewUserState("app_1", "u1")
		u.Apply(member(true, 0))
		u.Apply(meetsync.NewStatusEvent("app_1", "u1", meetsync.PlatformDeviceID, meetsync.StatusInMeeting, meetsync.ReasonReconciled, "m-A",
			meetsync.SourceSystem, t0.Add(31*time.Second)))
		if u.Status != meetsync.StatusInMeeting || u.DeviceID != meetsync.PlatformDeviceID {
			t.Fatalf("status %v from %q", u.Status, u.DeviceID)
		}
		check(t, u, want{})
		u.Apply(member(false, time.Minute))
		check(t, u, want{contradicted: 1})
	})
	t.Run("left in the same millisecond as a device's report", func(t *testing.T) {
		u := meetsync.NewUserState("app_1", "u1")
		u.Apply(report(t, "A", 1, "in_meeting", 500*time.Microsecond, 500*time.Microsecond))
		u.Apply(member(false, 900*time.Microsecond)) // stamped t0.000: a tie, the platform wins
		check(t, u, want{contradicted: 1})
		u.Apply(report(t, "A", 2, "in_meeting", 1500*time.Microsecond, 1500*time.Microsecond)) // the next millisecond: believed
		check(t, u, want{})
	})
	t.Run("left, a device in the meeting since before", func(t *testing.T) {
		u := meetsync.NewUserState("app_1", "u1")
		u.Apply(report(t, "A", 1, "in_meeting", 0, 0))
		u.Apply(report(t, "B", 1, "idle", 0, 0))
		u.Apply(member(false, time.Second))
		check(t, u, want{contradicted: 1})
	})
}
