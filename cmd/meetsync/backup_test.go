package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBackupCLI: meetsync backup copies a running server's store and its
// secret key into a new data directory; a server started on the copy has
// every event acknowledged before the backup and none after, and opens the
// secrets sealed with the key.
func TestBackupCLI(t *testing.T) {
	dir := t.TempDir()
	data, dest := filepath.Join(dir, "data"), filepath.Join(dir, "backup")
	s := startServer(t, data, "--allow-private-endpoints")
	key := readKey(t, data)
	c := newClient(t, s.URL, key)
	post := func(i int) {
		t.Helper()
		body := fmt.Sprintf(`{"type":"meeting.status_changed","user_id":"u%d","data":{"status":3}}`, i%7)
		if code, b, err := c.do(t.Context(), "POST", "/v1/events", []byte(body), nil); err != nil || code != 200 {
			t.Fatalf("post: %d %s %v", code, b, err)
		}
	}
	// An endpoint: its signing secret is sealed with the secret key.
	if code, b, err := c.do(t.Context(), "POST", "/v1/endpoints", []byte(`{"url":"http://127.0.0.1:9/hook"}`), nil); err != nil || code != 201 {
		t.Fatalf("create endpoint: %d %s %v", code, b, err)
	}
	for i := range 50 {
		post(i)
	}
	stdout, stderr, code := runBinary(t, dir, nil, "backup", dest, "--data", data)
	if code != 0 || !strings.Contains(stdout, "with its secret key") {
		t.Fatalf("backup: exit %d: %s%s", code, stdout, stderr)
	}
	post(50) // after the backup: not in it
	if st, err := os.Stat(filepath.Join(dest, "secret.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("the backup's secret key: %v %v", st, err)
	}
	// A second backup into the same directory is refused.
	if _, stderr, code := runBinary(t, dir, nil, "backup", dest, "--data", data); code == 0 || !strings.Contains(stderr, "not empty") {
		t.Errorf("backup into a full directory: exit %d: %s", code, stderr)
	}
	if _, stderr, code := runBinary(t, dir, nil, "backup", dest+"2", "--database-url", "postgres://x@127.0.0.1:1/db"); code == 0 || !strings.Contains(stderr, "pg_dump") {
		t.Errorf("backup of PostgreSQL: exit %d: %s", code, stderr)
	}
	if s.term(t) != 0 {
		t.Fatal("the server did not stop cleanly")
	}

	restored := startServer(t, dest, "--allow-private-endpoints")
	rc := newClient(t, restored.URL, key)
	var feed struct {
		Events []struct{ ID string } `json:"events"`
	}
	code2, b, err := rc.do(t.Context(), "GET", "/v1/events?after=0&limit=1000&type=meeting.*", nil, nil)
	if err != nil || code2 != 200 {
		t.Fatalf("feed of the restored server: %d %s %v", code2, b, err)
	}
	if err := json.Unmarshal(b, &feed); err != nil {
		t.Fatal(err)
	}
	if len(feed.Events) != 50 {
		t.Errorf("the restored server has %d status events, want the 50 acknowledged before the backup", len(feed.Events))
	}
	// Its endpoint's secret opens with the copied key: rotating it reads it.
	var eps struct {
		Endpoints []struct{ ID string } `json:"endpoints"`
	}
	_, b, _ = rc.do(t.Context(), "GET", "/v1/endpoints", nil, nil)
	if err := json.Unmarshal(b, &eps); err != nil || len(eps.Endpoints) != 1 {
		t.Fatalf("endpoints of the restored server: %s %v", b, err)
	}
	if code, b, err := rc.do(t.Context(), "POST", "/v1/endpoints/"+eps.Endpoints[0].ID+"/secrets/rotate", []byte(`{}`), nil); err != nil || code != 200 {
		t.Errorf("rotate the restored endpoint's secret: %d %s %v", code, b, err)
	}
}
