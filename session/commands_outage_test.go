package session_test

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
)

// TestCommandsStreamSurvivesOutage: while the store is unavailable, an
// open GET /v1/client/commands stream stays open and keeps its heartbeats
// (it ended at the first failed read before); a command made during the
// outage reaches the device once the store answers again.
func TestCommandsStreamSurvivesOutage(t *testing.T) {
	e := setup(t)
	e.login(t, "host", "h1")
	guest := e.login(t, "guest", "g1")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.URL+"/v1/client/commands", nil)
	req.Header.Set("Authorization", "Bearer "+guest.ClientToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("stream: status %d", res.StatusCode)
	}
	lines := make(chan string, 256)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	// next returns the next line the stream sends that satisfies ok; the
	// test fails if the stream ends first.
	next := func(what string, ok func(string) bool) string {
		t.Helper()
		for {
			select {
			case l, open := <-lines:
				if !open {
					t.Fatalf("the stream ended while waiting for %s", what)
				}
				if ok(l) {
					return l
				}
			case <-ctx.Done():
				t.Fatalf("no %s: %v", what, ctx.Err())
			}
		}
	}

	outage := error(meetsync.Errorf(meetsync.EUNAVAILABLE, "the database is out of reach"))
	e.commandListErr.Store(&outage)
	waitFor(t, func() bool { return e.commandListFailed.Load() >= 3 })
	// Heartbeats go on during the outage, and a command made meanwhile
	// (the engine's store still works: only the stream's reads fail)
	// wakes the stream to another failed read, not its end.
	next("a heartbeat during the outage", func(l string) bool { return strings.HasPrefix(l, ":") })
	invs := e.invite(t, map[string]any{"meeting_num": "555", "inviter": "host", "invitees": []string{"guest"}})
	failed := e.commandListFailed.Load()
	waitFor(t, func() bool { return e.commandListFailed.Load() > failed })
	next("a heartbeat after the command", func(l string) bool { return strings.HasPrefix(l, ":") })

	e.commandListErr.Store(nil)
	data := next("the invitation command", func(l string) bool { return strings.HasPrefix(l, "data: ") })
	if !strings.Contains(data, invs[0].ID) || !strings.Contains(data, `"type":"invitation"`) {
		t.Fatalf("after the outage: %s, want the invitation %s", data, invs[0].ID)
	}
}
