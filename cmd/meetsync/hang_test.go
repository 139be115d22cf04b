package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/meetsync/meetsync/internal/pgtest"
)

// hangDatabase makes the database of dbURL hang: connections stay open
// and nothing answers. With the private server of pgtest it stops the
// server's processes (SIGSTOP: what a network partition looks like to
// meetsync, down to new connections that connect and then wait); on a
// server of TEST_DATABASE_URL, which others may share, it holds every
// table meetsync reads or writes here locked in an open transaction
// instead. It returns what it did and resume, which ends the hang (also
// called at cleanup).
func hangDatabase(t *testing.T, ctx context.Context, dbURL string) (how string, resume func()) {
	t.Helper()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("TEST_DATABASE_URL") == "" {
		var backend int
		if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&backend); err != nil {
			t.Fatal(err)
		}
		procs := serverProcesses(t, backend)
		conn.Close(ctx)
		signal := func(sig syscall.Signal) {
			for _, pid := range procs {
				if err := syscall.Kill(pid, sig); err != nil && err != syscall.ESRCH {
					t.Errorf("kill -%d %d: %v", sig, pid, err)
				}
			}
		}
		resumed := false
		resume = func() {
			if !resumed {
				resumed = true
				signal(syscall.SIGCONT)
			}
		}
		t.Cleanup(resume)
		signal(syscall.SIGSTOP)
		return fmt.Sprintf("stopped the %d processes of the server", len(procs)), resume
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE events, users, idempotency_keys IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume = func() {
		if !resumed {
			resumed = true
			_ = tx.Rollback(context.Background())
			conn.Close(context.Background())
		}
	}
	t.Cleanup(resume)
	return "locked the tables", resume
}

// serverProcesses returns the postmaster of backend (a server process of
// this machine) and all its children, the postmaster first.
func serverProcesses(t *testing.T, backend int) []int {
	t.Helper()
	stat := func(pid int) (comm string, ppid int, err error) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return "", 0, err
		}
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			return "", 0, fmt.Errorf("/proc/%d/stat: %q", pid, s)
		}
		f := strings.Fields(s[end+1:]) // state, ppid, …
		if len(f) < 2 {
			return "", 0, fmt.Errorf("/proc/%d/stat: %q", pid, s)
		}
		ppid, err = strconv.Atoi(f[1])
		return s[open+1 : end], ppid, err
	}
	_, master, err := stat(backend)
	if err != nil {
		t.Fatalf("the database's backend is not a process of this machine: %v", err)
	}
	if comm, _, err := stat(master); err != nil || !strings.HasPrefix(comm, "postgres") {
		t.Fatalf("the parent %d of backend %d is %q (%v), not the postmaster", master, backend, comm, err)
	}
	procs := []int{master}
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		if _, ppid, err := stat(pid); err == nil && ppid == master {
			procs = append(procs, pid)
		}
	}
	return procs
}

