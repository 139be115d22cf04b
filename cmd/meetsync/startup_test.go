package main

import (
	"encoding/base64"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/internal/pgtest"
)

// noFile fails t if path exists.
func noFile(t *testing.T, what, path string) {
	t.Helper()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s: %s exists (%v)", what, path, err)
	}
}

// closedPort returns a 127.0.0.1 address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// writeKey writes a new secret key file with mode perm.
func writeKey(t *testing.T, path string, perm os.FileMode) string {
	t.Helper()
	key := base64.StdEncoding.EncodeToString(meetsync.NewSecretKey())
	if err := os.WriteFile(path, []byte(key+"\n"), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil { // whatever the umask
		t.Fatal(err)
	}
	return key
}

// TestServeStartFailureCreatesNothing: a serve that fails to start leaves
// no data directory behind: none is created before it is needed (an
// unreachable or malformed database, on PostgreSQL where the directory
// only takes files), and one it created for a SQLite store is removed
// when the start fails later; a directory that existed stays.
func TestServeStartFailureCreatesNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	const password = "pw-not-shown"
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"unreachable database", nil, []string{"--database-url", "postgres://u:" + password + "@" + closedPort(t) + "/db?connect_timeout=10"}, "open store"},
		{"malformed database URL", nil, []string{"--database-url", "postgres://u:" + password + "@host:port/db"}, "--database-url is not valid: invalid port"},
		{"malformed database URL in the environment", []string{"MEETSYNC_DATABASE_URL=postgres://u:" + password + "@host/db?sslmode=sometimes"}, nil,
			"MEETSYNC_DATABASE_URL is not valid: failed to configure TLS (sslmode is invalid)"},
	} {
		args := append([]string{"serve", "--addr", "127.0.0.1:0", "--data", data}, tc.args...)
		_, stderr, code := runBinary(t, dir, tc.env, args...)
		if code == 0 || !strings.Contains(stderr, tc.want) || strings.Contains(stderr, password) {
			t.Errorf("%s: exit %d, want an error with %q and without the password: %s", tc.name, code, tc.want, stderr)
		}
		noFile(t, tc.name, data)
	}

	// SQLite: the directory is the store's, made at once; a start failing
	// after (a secret key file that is no key) removes what it made, the
	// parents it created included.
	badKey := filepath.Join(dir, "bad.key")
	if err := os.WriteFile(badKey, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	nested := filepath.Join(dir, "new", "deeper", "data")
	_, stderr, code := runBinary(t, dir, nil, "serve", "--addr", "127.0.0.1:0", "--data", nested, "--secret-key-file", badKey)
	if code == 0 || !strings.Contains(stderr, "not base64") {
		t.Errorf("serve with a bad key file: exit %d: %s", code, stderr)
	}
	noFile(t, "a SQLite start that failed", filepath.Join(dir, "new"))
	if _, err := os.Stat(badKey); err != nil {
		t.Errorf("the key file given is gone: %v", err)
	}
	existing := filepath.Join(dir, "existing")
	if err := os.Mkdir(existing, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := runBinary(t, dir, nil, "serve", "--addr", "127.0.0.1:0", "--data", existing, "--secret-key-file", badKey); code == 0 {
		t.Errorf("serve with a bad key file in an existing directory: exit 0: %s", stderr)
	}
	if fi, err := os.Stat(existing); err != nil || !fi.IsDir() {
		t.Errorf("a failed start removed the data directory that existed before (%v)", err)
	}
}

// TestDatabaseURLErrorNamesSetting: a database URL that cannot be parsed
// is refused with the setting it came from and the reason, never the
// password, by serve and the admin commands.
func TestDatabaseURLErrorNamesSetting(t *testing.T) {
	clearEnv(t)
	const password = "s3cret-pw"
	bad := "postgres://meetsync:" + password + "@db.internal:54x32/meetsync"
	m := NewMain()
	err := m.ParseFlags([]string{"--database-url", bad}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--database-url is not valid: invalid port") || strings.Contains(err.Error(), password) {
		t.Errorf("--database-url %s: error %v, want one naming --database-url and the reason, without the password", bad, err)
	}
	kv := "host=db.internal port=54x32 user=meetsync password=" + password
	t.Setenv("MEETSYNC_DATABASE_URL", kv)
	m = NewMain()
	err = m.ParseFlags(nil, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "MEETSYNC_DATABASE_URL is not valid: invalid port") || strings.Contains(err.Error(), password) {
		t.Errorf("MEETSYNC_DATABASE_URL=%s: error %v, want one naming MEETSYNC_DATABASE_URL and the reason, without the password", kv, err)
	}
	// The command line wins, and is named.
	m = NewMain()
	if err = m.ParseFlags([]string{"--database-url", "postgres://u:" + password + "@h/db?pool_max_conns=many"}, io.Discard); err == nil ||
		!strings.HasPrefix(err.Error(), "--database-url is not valid: cannot parse pool_max_conns") || strings.Contains(err.Error(), password) {
		t.Errorf("--database-url with a bad pool_max_conns: error %v", err)
	}

	dir := t.TempDir()
	_, stderr, code := runBinary(t, dir, nil, "apps", "list", "--database-url", bad)
	if code == 0 || !strings.Contains(stderr, "--database-url is not valid: invalid port") || strings.Contains(stderr, password) {
		t.Errorf("apps list --database-url %s: exit %d: %s", bad, code, stderr)
	}
	_, stderr, code = runBinary(t, dir, []string{"MEETSYNC_DATABASE_URL=" + bad}, "migrate")
	if code == 0 || !strings.Contains(stderr, "MEETSYNC_DATABASE_URL is not valid: invalid port") || strings.Contains(stderr, password) {
		t.Errorf("migrate with MEETSYNC_DATABASE_URL=%s: exit %d: %s", bad, code, stderr)
	}
}

// TestAddrInUseNamesSetting: an address already in use is refused naming
// the setting it came from, the flag or its environment variable.
func TestAddrInUseNamesSetting(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	_, stderr, code := runBinary(t, t.TempDir(), []string{"MEETSYNC_ADDR=" + addr}, "serve")
	if code == 0 || !strings.Contains(stderr, "listen on MEETSYNC_ADDR "+addr+": ") {
		t.Errorf("serve with MEETSYNC_ADDR=%s in use: exit %d: %s", addr, code, stderr)
	}
	_, stderr, code = runBinary(t, t.TempDir(), nil, "serve", "--addr", addr)
	if code == 0 || !strings.Contains(stderr, "listen on --addr "+addr+": ") {
		t.Errorf("serve --addr %s in use: exit %d: %s", addr, code, stderr)
	}
}

// TestSecretKeyMissingMessages: serve's refusal of a store with apps but
// no key file says what fits: the store never had a key (apps made by
// "meetsync apps create" before any serve: make one), the file named by
// --secret-key-file does not exist, or the store's secrets are sealed
// with a key that is missing (restore it).
func TestSecretKeyMissingMessages(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if _, stderr, code := runBinary(t, dir, nil, "migrate", "--data", data); code != 0 {
		t.Fatalf("migrate: exit %d: %s", code, stderr)
	}
	if _, stderr, code := runBinary(t, dir, nil, "apps", "create", "crm", "--data", data); code != 0 {
		t.Fatalf("apps create: exit %d: %s", code, stderr)
	}
	serve := func(env []string, args ...string) string {
		t.Helper()
		_, stderr, code := runBinary(t, dir, env, append([]string{"serve", "--addr", "127.0.0.1:0", "--data", data}, args...)...)
		if code == 0 {
			t.Fatalf("serve %q: exit 0: %s", args, stderr)
		}
		return stderr
	}
	defaultKey := filepath.Join(data, "secret.key")

	// Never had a key, default path.
	stderr := serve(nil)
	for _, want := range []string{"no secret key: " + defaultKey + " does not exist", `"meetsync apps create"`,
		"serve makes the key itself only on a store without apps", "head -c 32 /dev/urandom | base64", "--secret-key-file"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("serve on a store that never had a key: the error lacks %q: %s", want, stderr)
		}
	}
	if strings.Contains(stderr, "Restore") || strings.Contains(stderr, "not new") {
		t.Errorf("serve on a store that never had a key advises restoring it: %s", stderr)
	}
	noFile(t, "serve refused", defaultKey)

	// Never had a key, a path given (by flag, by environment).
	missing := filepath.Join(dir, "missing.key")
	for _, tc := range []struct {
		env     []string
		args    []string
		setting string
	}{
		{nil, []string{"--secret-key-file", missing}, "--secret-key-file"},
		{[]string{"MEETSYNC_SECRET_KEY_FILE=" + missing}, nil, "MEETSYNC_SECRET_KEY_FILE"},
	} {
		stderr := serve(tc.env, tc.args...)
		if want := "secret key file " + missing + " (" + tc.setting + ") does not exist"; !strings.Contains(stderr, want) ||
			!strings.Contains(stderr, "base64 > "+missing) || strings.Contains(stderr, "Restore") || strings.Contains(stderr, "not new") {
			t.Errorf("serve with %s naming a missing file: want %q, how to make it, no restore advice: %s", tc.setting, want, stderr)
		}
		noFile(t, "serve refused", missing)
	}

	// Doing what the message says starts the server; the store's check
	// value then seals with that key.
	writeKey(t, missing, 0o600)
	s := startServer(t, data, "--secret-key-file", missing)
	if code := s.term(t); code != 0 {
		t.Fatalf("SIGTERM: exit %d", code)
	}
	// Now the store had a key: a missing one is to be restored.
	stderr = serve(nil)
	if !strings.Contains(stderr, "secret key "+defaultKey+" does not exist, and the store is not new") || !strings.Contains(stderr, "Restore that file") {
		t.Errorf("serve without the key of a store that has one: want the restore advice: %s", stderr)
	}
	other := filepath.Join(dir, "typo.key")
	stderr = serve(nil, "--secret-key-file", other)
	if !strings.Contains(stderr, "secret key file "+other+" (--secret-key-file) does not exist, and the store is not new") ||
		!strings.Contains(stderr, "Point --secret-key-file at that file") {
		t.Errorf("serve with a mistyped --secret-key-file on a store that has a key: %s", stderr)
	}
}

