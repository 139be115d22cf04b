package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/meetsync/meetsync/internal/pgtest"
)

// withPassword adds a password to a database URL (the test server trusts
// every connection, so it is only there to be kept out of the logs).
func withPassword(t *testing.T, raw, password string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), password)
	return u.String()
}

// TestServePostgres runs the binary on PostgreSQL: migrate, serve (and
// refusing to serve an unmigrated database with --no-migrate), the admin
// commands, the environment variable, and a second replica joining the
// first one's app.
func TestServePostgres(t *testing.T) {
	t.Parallel()
	const secret = "hunter2-not-logged"
	db := withPassword(t, pgtest.NewDatabase(t), secret)
	dir := t.TempDir()

	_, stderr, code := runBinary(t, dir, nil, "serve", "--addr", "127.0.0.1:0", "--data", filepath.Join(dir, "a"), "--database-url", db, "--no-migrate")
	if code == 0 || !strings.Contains(stderr, "meetsync migrate") || !strings.Contains(stderr, "0001_core") {
		t.Errorf("serve --no-migrate on an empty database: exit %d, log:\n%s", code, stderr)
	}
	stdout, stderr, code := runBinary(t, dir, nil, "migrate", "--database-url", db)
	if code != 0 || !strings.Contains(stdout, "applied 0001_core\napplied 0002_delivery\napplied 0003_sessions\napplied 0004_event_types\n"+
		"applied 0005_invitations\napplied 0006_retention\napplied 0007_user_status\napplied 0008_feed_positions\napplied 0009_secret_key_check\n") || !strings.Contains(stdout, "up to date") {
		t.Fatalf("migrate: exit %d\n%s\n%s", code, stdout, stderr)
	}
	stdout, _, code = runBinary(t, dir, []string{"MEETSYNC_DATABASE_URL=" + db}, "migrate")
	if code != 0 || strings.Contains(stdout, "applied") || !strings.Contains(stdout, "up to date (9 migrations)") {
		t.Errorf("migrate again (URL from the environment): exit %d\n%s", code, stdout)
	}
	// A libpq keyword/value string names the same database.
	pu, err := url.Parse(db)
	if err != nil {
		t.Fatal(err)
	}
	pw, _ := pu.User.Password()
	kv := fmt.Sprintf("host=%s port=%s user=%s password='%s' dbname=%s", pu.Hostname(), pu.Port(), pu.User.Username(), pw, strings.TrimPrefix(pu.Path, "/"))
	if kvOut, kvErr, code := runBinary(t, dir, nil, "migrate", "--database-url", kv); code != 0 || !strings.Contains(kvOut, "up to date (9 migrations)") ||
		strings.Contains(kvOut+kvErr, secret) {
		t.Errorf("migrate with a keyword/value string: exit %d\n%s\n%s", code, kvOut, kvErr)
	}
	for _, out := range []string{stdout, stderr} {
		if strings.Contains(out, secret) {
			t.Errorf("the output shows the database password:\n%s", out)
		}
	}

	dataA := filepath.Join(dir, "a")
	a := startServer(t, dataA, "--database-url", db, "--no-migrate", "--allow-private-endpoints")
	key := readKey(t, dataA)
	c := newClient(t, a.URL, key)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	status, body, err := c.do(ctx, http.MethodPost, "/v1/events", []byte(`{"type":"meeting.status_changed","user_id":"u1","device_id":"d","client_seq":1,"data":{"status":"in_meeting"}}`), nil)
	if err != nil || status != http.StatusOK {
		t.Fatalf("ingest: %d %s %v", status, body, err)
	}

	// A second replica, configured by the environment, with a data
	// directory of its own: it joins the existing app (no new bootstrap).
	// Without the first one's secret key it refuses to start.
	dataB := filepath.Join(dir, "b")
	envB := []string{"MEETSYNC_DATABASE_URL=" + db, "MEETSYNC_ADDR=127.0.0.1:0", "MEETSYNC_DATA=" + dataB}
	if _, stderr, code := runBinary(t, dir, envB, "serve"); code == 0 || !strings.Contains(stderr, "the store is not new") {
		t.Errorf("a replica without the secret key: exit %d: %s", code, stderr)
	}
	// Nor with another key: the store's check value does not open with it.
	// A store from before check values has none: then a secret it keeps
	// (an endpoint's signing secret here) must open, and the first start
	// with the right key writes the check value.
	if status, body, err := c.do(ctx, http.MethodPost, "/v1/endpoints", []byte(`{"url":"http://127.0.0.1:9/meetsync"}`), nil); err != nil || status != http.StatusCreated {
		t.Fatalf("create endpoint: %d %s %v", status, body, err)
	}
	wrongKey := filepath.Join(dir, "wrong.key")
	if err := os.WriteFile(wrongKey, []byte("BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	admin, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	for _, dropCheck := range []bool{false, true} {
		if dropCheck {
			if _, err := admin.Exec(ctx, "DELETE FROM secret_key_check"); err != nil {
				t.Fatal(err)
			}
		}
		if _, stderr, code := runBinary(t, dir, append(envB, "MEETSYNC_SECRET_KEY_FILE="+wrongKey), "serve"); code == 0 ||
			!strings.Contains(stderr, "is not the key this store's secrets are encrypted with") {
			t.Errorf("a replica with another secret key (check value dropped: %v): exit %d: %s", dropCheck, code, stderr)
		}
	}
	envB = append(envB, "MEETSYNC_SECRET_KEY_FILE="+filepath.Join(dataA, "secret.key"))
	b := &server{proc: startProc(t, "", envB, "serve"), Data: dataB}
	b.waitReady(t)
	if _, err := os.Stat(filepath.Join(dataB, "bootstrap-key")); !os.IsNotExist(err) {
		t.Errorf("the second replica bootstrapped again: %v", err)
	}
	var checks int
	if err := admin.QueryRow(ctx, "SELECT count(*) FROM secret_key_check").Scan(&checks); err != nil || checks != 1 {
		t.Errorf("after a start with the right key the store has %d check values (%v), want 1", checks, err)
	}
	cb := newClient(t, b.URL, key)
	var user struct {
		LastSeq int64 `json:"last_seq"`
		Meeting struct{ Status string }
	}
	cb.get(t, "/v1/users/u1", &user)
	if user.LastSeq != 1 || user.Meeting.Status != "in_meeting" {
		t.Errorf("the second replica sees user u1 as %+v", user)
	}

	stdout, stderr, code = runBinary(t, dir, nil, "apps", "create", "other", "--database-url", db)
	if code != 0 || !strings.HasPrefix(stdout, "msk_") {
		t.Fatalf("apps create on PostgreSQL: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if name := newClient(t, b.URL, strings.TrimSpace(stdout)).appName(t); name != "other" {
		t.Errorf("the new app's key names app %q", name)
	}
	stdout, _, code = runBinary(t, dir, nil, "apps", "list", "--database-url", db)
	if code != 0 || !strings.Contains(stdout, "default") || !strings.Contains(stdout, "other") {
		t.Errorf("apps list: exit %d\n%s", code, stdout)
	}
	_, stderr, code = runBinary(t, dir, nil, "apps", "list", "--database-url", "mysql://x")
	if code == 0 || !strings.Contains(stderr, "postgres://") {
		t.Errorf("apps list with a bad URL: exit %d\n%s", code, stderr)
	}
	for _, s := range []*server{a, b} {
		if code := s.term(t); code != 0 {
			t.Errorf("SIGTERM: exit %d; log:\n%s", code, s.stderr.String())
		}
		if log := s.stderr.String(); strings.Contains(log, secret) || !strings.Contains(log, `kind=postgres`) {
			t.Errorf("the log shows the password, or not the store:\n%s", log)
		}
	}
}

// TestRunSingleton runs two in-process servers on one database: a
// singleton job runs on one of them at a time, and moves to the other
// when its server stops. With SQLite it simply runs.
func TestRunSingleton(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var running, most atomic.Int64
	started := make(chan int, 4)
	var mains []*Main
	keyFile := sharedSecretKey(t, t.TempDir())
	for i := range 2 {
		m := NewMain()
		m.Config.Addr, m.Config.Data, m.Config.DatabaseURL = "127.0.0.1:0", t.TempDir(), db
		m.Config.SecretKeyFile = keyFile
		m.Logger = newLogger(m.Config, io.Discard)
		if err := m.Run(ctx); err != nil {
			t.Fatal(err)
		}
		mains = append(mains, m)
		m.RunSingleton("job", func(ctx context.Context) {
			n := running.Add(1)
			for x := most.Load(); n > x && !most.CompareAndSwap(x, n); x = most.Load() {
			}
			started <- i
			<-ctx.Done()
			running.Add(-1)
		})
	}
	var closeOnce [2]sync.Once
	closeMain := func(i int) { closeOnce[i].Do(func() { mains[i].Close() }) }
	defer func() { closeMain(0); closeMain(1) }()
	wait := func() int {
		select {
		case i := <-started:
			return i
		case <-ctx.Done():
			t.Fatal("the job did not start")
			return -1
		}
	}
	first := wait()
	closeMain(first)
	if second := wait(); second == first {
		t.Errorf("the job started again on the stopped server")
	}
	if most.Load() != 1 {
		t.Errorf("the job ran on %d servers at once", most.Load())
	}

	m := NewMain()
	m.Config.Addr, m.Config.Data = "127.0.0.1:0", t.TempDir()
	m.Logger = newLogger(m.Config, io.Discard)
	if err := m.Run(ctx); err != nil {
		t.Fatal(err)
	}
	ran := make(chan struct{})
	m.RunSingleton("job", func(ctx context.Context) { close(ran); <-ctx.Done() })
	select {
	case <-ran:
	case <-ctx.Done():
		t.Error("with SQLite, the job did not run")
	}
	if err := m.Close(); err != nil {
		t.Error(err)
	}
}

// TestReplicaWakeups runs two in-process servers on one database and
// checks that each is woken by the other's commits (LISTEN/NOTIFY): an
// event ingested on A reaches an SSE stream held by B, and, with A's
// dispatcher stopped, B delivers A's new events and the deliveries
// replayed through A, promptly (the dispatchers' idle poll is 30 s, longer
// than this test's deadline).
func TestReplicaWakeups(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	var mains []*Main
	keyFile := sharedSecretKey(t, t.TempDir())
	for range 2 {
		m := NewMain()
		m.Config.Addr, m.Config.Data, m.Config.DatabaseURL, m.Config.AllowPrivateEndpoints = "127.0.0.1:0", t.TempDir(), db, true
		m.Config.SecretKeyFile = keyFile
		m.Logger = newLogger(m.Config, io.Discard)
		if err := m.Run(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		mains = append(mains, m)
	}
	a, b := mains[0], mains[1]
	key := readKey(t, a.Config.Data)
	ca := newClient(t, "http://"+a.Listener.Addr().String(), key)
	cb := newClient(t, "http://"+b.Listener.Addr().String(), key)

	hooks := make(chan string, 10)
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hooks <- r.Header.Get("webhook-id")
		w.WriteHeader(http.StatusNoContent)
	}))
	defer rc.Close()
	status, body, err := ca.do(ctx, http.MethodPost, "/v1/endpoints", []byte(`{"url":"`+rc.URL+`","debounce_ms":0}`), nil)
	if err != nil || status != http.StatusCreated {
		t.Fatalf("create endpoint: %d %s %v", status, body, err)
	}
	var ep struct{ ID string }
	if err := json.Unmarshal(body, &ep); err != nil {
		t.Fatal(err)
	}

	// B's stream, from the current end of the feed.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, cb.base+"/v1/events/stream", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("stream: %v %v", resp, err)
	}
	defer resp.Body.Close()
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		buf := make([]byte, 64<<10)
		var pending string
		for {
			n, err := resp.Body.Read(buf)
			pending += string(buf[:n])
			for {
				i := strings.IndexByte(pending, '\n')
				if i < 0 {
					break
				}
				lines <- pending[:i]
				pending = pending[i+1:]
			}
			if err != nil {
				return
			}
		}
	}()
	// The stream is open (its first line came) before anything is posted.
	select {
	case <-lines:
	case <-ctx.Done():
		t.Fatal("the stream sent nothing")
	}

	// A's dispatcher stops: only B can deliver.
	a.Delivery.Close(time.Second)
	a.Delivery = nil

	var id string
	awaitHook := func(what string) {
		t.Helper()
		select {
		case got := <-hooks:
			if got != id {
				t.Errorf("%s: webhook %s, want %s", what, got, id)
			}
		case <-ctx.Done():
			t.Fatalf("%s: B did not deliver", what)
		}
	}
	// Twice: the stream's first read may see the first event without a
	// wake-up; the second it sees only if woken.
	for n := range 2 {
		status, body, err = ca.do(ctx, http.MethodPost, "/v1/events", []byte(`{"type":"app.note","user_id":"u1","data":{"n":`+strconv.Itoa(n)+`}}`), nil)
		if err != nil || status != http.StatusOK {
			t.Fatalf("ingest on A: %d %s %v", status, body, err)
		}
		var res struct{ Events []struct{ ID string } }
		if err := json.Unmarshal(body, &res); err != nil || len(res.Events) != 1 {
			t.Fatalf("ingest on A: %s %v", body, err)
		}
		id = res.Events[0].ID
		for seen := false; !seen; {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatal("B's stream ended")
				}
				seen = strings.HasPrefix(l, "data: ") && strings.Contains(l, id)
			case <-ctx.Done():
				t.Fatalf("event %d ingested on A did not reach B's stream", n+1)
			}
		}
		awaitHook(fmt.Sprintf("event %d ingested on A", n+1))
	}

	// A replay through A's API wakes B's dispatcher.
	var list struct{ Deliveries []struct{ ID, Status string } }
	for list.Deliveries == nil || list.Deliveries[0].Status != "delivered" {
		ca.get(t, "/v1/endpoints/"+ep.ID+"/deliveries?limit=1", &list)
		if ctx.Err() != nil {
			t.Fatalf("the delivery was not recorded: %+v", list)
		}
		time.Sleep(10 * time.Millisecond) // polling, bounded by ctx
	}
	status, body, err = ca.do(ctx, http.MethodPost, "/v1/deliveries/"+list.Deliveries[0].ID+"/replay", nil, nil)
	if err != nil || status >= 300 {
		t.Fatalf("replay on A: %d %s %v", status, body, err)
	}
	awaitHook("the delivery replayed on A")
}

