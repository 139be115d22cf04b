// Package pgtest gives tests a fresh PostgreSQL database each.
//
// With TEST_DATABASE_URL set (a postgres:// URL of a role that may create
// databases) it uses that server. Otherwise it starts a private server for
// the test binary: initdb and pg_ctl in a temporary directory, listening
// on a free 127.0.0.1 port with its unix socket in that directory,
// stopped and removed by Main. initdb is looked for on PATH, in
// /usr/lib/postgresql/*/bin and /usr/local/bin; as root, the server runs
// as the "postgres" user (or "nobody"), since PostgreSQL refuses to run as
// root.
//
// Without PostgreSQL the tests that ask for a database are skipped, but
// when CI=true they fail: CI must run them.
//
// Use it from TestMain:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// and in a test:
//
//	url := pgtest.NewDatabase(t)
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// server is the PostgreSQL server of this test binary.
var server struct {
	once     sync.Once
	adminURL string // a database to run CREATE DATABASE in
	err      error  // why there is none
	private  *private
	n        atomic.Int64
}

// private is a server started by this package.
type private struct {
	dir   string
	pgCtl string
	runAs string // "" when not root
	data  string
}

// Main runs the tests, stops the private server, if one was started, and
// exits. Call it from TestMain.
func Main(m *testing.M) { os.Exit(Run(m)) }

// Run runs the tests, stops the private server, if one was started, and
// returns the exit code: for a TestMain with cleanups of its own.
func Run(m *testing.M) int {
	code := m.Run()
	if p := server.private; p != nil {
		p.stop()
	}
	return code
}

// unavailable skips t, or fails it under CI=true.
func unavailable(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("PostgreSQL is required under CI=true: %v", err)
	}
	t.Skipf("no PostgreSQL (set TEST_DATABASE_URL, or install PostgreSQL so that initdb can be found): %v", err)
}

// NewDatabase creates an empty database for t, dropped when t ends, and
// returns its postgres:// URL.
func NewDatabase(t testing.TB) string {
	t.Helper()
	server.once.Do(start)
	if server.err != nil {
		unavailable(t, server.err)
	}
	name := fmt.Sprintf("meetsync_test_%d_%d", os.Getpid(), server.n.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := admin(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := admin(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database: %v", err)
		}
	})
	u, err := url.Parse(server.adminURL)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

func admin(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, server.adminURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

func start() {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		if !strings.HasPrefix(u, "postgres://") && !strings.HasPrefix(u, "postgresql://") {
			server.err = errors.New("TEST_DATABASE_URL must be a postgres:// URL")
			return
		}
		server.adminURL = u
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		server.err = admin(ctx, "SELECT 1")
		return
	}
	p, err := startPrivate()
	if err != nil {
		server.err = err
		return
	}
	server.private = p
}

// findInitdb returns the path of initdb.
func findInitdb() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		return p, nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	sort.Slice(matches, func(i, j int) bool { return version(matches[i]) > version(matches[j]) })
	for _, p := range append(matches, "/usr/local/bin/initdb", "/usr/local/pgsql/bin/initdb") {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", errors.New("initdb not found on PATH, in /usr/lib/postgresql/*/bin or /usr/local/bin")
}

func version(initdb string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(initdb))))
	return v
}

func startPrivate() (*private, error) {
	initdb, err := findInitdb()
	if err != nil {
		return nil, err
	}
	bin := filepath.Dir(initdb)
	p := &private{pgCtl: filepath.Join(bin, "pg_ctl")}
	if _, err := os.Stat(p.pgCtl); err != nil {
		if p.pgCtl, err = exec.LookPath("pg_ctl"); err != nil {
			return nil, fmt.Errorf("pg_ctl not found beside %s", initdb)
		}
	}
	if p.dir, err = os.MkdirTemp("", "meetsync-pgtest-"); err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		// PostgreSQL does not run as root.
		var u *user.User
		for _, name := range []string{"postgres", "nobody"} {
			if u, err = user.Lookup(name); err == nil {
				break
			}
		}
		if u == nil {
			os.RemoveAll(p.dir)
			return nil, errors.New("running as root and there is no postgres or nobody user to run PostgreSQL as")
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(p.dir, uid, gid); err != nil {
			os.RemoveAll(p.dir)
			return nil, err
		}
		p.runAs = u.Username
	}
	p.data = filepath.Join(p.dir, "data")
	if out, err := p.run(initdb, "-D", p.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		os.RemoveAll(p.dir)
		return nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	// A free port may be taken by the time the server binds it: try again.
	for try := 0; ; try++ {
		port, err := freePort()
		if err != nil {
			os.RemoveAll(p.dir)
			return nil, err
		}
		opts := strings.Join([]string{
			"-p " + strconv.Itoa(port), "-k " + p.dir, "-c listen_addresses=127.0.0.1",
			// Tests crash meetsync, never the database: durability off, for speed.
			"-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off",
			"-c max_connections=500", "-c shared_buffers=64MB",
		}, " ")
		out, err := p.run(p.pgCtl, "start", "-w", "-t", "60", "-D", p.data, "-l", filepath.Join(p.dir, "log"), "-o", opts)
		if err == nil {
			server.adminURL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
			return p, nil
		}
		if try == 2 {
			log, _ := os.ReadFile(filepath.Join(p.dir, "log"))
			os.RemoveAll(p.dir)
			return nil, fmt.Errorf("pg_ctl start: %v: %s\n%s", err, out, log)
		}
	}
}

// run runs a PostgreSQL program (as p.runAs when root).
func (p *private) run(prog string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var cmd *exec.Cmd
	switch {
	case p.runAs == "":
		cmd = exec.CommandContext(ctx, prog, args...)
	case haveRunuser():
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", p.runAs, "--", prog}, args...)...)
	default:
		quoted := make([]string, 0, len(args)+1)
		for _, a := range append([]string{prog}, args...) {
			quoted = append(quoted, "'"+strings.ReplaceAll(a, "'", `'\''`)+"'")
		}
		cmd = exec.CommandContext(ctx, "su", "-s", "/bin/sh", p.runAs, "-c", strings.Join(quoted, " "))
	}
	cmd.Dir = p.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	return cmd.CombinedOutput()
}

func haveRunuser() bool {
	_, err := exec.LookPath("runuser")
	return err == nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func (p *private) stop() {
	_, _ = p.run(p.pgCtl, "stop", "-D", p.data, "-m", "immediate", "-w", "-t", "30")
	os.RemoveAll(p.dir)
}
