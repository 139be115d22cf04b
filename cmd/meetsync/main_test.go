package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meetsync/meetsync/internal/logtest"
	"github.com/meetsync/meetsync/internal/pgtest"
)

// The tests of this file run the real meetsync binary (built once per test
// run, with -race when the tests have it) or run() in process. Every server
// listens on 127.0.0.1:0; its address is read from its log.

// TestMain removes the binary built for the tests (and stops the
// PostgreSQL server of the replica tests).
func TestMain(m *testing.M) {
	code := pgtest.Run(m)
	if testBinary.dir != "" {
		os.RemoveAll(testBinary.dir)
	}
	os.Exit(code)
}

var testBinary struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// raceEnabled reports whether this test binary was built with -race.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// goTool returns the go command: the one on PATH, else $GOROOT/bin/go.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if root := os.Getenv("GOROOT"); root != "" {
		return filepath.Join(root, "bin", "go")
	}
	return "go"
}

// meetsyncBinary builds the meetsync command once per test run.
func meetsyncBinary(t testing.TB) string {
	t.Helper()
	testBinary.once.Do(func() {
		dir, err := os.MkdirTemp("", "meetsync-test-bin-")
		if err != nil {
			testBinary.err = err
			return
		}
		testBinary.dir = dir
		path := filepath.Join(dir, "meetsync")
		args := []string{"build", "-o", path}
		if raceEnabled() {
			args = append(args, "-race")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, goTool(), append(args, ".")...)
		if out, err := cmd.CombinedOutput(); err != nil {
			testBinary.err = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		testBinary.path = path
	})
	if testBinary.err != nil {
		t.Fatal(testBinary.err)
	}
	return testBinary.path
}

// baseEnv is the environment of a child process: ours without MEETSYNC_*.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MEETSYNC_") {
			env = append(env, kv)
		}
	}
	return env
}

// proc is a running meetsync process.
type proc struct {
	cmd    *exec.Cmd
	stdout logtest.Buffer
	stderr logtest.Buffer
	done   chan struct{}
	err    error // from Wait, once done is closed
}

// startProc starts the binary in dir ("" for the current directory) with
// extra environment variables. Cleanup kills it if it still runs and checks
// that its output holds no API key and no data race report.
func startProc(t testing.TB, dir string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(meetsyncBinary(t), args...), done: make(chan struct{})}
	p.cmd.Dir = dir
	p.cmd.Env = append(baseEnv(), env...)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		checkLog(t, "meetsync "+strings.Join(args, " "), p.stderr.String())
	})
	return p
}

// checkLog fails t if a process's stderr shows an API key, a data race or a panic.
func checkLog(t testing.TB, what, log string) {
	t.Helper()
	if strings.Contains(log, "msk_") {
		t.Errorf("%s: the log shows an API key (msk_…):\n%s", what, log)
	}
	for _, bad := range []string{"WARNING: DATA RACE", "panic:"} {
		if strings.Contains(log, bad) {
			t.Errorf("%s: the log shows %q:\n%s", what, bad, log)
		}
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL (if the process still runs) and waits for it to end.
func (p *proc) kill() {
	if !p.exited() {
		_ = p.cmd.Process.Kill()
	}
	<-p.done
}

// wait waits up to d for the process to exit and returns its exit code.
func (p *proc) wait(t testing.TB, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		p.kill()
		t.Fatalf("meetsync did not exit within %v; log:\n%s", d, p.stderr.String())
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	} else if p.err != nil {
		t.Fatalf("wait: %v", p.err)
	}
	return 0
}

// runBinary runs the binary to completion (within 60 s) and returns its
// stdout, stderr and exit code.
func runBinary(t testing.TB, dir string, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	p := startProc(t, dir, env, args...)
	code = p.wait(t, 60*time.Second)
	return p.stdout.String(), p.stderr.String(), code
}

// server is a `meetsync serve` process that was ready once.
type server struct {
	*proc
	URL  string
	Data string
}

var listeningRE = regexp.MustCompile(`msg="meetsync listening" url=(http://\S+)`)

// startServer runs `meetsync serve --addr 127.0.0.1:0 --data data` plus
// extra arguments and waits until it is ready.
func startServer(t testing.TB, data string, extra ...string) *server {
	t.Helper()
	args := append([]string{"serve", "--addr", "127.0.0.1:0", "--data", data}, extra...)
	s := &server{proc: startProc(t, "", nil, args...), Data: data}
	s.waitReady(t)
	return s
}

// waitReady polls the log for the listening address, then /readyz, for up
// to 30 s.
func (s *server) waitReady(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	hc := &http.Client{Timeout: 2 * time.Second}
	defer hc.CloseIdleConnections()
	for {
		if s.exited() {
			t.Fatalf("meetsync exited before it was ready (%v); log:\n%s", s.err, s.stderr.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("meetsync not ready after 30 s; log:\n%s", s.stderr.String())
		}
		if s.URL == "" {
			if m := listeningRE.FindStringSubmatch(s.stderr.String()); m != nil {
				s.URL = m[1]
			}
		}
		if s.URL != "" {
			if resp, err := hc.Get(s.URL + "/readyz"); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return
				}
			}
		}
		time.Sleep(10 * time.Millisecond) // polling interval, with the deadline above
	}
}

