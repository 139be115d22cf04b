package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestCLIRemote drives the endpoints and deliveries commands of the real
// binary against a running server: an endpoint created, listed, shown,
// disabled and enabled, deleted; a dead delivery listed with its attempt,
// replayed and recovered once its receiver is back; errors named.
func TestCLIRemote(t *testing.T) {
	var ok atomic.Bool
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !ok.Load() {
			http.Error(w, "receiver down", http.StatusInternalServerError)
		}
	}))
	defer recv.Close()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	s := startServer(t, data, "--allow-private-endpoints", "--retry-schedule", "0s") // one attempt: a failure is dead at once
	env := []string{"MEETSYNC_URL=" + s.URL}
	// cli runs a command (the key: the bootstrap key in --data) and wants exit code 0.
	cli := func(args ...string) string {
		t.Helper()
		stdout, stderr, code := runBinary(t, dir, env, append(args, "--data", data)...)
		if code != 0 {
			t.Fatalf("meetsync %q: exit %d: %s%s", args, code, stdout, stderr)
		}
		return stdout
	}
	fails := func(want string, args ...string) {
		t.Helper()
		stdout, stderr, code := runBinary(t, dir, env, append(args, "--data", data)...)
		if code == 0 || !strings.Contains(stderr, want) {
			t.Errorf("meetsync %q: exit %d, want an error with %q: %s%s", args, code, want, stdout, stderr)
		}
	}
	jsonOf := func(out string, v any) {
		t.Helper()
		if err := json.Unmarshal([]byte(out), v); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, out)
		}
	}

	out := cli("endpoints", "create", recv.URL+"/hook", "--types", "meeting.*, order.paid", "--debounce-ms", "0", "--description", "crm")
	if !strings.Contains(out, "whsec_") || !strings.Contains(out, "meeting.*,order.paid") {
		t.Fatalf("create printed %q", out)
	}
	var list struct {
		Endpoints []struct {
			ID, URL, Description string
			Enabled              bool
		}
	}
	jsonOf(cli("endpoints", "list", "--json"), &list)
	if len(list.Endpoints) != 1 || list.Endpoints[0].Description != "crm" || !list.Endpoints[0].Enabled {
		t.Fatalf("endpoints: %+v", list.Endpoints)
	}
	ep := list.Endpoints[0].ID
	// A test webhook while the receiver is down: reported, exit 1; nothing stored.
	if stdout, stderr, code := runBinary(t, dir, env, "endpoints", "test", ep, "--data", data); code == 0 ||
		!strings.Contains(stdout, "answered 500") || !strings.Contains(stdout, "receiver down") || !strings.Contains(stderr, "not accepted") {
		t.Errorf("endpoints test to a failing receiver: exit %d: %s%s", code, stdout, stderr)
	}
	if out := cli("endpoints", "list"); !strings.Contains(out, ep) || !strings.Contains(out, "enabled") {
		t.Errorf("list table: %q", out)
	}

	// An event, its delivery dead after one failed attempt.
	c := newClient(t, s.URL, readKey(t, data))
	if code, body, err := c.do(t.Context(), "POST", "/v1/events", []byte(`{"type":"meeting.status_changed","user_id":"alice","data":{"status":3}}`), nil); err != nil || code != 200 {
		t.Fatalf("post event: %d %s %v", code, body, err)
	}
	var dead struct {
		Deliveries []struct{ ID, Status string }
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(dead.Deliveries) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no dead delivery after 20 s")
		}
		time.Sleep(50 * time.Millisecond)
		jsonOf(cli("deliveries", "list", ep, "--status", "dead", "--json"), &dead)
	}
	del := dead.Deliveries[0].ID
	if out := cli("deliveries", "show", del); !strings.Contains(out, "dead") || !strings.Contains(out, "500") {
		t.Errorf("show: %q", out)
	}
	ok.Store(true)
	if out := cli("endpoints", "test", ep); !strings.Contains(out, "answered 200") {
		t.Errorf("endpoints test: %q", out)
	}
	if out := cli("deliveries", "replay", del); !strings.Contains(out, "requeued 1") {
		t.Errorf("replay: %q", out)
	}
	var shown struct {
		Delivery struct{ Status string }
		Attempts []struct {
			StatusCode int `json:"status_code"`
		}
	}
	for shown.Delivery.Status != "delivered" {
		if time.Now().After(deadline) {
			t.Fatalf("the replayed delivery is %q after 20 s", shown.Delivery.Status)
		}
		time.Sleep(50 * time.Millisecond)
		jsonOf(cli("deliveries", "show", del, "--json"), &shown)
	}
	if len(shown.Attempts) != 2 || shown.Attempts[1].StatusCode != 200 {
		t.Errorf("attempts: %+v", shown.Attempts)
	}
	if out := cli("endpoints", "recover", ep, "--since", "1h"); !strings.Contains(out, "requeued 0") {
		t.Errorf("recover with nothing dead: %q", out)
	}

	if out := cli("endpoints", "disable", ep); !strings.Contains(out, "disabled") {
		t.Errorf("disable: %q", out)
	}
	if out := cli("endpoints", "show", ep); !strings.Contains(out, "disabled") {
		t.Errorf("show after disable: %q", out)
	}
	cli("endpoints", "enable", ep)
	fails("not found", "deliveries", "show", "del_nope")
	fails("--since", "endpoints", "recover", ep, "--since", "yesterday")
	fails("usage: meetsync endpoints show ID", "endpoints", "show")
	fails("API key", "endpoints", "list", "--key", "msk_"+strings.Repeat("x", 43))
	fails(`unknown endpoints command "frobnicate"`, "endpoints", "frobnicate")
	cli("endpoints", "delete", ep)
	jsonOf(cli("endpoints", "list", "--json"), &list)
	if len(list.Endpoints) != 0 {
		t.Errorf("after delete: %+v", list.Endpoints)
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 1, 2, 15, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"2026-01-01T00:00:00Z": time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		"24h":                  now.Add(-24 * time.Hour),
		"90m":                  now.Add(-90 * time.Minute),
	} {
		if got, err := parseSince(in, now); err != nil || !got.Equal(want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "yesterday", "-1h", "2026-01-01"} {
		if _, err := parseSince(in, now); err == nil {
			t.Errorf("parseSince(%q) accepted", in)
		}
	}
}
