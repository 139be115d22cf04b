package postgres_test

import (
	"context"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meetsync/meetsync/internal/pgtest"
	"github.com/meetsync/meetsync/postgres"
)

// silencer is a TCP proxy on 127.0.0.1 to a database server. silence
// makes every connection open so far stop passing bytes, both ways, while
// it stays open: what a partition, or a server that failed over, leaves a
// client with. Connections made after pass as before.
type silencer struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	open   []*atomic.Bool // each connection's silence
	wg     sync.WaitGroup
}

func newSilencer(t *testing.T, target string) *silencer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &silencer{ln: ln, target: target}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(func() { ln.Close(); s.wg.Wait() })
	return s
}

func (s *silencer) serve() {
	defer s.wg.Done()
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", s.target)
		if err != nil {
			c.Close()
			continue
		}
		quiet := new(atomic.Bool)
		s.mu.Lock()
		s.open = append(s.open, quiet)
		s.mu.Unlock()
		conns = append(conns, c, up)
		pass := func(dst, src net.Conn) {
			buf := make([]byte, 32<<10)
			for {
				n, err := src.Read(buf)
				if n > 0 && !quiet.Load() {
					if _, err := dst.Write(buf[:n]); err != nil {
						return
					}
				}
				if err != nil {
					if err != io.EOF {
						dst.Close()
					}
					return
				}
			}
		}
		go pass(up, c)
		go pass(c, up)
	}
}

// proxiedDatabase returns a new test database's URL, a silencer in front
// of its server and the URL through the silencer.
func proxiedDatabase(t *testing.T) (string, *silencer, *url.URL) {
	t.Helper()
	dbURL := pgtest.NewDatabase(t)
	u, err := url.Parse(dbURL)
	if err != nil || u.Host == "" {
		t.Fatalf("the test database's URL has no host to proxy: %v", err)
	}
	proxy := newSilencer(t, u.Host)
	u.Host = proxy.ln.Addr().String()
	return dbURL, proxy, u
}

func (s *silencer) silence() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, q := range s.open {
		q.Store(true)
	}
}

// TestListenSilentConnection: the listener's connection goes silent (open,
// but nothing passes): within ListenCheck the listener notices (its ping
// gets no answer), listens again on a new connection (every kind, for
// what it may have missed) and hears the other replicas' commits again.
// Before, it waited on the silent connection until TCP gave up on it.
func TestListenSilentConnection(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dbURL, proxy, u := proxiedDatabase(t)

	b := openNode(t, dbURL, "node-b")
	if _, err := b.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	app := newApp(t, b)
	a, err := postgres.Open(ctx, u.String(), postgres.Config{Node: "node-a", ListenCheck: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	next := listen(t, ctx, a)
	listening := func(when string) {
		t.Helper()
		got := []string{next(), next(), next()}
		if got[0] != postgres.NotifyEvents || got[1] != postgres.NotifyDeliveries || got[2] != postgres.NotifyCommands {
			t.Fatalf("%s: %v, want every kind", when, got)
		}
	}
	listening("on connecting")
	appendNote(t, b, app)
	if k := next(); k != postgres.NotifyEvents {
		t.Fatalf("after another replica's append: %q", k)
	}

	proxy.silence()
	listening("after the connection went silent")
	appendNote(t, b, app)
	if k := next(); k != postgres.NotifyEvents {
		t.Errorf("after another replica's append, listening again: %q", k)
	}
}

// TestPoolSilentConnections: the pool's idle connections go silent; the
// next calls are pinged connections that get no answer within PingTimeout,
// so the pool drops them and the calls go on, on new connections, well
// within their own deadline. Before, a call waited on a silent connection
// until its deadline and failed.
func TestPoolSilentConnections(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, proxy, u := proxiedDatabase(t)
	q := u.Query()
	q.Set("pool_max_conns", "3")
	u.RawQuery = q.Encode()
	db, err := postgres.Open(ctx, u.String(), postgres.Config{Node: "node-a", PingTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	// Three connections in the pool, all busy at once, then idle.
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if _, err := db.AppList(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	time.Sleep(1100 * time.Millisecond) // idle long enough to be pinged before use
	proxy.silence()
	for i := range 3 {
		cctx, ccancel := context.WithTimeout(ctx, 20*time.Second)
		_, err := db.AppList(cctx)
		ccancel()
		if err != nil {
			t.Fatalf("call %d after the pool's connections went silent: %v", i, err)
		}
	}
}