// term sends SIGTERM and returns the exit code (within 60 s).
func (s *server) term(t testing.TB) int {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	return s.wait(t, 60*time.Second)
}

// readKey returns the bootstrap key of a data directory.
func readKey(t testing.TB, data string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(data, "bootstrap-key"))
	if err != nil {
		t.Fatal(err)
	}
	key := strings.TrimSpace(string(b))
	if !strings.HasPrefix(key, "msk_") {
		t.Fatalf("bootstrap key %q does not start with msk_", key)
	}
	return key
}

// apiClient calls the HTTP API with a key.
type apiClient struct {
	base, key string
	hc        *http.Client
}

func newClient(t testing.TB, base, key string) *apiClient {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.MaxIdleConnsPerHost = 128
	c := &apiClient{base: base, key: key, hc: &http.Client{Transport: tr, Timeout: 20 * time.Second}}
	t.Cleanup(tr.CloseIdleConnections)
	return c
}

// do sends a request and returns the status and the whole body. An error
// means no complete response was received.
func (c *apiClient) do(ctx context.Context, method, path string, body []byte, hdr http.Header) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, b, nil
}

// get GETs path and decodes a 200 response into v.
func (c *apiClient) get(t testing.TB, path string, v any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	status, body, err := c.do(ctx, http.MethodGet, path, nil, nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	if status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v in %s", path, err, body)
	}
}

