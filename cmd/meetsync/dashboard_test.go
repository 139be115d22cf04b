package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// nodeBinary returns the path of node (18 or later: fetch and web
// streams), skipping the test without one unless CI=true.
func nodeBinary(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("node is not installed (.ci/run installs it); the dashboard's JavaScript is tested with it")
		}
		t.Skip("node is not installed")
	}
	out, err := exec.Command(node, "--version").Output()
	var major int
	if err == nil {
		_, err = fmt.Sscanf(strings.TrimPrefix(strings.TrimSpace(string(out)), "v"), "%d", &major)
	}
	if err != nil || major < 18 {
		t.Fatalf("node %q (%v): the JavaScript tests need node 18 or later (fetch, web streams)", strings.TrimSpace(string(out)), err)
	}
	return node
}

// TestDashboard runs the dashboard's API module (dashboard/static/api.js)
// in node against the real binary: the page and its modules served, the
// live event stream and its resumption, users, the feed, and a webhook
// receiver's dead letters shown with their attempts, replayed and
// recovered (dashboard/testdata/api_test.mjs).
func TestDashboard(t *testing.T) {
	runDashboardScript(t, "api_test.mjs")
}

// TestJSClient runs meetsync's JavaScript client for client apps
// (dashboard/static/meetsync-client.js) in node against the real binary:
// the seed's init and login reports, the outbox through a network drop and
// a reload (in order, none lost, none stale, a refused event dropped), the
// logout command acknowledged, a 401 pausing the outbox until the next
// session (dashboard/testdata/client_test.mjs).
func TestJSClient(t *testing.T) {
	runDashboardScript(t, "client_test.mjs")
}

// TestDashboardUI runs the dashboard page itself (index.html and app.js)
// in jsdom against the real binary: sign-in, the users table and the event
// log updating live, a user's page, an endpoint's dead letters replayed
// with the page's button, sign-out (dashboard/testdata/ui_test.mjs).
func TestDashboardUI(t *testing.T) {
	if _, err := os.Stat(filepath.Join(dashboardTestdata, "node_modules", "jsdom")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("jsdom is not installed: run npm ci in %s (.ci/run does)", dashboardTestdata)
		}
		t.Skipf("jsdom is not installed (npm ci in %s)", dashboardTestdata)
	}
	runDashboardScript(t, "ui_test.mjs")
}

var dashboardTestdata = filepath.Join("..", "..", "dashboard", "testdata")

// runDashboardScript starts meetsync (one attempt per delivery, so a
// failed one is dead at once) and a webhook receiver that answers 500
// until it is POSTed /ok, and runs script with node against them.
func runDashboardScript(t *testing.T, script string) {
	node := nodeBinary(t)
	var ok atomic.Bool
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/ok":
			ok.Store(true)
		case r.URL.Path == "/hook" && !ok.Load():
			http.Error(w, "receiver down", http.StatusInternalServerError)
		}
	}))
	defer recv.Close()
	data := filepath.Join(t.TempDir(), "data")
	s := startServer(t, data, "--allow-private-endpoints", "--retry-schedule", "0s")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join(dashboardTestdata, script))
	cmd.Env = append(baseEnv(), "MEETSYNC_URL="+s.URL, "MEETSYNC_KEY="+readKey(t, data), "RECEIVER_URL="+recv.URL)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node %s: %v\n%s", script, err, out)
	}
	if !strings.HasPrefix(string(out), "ok: ") {
		t.Fatalf("node %s printed %q, want ok: N checks", script, out)
	}
	t.Logf("%s: %s", script, strings.TrimSpace(string(out)))
}
