package session_test

import (
	"testing"
	"time"
)

// TestAuthExpiredGetsDeadline: session.auth_expired alone takes a
// logged-in meeting side back to pending with a deadline, the session's
// login_deadline from when meetsync received the event (docs/sessions.md:
// no report leaves a session pending without a deadline), and the policy
// resolves it if the SDK does not log in again by then; a login report in
// time makes it consistent again and clears the deadline.
func TestAuthExpiredGetsDeadline(t *testing.T) {
	expire := func(t *testing.T, e *env, user string) (string, time.Time) {
		t.Helper()
		lr := e.login(t, user, "p1")
		e.reportLogin(t, lr.ClientToken, map[string]any{"ok": true})
		e.want(t, e.do(t, "POST", "/v1/client/events", lr.ClientToken, map[string]any{"type": "session.auth_expired", "client_seq": 1}), 200)
		s := e.session(t, user)
		if s.Meeting != "pending" || s.Deadline == nil {
			t.Fatalf("after auth_expired: %+v, want pending with a deadline", s)
		}
		var feed struct {
			Events []struct {
				Type       string    `json:"type"`
				ReceivedAt time.Time `json:"received_at"`
			} `json:"events"`
		}
		e.want(t, e.do(t, "GET", "/v1/events?limit=1000&type=session.auth_expired&user_id="+user, e.Key, nil), 200).decode(t, &feed)
		if len(feed.Events) != 1 {
			t.Fatalf("auth_expired events %+v", feed.Events)
		}
		received := feed.Events[0].ReceivedAt
		if want := received.Add(10 * time.Second); !s.Deadline.Equal(want) {
			t.Fatalf("deadline %v, want the login deadline (10s) after the event was received (%v)", s.Deadline, want)
		}
		return lr.ClientToken, *s.Deadline
	}
	for _, tc := range []struct{ policy, business, meeting, event string }{
		{"rollback", "logged_out", "logged_out", "session.rolled_back"},
		{"degrade", "logged_in", "failed", "session.degraded"},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			e := setup(t)
			e.want(t, e.do(t, "PATCH", "/v1/app", e.Key, map[string]any{"login_deadline": "10s", "session_policy": tc.policy}), 200)
			tok, deadline := expire(t, e, "ana")
			// A failure report keeps that deadline.
			if s := e.reportLogin(t, tok, sdkFailed); s.Meeting != "pending" || s.Deadline == nil || !s.Deadline.Equal(deadline) {
				t.Fatalf("failure report after auth_expired: %+v, want pending until %v", s, deadline)
			}
			e.advance(t, 11*time.Second)
			if s := e.session(t, "ana"); s.Business != tc.business || s.Meeting != tc.meeting || s.Deadline != nil {
				t.Fatalf("after the deadline: %+v, want %s/%s", s, tc.business, tc.meeting)
			}
			lastOf(t, e.events(t, "ana"), tc.event)
		})
	}
	t.Run("logged in again in time", func(t *testing.T) {
		e := setup(t)
		e.want(t, e.do(t, "PATCH", "/v1/app", e.Key, map[string]any{"login_deadline": "10s"}), 200)
		tok, _ := expire(t, e, "ben")
		if s := e.reportLogin(t, tok, map[string]any{"ok": true}); s.Meeting != "logged_in" || s.Deadline != nil {
			t.Fatalf("login report after auth_expired: %+v, want logged_in without a deadline", s)
		}
		e.advance(t, time.Minute)
		if s := e.session(t, "ben"); s.Business != "logged_in" || s.Meeting != "logged_in" {
			t.Fatalf("session %+v, want still logged in", s)
		}
	})
}