// status returns the status code of GET path.
func (c *apiClient) status(t testing.TB, path string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	status, _, err := c.do(ctx, http.MethodGet, path, nil, nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return status
}

// appName returns the name of the app of the client's key.
func (c *apiClient) appName(t testing.TB) string {
	t.Helper()
	var app struct{ Name string }
	c.get(t, "/v1/app", &app)
	return app.Name
}

// clearEnv unsets every MEETSYNC_ variable for the test (restored after).
func clearEnv(t *testing.T) {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "MEETSYNC_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
}

func TestParseFlags(t *testing.T) {
	clearEnv(t)
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		want    func(c Config) string // "" when c is right
		wantErr []string              // substrings of the error
	}{
		{name: "defaults", want: func(c Config) string {
			if c.Addr != "127.0.0.1:8080" || c.Data != "./meetsync-data" || c.ShutdownTimeout != 30*time.Second ||
				c.Synchronous != "FULL" || c.LogLevel != "info" || c.LogFormat != "text" || c.GCPercent != 400 {
				return fmt.Sprintf("defaults are %+v", c)
			}
			return ""
		}},
		{name: "env", env: map[string]string{"MEETSYNC_ADDR": "127.0.0.1:9999", "MEETSYNC_DATA": "/tmp/x", "MEETSYNC_SHUTDOWN_TIMEOUT": "3s", "MEETSYNC_SQLITE_SYNCHRONOUS": "NORMAL"},
			want: func(c Config) string {
				if c.Addr != "127.0.0.1:9999" || c.Data != "/tmp/x" || c.ShutdownTimeout != 3*time.Second || c.Synchronous != "NORMAL" {
					return fmt.Sprintf("env not honoured: %+v", c)
				}
				return ""
			}},
		{name: "flag wins over env", env: map[string]string{"MEETSYNC_ADDR": "127.0.0.1:9999", "MEETSYNC_DATA": "/tmp/env", "MEETSYNC_SHUTDOWN_TIMEOUT": "banana"},
			args: []string{"--addr", "127.0.0.1:7777", "--data=/tmp/flag", "--shutdown-timeout", "5s"},
			want: func(c Config) string {
				if c.Addr != "127.0.0.1:7777" || c.Data != "/tmp/flag" || c.ShutdownTimeout != 5*time.Second {
					return fmt.Sprintf("flags did not win: %+v", c)
				}
				return ""
			}},
		{name: "bad duration in env", env: map[string]string{"MEETSYNC_SHUTDOWN_TIMEOUT": "banana"},
			wantErr: []string{"MEETSYNC_SHUTDOWN_TIMEOUT", `"banana"`}},
		{name: "bad int in env", env: map[string]string{"MEETSYNC_MAX_BATCH_EVENTS": "many"},
			wantErr: []string{"MEETSYNC_MAX_BATCH_EVENTS", `"many"`}},
		{name: "bad log level in env", env: map[string]string{"MEETSYNC_LOG_LEVEL": "loud"}, wantErr: []string{"--log-level", `"loud"`}},
		{name: "bad log format", args: []string{"--log-format", "xml"}, wantErr: []string{"--log-format", `"xml"`}},
		{name: "tls cert without key", args: []string{"--tls-cert", "c.pem"}, wantErr: []string{"--tls-cert and --tls-key"}},
		{name: "empty addr", env: map[string]string{"MEETSYNC_ADDR": ""}, wantErr: []string{"--addr is empty"}},
		{name: "unknown flag", args: []string{"--adr", "x"}, wantErr: []string{"adr"}},
		{name: "positional argument", args: []string{"now"}, wantErr: []string{"serve takes no arguments"}},
		{name: "database url scheme", args: []string{"--database-url", "mysql://db/x"}, wantErr: []string{"--database-url", "postgres://"}},
		{name: "lease not longer than timeout", args: []string{"--delivery-lease", "10s", "--delivery-timeout", "10s"},
			wantErr: []string{"--delivery-lease", "--delivery-timeout"}},
		{name: "gc percent", env: map[string]string{"MEETSYNC_GC_PERCENT": "150"}, want: func(c Config) string {
			if c.GCPercent != 150 {
				return fmt.Sprintf("MEETSYNC_GC_PERCENT not honoured: %d", c.GCPercent)
			}
			return ""
		}},
		{name: "gc percent zero", args: []string{"--gc-percent", "0"}, wantErr: []string{"--gc-percent", "at least 1"}},
		{name: "gc off without a memory limit", env: map[string]string{"GOMEMLIMIT": ""}, args: []string{"--gc-percent=-1"}, wantErr: []string{"--gc-percent -1", "GOMEMLIMIT"}},
		{name: "postgres", env: map[string]string{"MEETSYNC_DATABASE_URL": "postgres://u@h/db", "MEETSYNC_NO_MIGRATE": "true"},
			args: []string{"--delivery-lease", "90s"}, want: func(c Config) string {
				if c.DatabaseURL != "postgres://u@h/db" || !c.NoMigrate || c.DeliveryLease != 90*time.Second {
					return fmt.Sprintf("database settings not honoured: %+v", c)
				}
				return ""
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			m := NewMain()
			err := m.ParseFlags(tt.args, io.Discard)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("no error; config %+v", m.Config)
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not mention %s", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if msg := tt.want(m.Config); msg != "" {
				t.Error(msg)
			}
		})
	}
}

// TestRun covers the commands that need no store, in process.
func TestRun(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		args       []string
		wantErr    bool
		wantHelp   bool
		wantStdout string
		wantStderr []string
	}{
		{args: []string{"version"}, wantStdout: "meetsync " + Version + "\n"},
		{args: []string{"--version"}, wantStdout: "meetsync " + Version + "\n"},
		{args: nil, wantErr: true, wantStderr: []string{"Usage:", "meetsync serve"}},
		{args: []string{"bogus"}, wantErr: true, wantStderr: []string{`unknown command "bogus"`, "Usage:"}},
		{args: []string{"apps"}, wantErr: true, wantStderr: []string{"meetsync apps create NAME", "meetsync apps list"}},
		{args: []string{"keys"}, wantErr: true, wantStderr: []string{"meetsync keys list APP"}},
		{args: []string{"keys", "bogus"}, wantErr: true, wantStderr: []string{`unknown keys command "bogus"`, "meetsync keys revoke APP KEY_ID"}},
		{args: []string{"serve", "extra"}, wantErr: true},
		{args: []string{"receive", "extra"}, wantErr: true},
		{args: []string{"receive", "--status", "99"}, wantErr: true},
		{args: []string{"demo", "extra"}, wantErr: true},
		// Help asked for is not an error (exit 0), and needs no store.
		{args: []string{"apps", "--help"}, wantHelp: true, wantStdout: "usage:\n  meetsync apps create NAME"},
		{args: []string{"keys", "-h"}, wantHelp: true, wantStdout: "usage:\n  meetsync keys create APP"},
		{args: []string{"keys", "revoke", "-h"}, wantHelp: true, wantStderr: []string{"usage: meetsync keys revoke APP KEY_ID", "-data"}},
		{args: []string{"serve", "--help"}, wantHelp: true, wantStderr: []string{"-sqlite-synchronous"}},
		{args: []string{"receive", "-h"}, wantHelp: true, wantStderr: []string{"-secret"}},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		err := run(ctx, tt.args, &stdout, &stderr)
		if tt.wantHelp {
			if !errors.Is(err, errHelp) {
				t.Errorf("run %q: error %v, want the help (exit 0)", tt.args, err)
			}
		} else if (err != nil) != tt.wantErr {
			t.Errorf("run %q: error %v, want error: %v", tt.args, err, tt.wantErr)
		}
		if tt.wantStdout != "" && !strings.HasPrefix(stdout.String(), tt.wantStdout) {
			t.Errorf("run %q: stdout %q, want it to start %q", tt.args, stdout.String(), tt.wantStdout)
		}
		for _, s := range tt.wantStderr {
			if !strings.Contains(stderr.String(), s) {
				t.Errorf("run %q: stderr does not contain %q:\n%s", tt.args, s, stderr.String())
			}
		}
	}
	var stdout bytes.Buffer
	if err := run(ctx, []string{"help"}, &stdout, io.Discard); err != nil || !strings.Contains(stdout.String(), "meetsync keys revoke APP KEY_ID") {
		t.Errorf("help: %v, %q", err, stdout.String())
	}
}

