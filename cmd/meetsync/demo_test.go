package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestDemo runs `meetsync demo` end to end and checks that the newcomer
// sees every flow: the business system's receiver gets verified webhooks
// of each kind, and every user ends logged out.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo takes about 20 s")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errOut syncBuffer
	if err := run(ctx, []string{"demo", "--data", t.TempDir()}, &out, &errOut); err != nil {
		t.Fatalf("demo: %v\n%s\n%s", err, out.String(), errOut.String())
	}
	s := out.String()
	for _, want := range []string{
		"session.login_started", "session.logged_in", "client.initialized",
		"dave login: meeting login failed: the business login was rolled back", // platform down
		"invitation.created", "invitation.accepted", "invitation.rejected", "invitation.joined",
		"meeting.status_changed", "meeting.member_joined",
		"session.logout_started", "session.logged_out",
		"every signature verified: true",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("the demo's output lacks %q", want)
		}
	}
	for _, u := range []string{"alice", "bob", "carol", "dave"} {
		if !strings.Contains(s, u+" ") || !strings.Contains(s, "business=logged_out") {
			t.Errorf("summary for %s missing or not logged out", u)
		}
	}
	if t.Failed() {
		t.Log(s)
	}
}