// TestServePostgresHang hangs the database under a running server
// (MEETSYNC_STORE_TIMEOUT=300ms): requests that need it are answered 503
// unavailable with Retry-After: 1 once the store timeout passes, instead
// of never (a login too: the session engine's reads are bounded as the
// API's are); the ingest answer says the events may or may not have been
// committed. An SSE stream open since before is not cut. Once the
// database answers again the server does too (the connections that hung
// are replaced, the committer was not held by the commit that hung): the
// refused request, sent again with its Idempotency-Key, is committed, and
// once only; nothing is logged as an internal error.
func TestServePostgresHang(t *testing.T) {
	// Not parallel: with the private server, the hang stops the server
	// every test of this binary shares.
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	dbURL := pgtest.NewDatabase(t)
	data := filepath.Join(t.TempDir(), "a")
	s := &server{proc: startProc(t, "", []string{"MEETSYNC_STORE_TIMEOUT=300ms"},
		"serve", "--addr", "127.0.0.1:0", "--data", data, "--database-url", dbURL,
		"--allow-private-endpoints", "--retry-schedule", "0s,"+strings.Repeat("200ms,", 99)+"200ms"), Data: data}
	s.waitReady(t)
	c := newClient(t, s.URL, readKey(t, data)) // 20 s per request: a deadline, not an expectation

	// A receiver that refuses every webhook: the first event's delivery
	// is retried every 200 ms, so the dispatcher claims during the hang.
	var attempts atomic.Int64
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		attempts.Add(1)
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer receiver.Close()
	if code, body, err := c.do(ctx, http.MethodPost, "/v1/endpoints", []byte(`{"url":"`+receiver.URL+`","debounce_ms":0}`), nil); err != nil || code != http.StatusCreated {
		t.Fatalf("create endpoint: %d %s %v", code, body, err)
	}

	post := func(body, idemKey string) (int, http.Header, []byte) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/v1/events", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+c.key)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", idemKey)
		resp, err := c.hc.Do(req)
		if err != nil {
			t.Fatalf("POST /v1/events: no answer: %v", err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		_, _ = bufio.NewReader(resp.Body).WriteTo(&b)
		return resp.StatusCode, resp.Header, []byte(b.String())
	}
	if code, _, body := post(`{"type":"crm.before","user_id":"u1","id":"before-1"}`, "before"); code != http.StatusOK {
		t.Fatalf("ingest: %d %s", code, body)
	}

	// A stream, open from before the hang to after it.
	sreq, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/v1/events/stream?after=0", nil)
	sreq.Header.Set("Authorization", "Bearer "+c.key)
	sresp, err := (&http.Client{}).Do(sreq)
	if err != nil {
		t.Fatal(err)
	}
	defer sresp.Body.Close()
	if sresp.StatusCode != http.StatusOK {
		t.Fatalf("open stream: %d", sresp.StatusCode)
	}
	streamIDs := make(chan string, 100)
	go func() {
		defer close(streamIDs)
		sc := bufio.NewScanner(sresp.Body)
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var ev struct{ ID string }
				_ = json.Unmarshal([]byte(d), &ev)
				streamIDs <- ev.ID
			}
		}
	}()
	nextOnStream := func(when string) string {
		t.Helper()
		select {
		case id, ok := <-streamIDs:
			if !ok {
				t.Fatalf("the stream ended %s", when)
			}
			return id
		case <-ctx.Done():
			t.Fatalf("no event on the stream %s", when)
			return ""
		}
	}
	if id := nextOnStream("before the hang"); id != "before-1" {
		t.Fatalf("the stream sent %s, want before-1", id)
	}

	waitUntil(t, ctx, "the first webhook attempts", func() bool { return attempts.Load() >= 2 })

	how, resume := hangDatabase(t, ctx, dbURL)
	t.Logf("the hang: %s", how)
	unavailable := func(what string, code int, hdr http.Header, body []byte, want string) {
		t.Helper()
		var e struct {
			Error struct{ Code, Message string }
		}
		_ = json.Unmarshal(body, &e)
		if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") != "1" || e.Error.Code != "unavailable" ||
			!strings.Contains(e.Error.Message, want) {
			t.Errorf("%s while the database hangs: %d (Retry-After %q) %s; want 503 unavailable, Retry-After 1, a message saying %q",
				what, code, hdr.Get("Retry-After"), body, want)
		}
	}
	get := func(path string) (int, http.Header, []byte) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+c.key)
		resp, err := c.hc.Do(req)
		if err != nil {
			t.Fatalf("GET %s: no answer: %v", path, err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		_, _ = bufio.NewReader(resp.Body).WriteTo(&b)
		return resp.StatusCode, resp.Header, []byte(b.String())
	}
	during := `{"type":"crm.during","user_id":"u1","id":"during-1"}`
	code, hdr, body := get("/v1/users/u1")
	unavailable("GET /v1/users/u1", code, hdr, body, "did not answer within 300ms")
	code, hdr, body = post(during, "during")
	unavailable("POST /v1/events", code, hdr, body, "may or may not have been committed")
	code, hdr, body = get("/v1/events/stream") // finding the end of the feed needs the database
	unavailable("GET /v1/events/stream", code, hdr, body, "did not answer within 300ms")
	code, hdr, body = post(during, "during") // the committer goes on failing in time
	unavailable("POST /v1/events again", code, hdr, body, "may or may not have been committed")
	login := func() (int, http.Header, []byte) { // through the session engine
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/v1/users/u2/login", nil)
		req.Header.Set("Authorization", "Bearer "+c.key)
		resp, err := c.hc.Do(req)
		if err != nil {
			t.Fatalf("POST /v1/users/u2/login: no answer: %v", err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		_, _ = bufio.NewReader(resp.Body).WriteTo(&b)
		return resp.StatusCode, resp.Header, []byte(b.String())
	}
	code, hdr, body = login()
	unavailable("POST /v1/users/u2/login", code, hdr, body, "did not answer within 300ms")

	// The dispatcher's claims are bounded too: one of them fails in time
	// (a WARN, the store being unavailable) rather than waiting out the hang.
	waitUntil(t, ctx, "a claim that failed in time", func() bool {
		return strings.Contains(s.stderr.String(), `msg="claim deliveries" err="the store did not answer within 300ms`)
	})

	resume()
	// The first requests after the hang may still meet a connection it
	// broke (503 again): send the same request until it is answered.
	for attempt := 1; ; attempt++ {
		code, _, body := post(during, "during")
		if code == http.StatusOK {
			break
		}
		if code != http.StatusServiceUnavailable || attempt == 50 {
			t.Fatalf("POST /v1/events after the hang, attempt %d: %d %s", attempt, code, body)
		}
		time.Sleep(100 * time.Millisecond) // a pause between retries, as Retry-After asks
	}
	var again struct{ Events []struct{ Duplicate bool } }
	code, _, body = post(during, "during")
	if err := json.Unmarshal(body, &again); code != http.StatusOK || err != nil || len(again.Events) != 1 || !again.Events[0].Duplicate {
		t.Errorf("the same request once more: %d %s; want 200, a duplicate", code, body)
	}
	if code, _, body := post(`{"type":"crm.after","user_id":"u1","id":"after-1"}`, "after"); code != http.StatusOK {
		t.Errorf("a new event after the hang: %d %s", code, body)
	}
	if id := nextOnStream("after the hang"); id != "during-1" {
		t.Errorf("the stream sent %s after the hang, want during-1", id)
	}
	if id := nextOnStream("after the hang"); id != "after-1" {
		t.Errorf("the stream sent %s, want after-1", id)
	}
	var feed struct{ Events []struct{ ID string } }
	c.get(t, "/v1/events?after=0", &feed)
	var ids []string
	for _, ev := range feed.Events {
		ids = append(ids, ev.ID)
	}
	if strings.Join(ids, " ") != "before-1 during-1 after-1" {
		t.Errorf("the feed is %v, want [before-1 during-1 after-1]: each event once", ids)
	}
	if code, _, body := get("/v1/users/u1"); code != http.StatusOK {
		t.Errorf("GET /v1/users/u1 after the hang: %d %s", code, body)
	}
	if code, _, body := login(); code != http.StatusOK {
		t.Errorf("POST /v1/users/u2/login after the hang: %d %s", code, body)
	}

	// The deliveries go on after the hang.
	afterHang := attempts.Load()
	waitUntil(t, ctx, "webhook attempts after the hang", func() bool { return attempts.Load() >= afterHang+2 })

	cancel() // ends the stream
	if code := s.term(t); code != 0 {
		t.Errorf("SIGTERM: exit %d", code)
	}
	log := s.stderr.String()
	if strings.Contains(log, "internal error") || !strings.Contains(log, `msg="store unavailable"`) {
		t.Errorf("the log has an internal error, or no store-unavailable line:\n%s", log)
	}
}

// waitUntil polls cond until it holds; the test fails if ctx ends first.
func waitUntil(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("no %s: %v", what, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