// TestBinaryExitCodes checks what a shell sees: exit codes and streams.
func TestBinaryExitCodes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	stdout, stderr, code := runBinary(t, dir, nil, "version")
	if code != 0 || !strings.HasPrefix(stdout, "meetsync ") {
		t.Errorf("version: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	stdout, stderr, code = runBinary(t, dir, nil, "frobnicate")
	if code == 0 || !strings.Contains(stderr, `unknown command "frobnicate"`) || !strings.Contains(stderr, "Usage:") || stdout != "" {
		t.Errorf("unknown command: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	_, stderr, code = runBinary(t, dir, nil)
	if code == 0 || !strings.Contains(stderr, "Usage:") {
		t.Errorf("no command: exit %d, stderr %q", code, stderr)
	}
	// A bad environment value stops serve before it touches anything.
	data := filepath.Join(dir, "data")
	_, stderr, code = runBinary(t, dir, []string{"MEETSYNC_SHUTDOWN_TIMEOUT=banana"}, "serve", "--addr", "127.0.0.1:0", "--data", data)
	if code == 0 || !strings.Contains(stderr, "MEETSYNC_SHUTDOWN_TIMEOUT") || !strings.Contains(stderr, `"banana"`) {
		t.Errorf("bad env: exit %d, stderr %q", code, stderr)
	}
	if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("bad env: the data directory was created (%v)", err)
	}
	// So does anything else serve can find wrong before opening the store.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--addr", "nonsense"}, "--addr nonsense"},
		{[]string{"--addr", busy.Addr().String()}, "--addr " + busy.Addr().String()},
		{[]string{"--tls-cert", filepath.Join(dir, "no.pem"), "--tls-key", filepath.Join(dir, "no.key")}, "--tls-cert"},
		{[]string{"--sqlite-synchronous", "OFF"}, "--sqlite-synchronous must be FULL, NORMAL or EXTRA"},
		{[]string{"--sqlite-sync-method", "magic"}, "--sqlite-sync-method must be"},
		{[]string{"--sqlite-synchronous", "NORMAL", "--sqlite-sync-method", "fdatasync"}, "applies to --sqlite-synchronous FULL only"},
		{[]string{"--shutdown-timeout", "-5s"}, "--shutdown-timeout must not be negative"},
		{[]string{"--endpoint-disable-after", "0s"}, "--endpoint-disable-after must be positive"},
		{[]string{"--rate-limit-client", "-1"}, "--rate-limit-client are requests a second, 0 (no limit) or more"},
		{[]string{"--rate-limit-key", "NaN"}, "--rate-limit-key and"},
		{[]string{"--cors-origins", "https://app.example.com,app.example.com"}, `--cors-origins: CORS origin "app.example.com" is not an origin`},
	} {
		args := append([]string{"serve", "--data", data}, tc.args...)
		if !slices.Contains(tc.args, "--addr") {
			args = append(args, "--addr", "127.0.0.1:0")
		}
		_, stderr, code = runBinary(t, dir, nil, args...)
		if code == 0 || !strings.Contains(stderr, tc.want) {
			t.Errorf("serve %q: exit %d, want an error with %q: %s", tc.args, code, tc.want, stderr)
		}
		if strings.Contains(stderr, "msg=stopped") {
			t.Errorf("serve %q: logs that it stopped without having started: %s", tc.args, stderr)
		}
		if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("serve %q: the data directory was created (%v)", tc.args, err)
		}
	}
	// Asked-for help exits 0.
	if stdout, _, code := runBinary(t, dir, nil, "apps", "--help"); code != 0 || !strings.Contains(stdout, "meetsync apps list") {
		t.Errorf("apps --help: exit %d, stdout %q", code, stdout)
	}
	// Admin commands never create a store: a mistyped --data is an error.
	_, stderr, code = runBinary(t, dir, nil, "apps", "list", "--data", filepath.Join(dir, "nowhere"))
	if code == 0 || !strings.Contains(stderr, "no meetsync store in") {
		t.Errorf("apps list on a missing store: exit %d, stderr %q", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "nowhere")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("apps list created %s (%v)", filepath.Join(dir, "nowhere"), err)
	}
}