// TestSecretKeyMissingPostgres is the flow of docs/scaling.md on
// PostgreSQL: migrate, apps create, serve. serve says how to make the key
// (not to restore one), creates no data directory, and starts once given
// the key.
func TestSecretKeyMissingPostgres(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDatabase(t)
	dir := t.TempDir()
	env := []string{"MEETSYNC_DATABASE_URL=" + db}
	if _, stderr, code := runBinary(t, dir, env, "migrate"); code != 0 {
		t.Fatalf("migrate: exit %d: %s", code, stderr)
	}
	if _, stderr, code := runBinary(t, dir, env, "apps", "create", "crm"); code != 0 {
		t.Fatalf("apps create: exit %d: %s", code, stderr)
	}
	data := filepath.Join(dir, "replica")
	_, stderr, code := runBinary(t, dir, env, "serve", "--addr", "127.0.0.1:0", "--data", data)
	if code == 0 || !strings.Contains(stderr, "no secret key") || !strings.Contains(stderr, `"meetsync apps create"`) || strings.Contains(stderr, "Restore") {
		t.Errorf("serve after migrate and apps create: exit %d, want how to make a key, not to restore one: %s", code, stderr)
	}
	noFile(t, "serve refused", data)
	key := filepath.Join(dir, "secret.key")
	writeKey(t, key, 0o600)
	s := startServer(t, data, "--database-url", db, "--secret-key-file", key)
	if code := s.term(t); code != 0 {
		t.Errorf("SIGTERM: exit %d", code)
	}
}

// TestSecretKeyFileMode: a key file that group or others may read is
// used, with a WARN naming its path and mode (never its contents); a
// 0600 one without.
func TestSecretKeyFileMode(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	path := filepath.Join(dir, "secret.key")
	key := writeKey(t, path, 0o644)
	s := startServer(t, data, "--secret-key-file", path)
	if code := s.term(t); code != 0 {
		t.Fatalf("SIGTERM: exit %d", code)
	}
	log := s.stderr.String()
	if !strings.Contains(log, "level=WARN") || !strings.Contains(log, "key_file="+path+" mode=0644") || !strings.Contains(log, "chmod 600") {
		t.Errorf("a 0644 key file is not warned about (with its path and mode):\n%s", log)
	}
	if strings.Contains(log, key) {
		t.Errorf("the log shows the secret key:\n%s", log)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	s = startServer(t, data, "--secret-key-file", path)
	if code := s.term(t); code != 0 {
		t.Fatalf("SIGTERM: exit %d", code)
	}
	if strings.Contains(s.stderr.String(), "key_file="+path+" mode=") {
		t.Errorf("a 0600 key file is warned about:\n%s", s.stderr.String())
	}
}
