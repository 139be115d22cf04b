package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meetsync/meetsync/internal/logtest"
	"github.com/meetsync/meetsync/sqlite"
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
	var out, errOut logtest.Buffer
	data := t.TempDir()
	if err := run(ctx, []string{"demo", "--data", data}, &out, &errOut); err != nil {
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
	// Secrets are encrypted at rest: the endpoint's signing secret and the
	// meeting tokens (the receiver verified every signature all the same).
	db, err := sqlite.Open(filepath.Join(data, "server", "meetsync.db"), sqlite.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	apps, err := db.AppList(ctx)
	if err != nil || len(apps) != 1 {
		t.Fatalf("apps: %v %v", apps, err)
	}
	eps, err := db.EndpointList(ctx, apps[0].ID)
	if err != nil || len(eps) != 1 || len(eps[0].Secrets) != 1 || !strings.HasPrefix(eps[0].Secrets[0].Secret, "enc:v1:") {
		t.Errorf("the endpoint's secret at rest: %+v %v", eps, err)
	}
	if a, err := db.AccountGet(ctx, apps[0].ID, "alice"); err != nil || !strings.HasPrefix(a.UserToken, "enc:v1:") {
		t.Errorf("alice's meeting token at rest: %+v %v", a, err)
	}
	if t.Failed() {
		t.Log(s)
	}
}