// TestServeNoFlags runs `meetsync serve` in an empty directory with no
// flags (only MEETSYNC_ADDR, so the test does not need port 8080), twice.
func TestServeNoFlags(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := []string{"MEETSYNC_ADDR=127.0.0.1:0"}
	s := &server{proc: startProc(t, dir, env, "serve")}
	s.waitReady(t)
	if strings.HasSuffix(s.URL, ":8080") {
		t.Errorf("MEETSYNC_ADDR was ignored: listening on %s", s.URL)
	}
	data := filepath.Join(dir, "meetsync-data")
	for name, want := range map[string]os.FileMode{".": 0o700 | os.ModeDir, "meetsync.db": 0o600, "bootstrap-key": 0o600, "meetsync.db-wal": 0o600, "secret.key": 0o600} {
		fi, err := os.Stat(filepath.Join(data, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
		} else if fi.Mode() != want {
			t.Errorf("%s has mode %v, want %v", name, fi.Mode(), want)
		}
	}
	key := readKey(t, data)
	c := newClient(t, s.URL, key)
	if name := c.appName(t); name != "default" {
		t.Errorf("the bootstrap key belongs to app %q", name)
	}
	log := s.stderr.String()
	if strings.Contains(log, key) {
		t.Errorf("the log shows the bootstrap key:\n%s", log)
	}
	if !strings.Contains(log, "bootstrap-key") || !strings.Contains(log, `created app \"default\"`) {
		t.Errorf("the log does not say where the bootstrap key is:\n%s", log)
	}
	if code := s.term(t); code != 0 {
		t.Fatalf("SIGTERM: exit %d; log:\n%s", code, s.stderr.String())
	}
	before, err := os.ReadFile(filepath.Join(data, "bootstrap-key"))
	if err != nil {
		t.Fatal(err)
	}
	secretBefore, err := os.ReadFile(filepath.Join(data, "secret.key"))
	if err != nil {
		t.Fatal(err)
	}

	// The second start keeps the app and the keys.
	s2 := &server{proc: startProc(t, dir, env, "serve")}
	s2.waitReady(t)
	after, err := os.ReadFile(filepath.Join(data, "bootstrap-key"))
	if err != nil || !bytes.Equal(before, after) {
		t.Errorf("the bootstrap key changed on restart (%v)", err)
	}
	if secretAfter, err := os.ReadFile(filepath.Join(data, "secret.key")); err != nil || !bytes.Equal(secretBefore, secretAfter) {
		t.Errorf("the secret key changed on restart (%v)", err)
	}
	if strings.Contains(s2.stderr.String(), "created app") {
		t.Errorf("the second start created an app:\n%s", s2.stderr.String())
	}
	c2 := newClient(t, s2.URL, key)
	if name := c2.appName(t); name != "default" {
		t.Errorf("after restart the key belongs to %q", name)
	}
	stdout, stderr, code := runBinary(t, dir, nil, "apps", "list")
	if code != 0 || strings.Count(stdout, "default") != 1 || len(strings.Split(strings.TrimSpace(stdout), "\n")) != 2 {
		t.Errorf("apps list after two starts: exit %d\n%s%s", code, stdout, stderr)
	}
	// migrate does not change the schema under a running server.
	if _, stderr, code := runBinary(t, dir, nil, "migrate"); code == 0 || !strings.Contains(stderr, "in use by another meetsync server") ||
		!strings.Contains(stderr, "stop it first") {
		t.Errorf("migrate beside a running server: exit %d: %s", code, stderr)
	}
	if code := s2.term(t); code != 0 {
		t.Errorf("SIGTERM: exit %d", code)
	}

	// A store that has apps never gets a new secret key: a mistyped
	// --secret-key-file (or a lost secret.key) stops serve and creates
	// nothing, instead of leaving the stored secrets unreadable.
	other := filepath.Join(dir, "other.key")
	_, stderr, code = runBinary(t, dir, env, "serve", "--secret-key-file", other)
	if code == 0 || !strings.Contains(stderr, "does not exist, and the store is not new") {
		t.Errorf("serve with a missing key file on an existing store: exit %d: %s", code, stderr)
	}
	if _, err := os.Stat(other); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("serve created %s for an existing store (%v)", other, err)
	}
	if b, err := os.ReadFile(filepath.Join(data, "secret.key")); err != nil || !bytes.Equal(b, secretBefore) {
		t.Errorf("the store's secret key changed (%v)", err)
	}

	// Another valid key is refused too: the store's check value, written
	// on its first start, does not open with it.
	if err := os.WriteFile(other, []byte(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, code = runBinary(t, dir, env, "serve", "--secret-key-file", other)
	if code == 0 || !strings.Contains(stderr, "is not the key this store's secrets are encrypted with") {
		t.Errorf("serve with another key on an existing store: exit %d: %s", code, stderr)
	}
}

// TestServeEnvAndFlags checks MEETSYNC_DATA and MEETSYNC_ADDR and that a
// flag on the command line wins over them.
func TestServeEnvAndFlags(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	envData := filepath.Join(dir, "env-data")
	s := &server{proc: startProc(t, dir, []string{"MEETSYNC_DATA=" + envData, "MEETSYNC_ADDR=127.0.0.1:0"}, "serve")}
	s.waitReady(t)
	if newClient(t, s.URL, readKey(t, envData)).appName(t) != "default" {
		t.Error("MEETSYNC_DATA: wrong app")
	}
	s.kill()

	flagData := filepath.Join(dir, "flag-data")
	otherData := filepath.Join(dir, "other-data")
	s = &server{proc: startProc(t, dir, []string{"MEETSYNC_DATA=" + otherData, "MEETSYNC_ADDR=not-an-address"},
		"serve", "--data", flagData, "--addr", "127.0.0.1:0")}
	s.waitReady(t)
	if newClient(t, s.URL, readKey(t, flagData)).appName(t) != "default" {
		t.Error("--data: wrong app")
	}
	if _, err := os.Stat(otherData); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("MEETSYNC_DATA was used although --data was given (%v)", err)
	}
	if code := s.term(t); code != 0 {
		t.Errorf("SIGTERM: exit %d", code)
	}
}

// TestServeDataInUse starts a second server on the same data directory.
func TestServeDataInUse(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	s := startServer(t, data)
	key := readKey(t, data)
	_, stderr, code := runBinary(t, "", nil, "serve", "--addr", "127.0.0.1:0", "--data", data)
	if code == 0 || !strings.Contains(stderr, "in use") {
		t.Fatalf("second server: exit %d, stderr:\n%s", code, stderr)
	}
	after := readKey(t, data)
	if after != key {
		t.Error("the second server replaced the bootstrap key")
	}
	c := newClient(t, s.URL, key)
	if c.appName(t) != "default" || c.status(t, "/readyz") != http.StatusOK {
		t.Error("the first server is not well after the second one failed")
	}
}

// TestServeGracefulShutdown sends SIGTERM under load with one request
// still being sent: that request is answered, the process exits 0, and
// every acknowledged event is in the feed after a restart.
func TestServeGracefulShutdown(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	s := startServer(t, data, "--shutdown-timeout", "30s")
	key := readKey(t, data)
	c := newClient(t, s.URL, key)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// The slow request: its headers now, its body after SIGTERM. Expect:
	// 100-continue makes the server say when the handler reads the body.
	u, _ := url.Parse(s.URL)
	conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	slowBody := []byte(`{"type":"meeting.status_changed","user_id":"slow-user","device_id":"d1","client_seq":1,"data":{"status":"in_meeting","tag":"slow"}}`)
	fmt.Fprintf(conn, "POST /v1/events HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n",
		u.Host, key, len(slowBody))
	br := bufio.NewReader(conn)
	if line, err := br.ReadString('\n'); err != nil || !strings.Contains(line, "100 Continue") {
		t.Fatalf("no 100 Continue: %q %v", line, err)
	}
	if _, err := br.ReadString('\n'); err != nil { // the blank line after the 1xx
		t.Fatal(err)
	}

	lm := newLoadModel("g", 20, 2)
	load := lm.start(ctx, t, c, loadOptions{workers: 8, triggerAt: 40, allow503: true})
	select {
	case <-load.trigger:
	case <-load.finished:
		t.Fatalf("the load ended before 40 acks; log:\n%s", s.stderr.String())
	case <-ctx.Done():
		t.Fatalf("load did not reach 40 acks; log:\n%s", s.stderr.String())
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Shutdown has begun when /readyz stops saying 200.
	for c.readyStatus(ctx) == http.StatusOK {
		if ctx.Err() != nil {
			t.Fatal("still ready after SIGTERM")
		}
		time.Sleep(5 * time.Millisecond) // polling interval, bounded by ctx
	}
	if _, err := conn.Write(slowBody); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("the in-flight request got no answer: %v", err)
	}
	respBody, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the in-flight request got %d %s", resp.StatusCode, respBody)
	}
	var slowRes struct{ Events []ingestResult }
	if err := json.Unmarshal(respBody, &slowRes); err != nil || len(slowRes.Events) != 1 {
		t.Fatalf("in-flight request: %v %s", err, respBody)
	}
	reqs := load.stop()
	if code := s.wait(t, 60*time.Second); code != 0 {
		t.Fatalf("SIGTERM: exit %d; log:\n%s", code, s.stderr.String())
	}
	log := s.stderr.String()
	if !strings.Contains(log, "shutting down") || !strings.Contains(log, "msg=stopped") {
		t.Errorf("the log does not show the shutdown:\n%s", log)
	}
	acked := 0
	for _, r := range reqs {
		if r.acked {
			acked++
		}
	}
	t.Logf("%d requests, %d acknowledged before the process exited", len(reqs), acked)
	reqs = append(reqs, &request{events: []sentEvent{{tag: "slow", user: "slow-user"}}, acked: true, results: slowRes.Events})

	s2 := startServer(t, data)
	c2 := newClient(t, s2.URL, key)
	feed := verifyLog(t, c2, reqs)
	if _, ok := feed.byTag["slow"]; !ok {
		t.Error("the request in flight at SIGTERM is not in the feed")
	}
}