// TestServePostgresUnavailable takes the database away from a running
// server (no new connections, its own ended): requests that need it are
// refused with 503 unavailable and a Retry-After, not 500, the log says so
// once rather than per request and never as an internal error, and once the
// database is back the same requests succeed.
func TestServePostgresUnavailable(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dbURL := pgtest.NewDatabase(t)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	dbName := strings.TrimPrefix(u.Path, "/")
	u.Path = "/postgres" // a database may not refuse its own connections
	admin, err := pgx.Connect(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())

	data := filepath.Join(t.TempDir(), "a")
	s := startServer(t, data, "--database-url", dbURL)
	key := readKey(t, data)
	ingest := func() (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/v1/events",
			strings.NewReader(`{"type":"app.note","user_id":"u1","data":{}}`))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	if resp, body := ingest(); resp.StatusCode != http.StatusOK {
		t.Fatalf("ingest: %d %s", resp.StatusCode, body)
	}

	if _, err := admin.Exec(ctx, fmt.Sprintf(`ALTER DATABASE %q ALLOW_CONNECTIONS false`, dbName)); err != nil {
		t.Fatal(err)
	}
	restore := func() {
		if _, err := admin.Exec(context.Background(), fmt.Sprintf(`ALTER DATABASE %q ALLOW_CONNECTIONS true`, dbName)); err != nil {
			t.Error(err)
		}
	}
	defer restore()
	if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = $1`, dbName); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		resp, body := ingest()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" ||
			!strings.Contains(body, `"code":"unavailable"`) {
			t.Errorf("ingest %d without the database: %d (Retry-After %q) %s; want 503 unavailable, Retry-After 1",
				i, resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
	}
	restore()
	if resp, body := ingest(); resp.StatusCode != http.StatusOK {
		t.Errorf("ingest once the database is back: %d %s", resp.StatusCode, body)
	}
	if code := s.term(t); code != 0 {
		t.Errorf("SIGTERM: exit %d", code)
	}
	log := s.stderr.String()
	// Rate-limited: fewer lines than refused requests (one per 10 s; a
	// slow machine may cross into a second window, never five).
	if n := strings.Count(log, `msg="store unavailable"`); n < 1 || n >= 5 || strings.Contains(log, "internal error") {
		t.Errorf("the log has %d store-unavailable lines for 5 refused requests (want fewer, at least 1) or an internal error:\n%s", n, log)
	}
}