// readyStatus returns the status of /readyz, or 0 if there was no answer.
func (c *apiClient) readyStatus(ctx context.Context) int {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	status, _, err := c.do(ctx, http.MethodGet, "/readyz", nil, nil)
	if err != nil {
		return 0
	}
	return status
}

// TestCLI runs apps and keys against a data directory while a server
// serves it.
func TestCLI(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	data := t.TempDir()
	s := startServer(t, data)
	// cli runs a command in process with --data, returning stdout and the error.
	cli := func(args ...string) (string, string, error) {
		var stdout, stderr bytes.Buffer
		err := run(ctx, append(args, "--data", data), &stdout, &stderr)
		checkLog(t, strings.Join(args, " "), stderr.String())
		return stdout.String(), stderr.String(), err
	}

	stdout, stderr, err := cli("apps", "create", "billing")
	if err != nil {
		t.Fatalf("apps create: %v\n%s", err, stderr)
	}
	billingKey := strings.TrimSpace(stdout)
	if !strings.HasPrefix(billingKey, "msk_") || strings.Count(stdout, "\n") != 1 {
		t.Fatalf("apps create printed %q, want one key", stdout)
	}
	billing := newClient(t, s.URL, billingKey)
	if name := billing.appName(t); name != "billing" {
		t.Errorf("the new key belongs to %q", name)
	}
	// The two apps see nothing of each other.
	dflt := newClient(t, s.URL, readKey(t, data))
	post := func(c *apiClient, user string) {
		st, body, err := c.do(ctx, http.MethodPost, "/v1/events", []byte(`{"type":"app.note","user_id":"`+user+`"}`), nil)
		if err != nil || st != http.StatusOK {
			t.Fatalf("post: %d %s %v", st, body, err)
		}
	}
	post(billing, "b-user")
	post(dflt, "d-user")
	if st := billing.status(t, "/v1/users/d-user"); st != http.StatusNotFound {
		t.Errorf("billing sees default's user: %d", st)
	}
	var feed struct {
		Events []struct {
			UserID string `json:"user_id"`
		}
	}
	billing.get(t, "/v1/events?limit=1000", &feed)
	if len(feed.Events) != 1 || feed.Events[0].UserID != "b-user" {
		t.Errorf("billing's feed: %+v", feed.Events)
	}

	if _, stderr, err := cli("apps", "create", "billing"); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("apps create twice: %v %s", err, stderr)
	}
	if _, _, err := cli("apps", "create", " spaced "); err == nil {
		t.Error("apps create accepted a name with spaces around it")
	}
	if _, _, err := cli("apps", "create"); err == nil || !strings.Contains(err.Error(), "usage") {
		t.Errorf("apps create without a name: %v", err)
	}
	if _, stderr, err := cli("apps", "rename", "x"); err == nil || !strings.Contains(stderr, `unknown apps command "rename"`) {
		t.Errorf("apps rename: %v %s", err, stderr)
	}
	if _, _, err := cli("apps", "list", "extra"); err == nil || !strings.Contains(err.Error(), "usage: meetsync apps list") {
		t.Errorf("apps list with an argument: %v", err)
	}
	stdout, _, err = cli("apps", "list")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], "default") || !strings.Contains(lines[2], "billing") {
		t.Errorf("apps list:\n%s", stdout)
	}

	// keys create, list, revoke.
	stdout, _, err = cli("keys", "create", "billing")
	if err != nil {
		t.Fatal(err)
	}
	key2 := strings.TrimSpace(stdout)
	if !strings.HasPrefix(key2, "msk_") || key2 == billingKey {
		t.Fatalf("keys create printed %q", stdout)
	}
	if name := newClient(t, s.URL, key2).appName(t); name != "billing" {
		t.Errorf("the second key belongs to %q", name)
	}
	stdout, _, err = cli("keys", "create", "billing")
	if err != nil {
		t.Fatal(err)
	}
	key3 := strings.TrimSpace(stdout)
	stdout, _, err = cli("keys", "list", "billing")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(stdout, billingKey) || strings.Contains(stdout, key2) || strings.Contains(stdout, key3) {
		t.Errorf("keys list shows a whole key:\n%s", stdout)
	}
	lines = strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 4 {
		t.Fatalf("keys list, want 3 keys:\n%s", stdout)
	}
	key3ID := strings.Fields(lines[3])[0]
	if !strings.HasPrefix(key3ID, "key_") || !strings.HasPrefix(key3, strings.TrimSuffix(strings.Fields(lines[3])[1], "…")) {
		t.Fatalf("keys list: the last line %q is not key 3", lines[3])
	}
	// Revoke key 3 before the server ever saw it (so no cache hides the
	// revocation): it gets 401 at once.
	if _, _, err := cli("keys", "revoke", "billing", key3ID); err != nil {
		t.Fatal(err)
	}
	if st := newClient(t, s.URL, key3).status(t, "/v1/app"); st != http.StatusUnauthorized {
		t.Errorf("revoked key: %d, want 401", st)
	}
	stdout, _, err = cli("keys", "list", "billing")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(stdout), "\n")[1:] {
		f := strings.Fields(l)
		if revoked := f[len(f)-1] != "-"; revoked != (f[0] == key3ID) {
			t.Errorf("keys list after revoking %s:\n%s", key3ID, stdout)
		}
	}
	if billing.appName(t) != "billing" || newClient(t, s.URL, key2).appName(t) != "billing" {
		t.Error("revoking one key broke the others")
	}
	// Another app's key cannot be revoked through this app.
	dfltKeys, _, err := cli("keys", "list", "default")
	if err != nil {
		t.Fatal(err)
	}
	dfltKeyID := strings.Fields(strings.Split(strings.TrimSpace(dfltKeys), "\n")[1])[0]
	if _, _, err := cli("keys", "revoke", "billing", dfltKeyID); err == nil {
		t.Error("revoked default's key through billing")
	}
	if dflt.appName(t) != "default" {
		t.Error("default's key stopped working")
	}
	for _, args := range [][]string{{"keys", "create", "nosuchapp"}, {"keys", "list", "nosuchapp"}, {"keys", "revoke", "billing"}, {"keys", "revoke", "billing", "key_nope"}, {"keys", "rotate", "billing"}} {
		if _, _, err := cli(args...); err == nil {
			t.Errorf("%q: no error", args)
		}
	}

	// After a restart, a revoked key stays revoked.
	s.kill()
	s = startServer(t, data)
	if st := newClient(t, s.URL, key3).status(t, "/v1/app"); st != http.StatusUnauthorized {
		t.Errorf("revoked key after restart: %d, want 401", st)
	}
	if newClient(t, s.URL, key2).appName(t) != "billing" {
		t.Error("key 2 after restart")
	}
}

// TestCLIBinary runs `apps create` as a process beside a running server:
// the key goes to stdout only and works at once.
func TestCLIBinary(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	s := startServer(t, data)
	stdout, stderr, code := runBinary(t, "", nil, "apps", "create", "crm", "--data", data)
	if code != 0 {
		t.Fatalf("apps create: exit %d\n%s", code, stderr)
	}
	key := strings.TrimSpace(stdout)
	if strings.Contains(stderr, key) || !strings.Contains(stderr, `created app "crm"`) {
		t.Errorf("apps create stderr: %q", stderr)
	}
	if name := newClient(t, s.URL, key).appName(t); name != "crm" {
		t.Errorf("the key belongs to %q", name)
	}
	_, stderr, code = runBinary(t, "", nil, "apps", "create", "crm", "--data", data)
	if code == 0 || !strings.Contains(stderr, "already exists") {
		t.Errorf("apps create twice: exit %d, %q", code, stderr)
	}
}
