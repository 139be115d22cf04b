package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/client"
	"github.com/meetsync/meetsync/httpapi"
	"github.com/meetsync/meetsync/ingest"
	"github.com/meetsync/meetsync/schema"
	"github.com/meetsync/meetsync/session"
	"github.com/meetsync/meetsync/sim"
	"github.com/meetsync/meetsync/sqlite"
)

// wait is a deadline for asynchronous outcomes, not an expectation.
const wait = 20 * time.Second

// server is one running meetsync for a test, wired like `meetsync serve`:
// a real SQLite file, the group committer, the session engine (its
// background loop running) on the simulated meeting platform, the
// platform's signed callbacks fed to the engine, and the HTTP API on a
// real 127.0.0.1 listener, with one app and its key.
type server struct {
	URL   string // the API
	Key   string // the app's API key
	AppID string
	Store *sqlite.DB
	Svc   *session.Service
	Sim   *sim.Platform

	offset atomic.Int64 // added to the session engine's clock (advance)
}

// setup starts a server that stops at the end of the test.
func setup(t testing.TB) *server {
	t.Helper()
	s, stop, err := startServer(t.TempDir(), t.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return s
}

// startServer starts a server keeping its data in dir (also for examples,
// which have no testing.T).
func startServer(dir, name string) (*server, func(), error) {
	db, err := sqlite.Open(filepath.Join(dir, "meetsync.db"), sqlite.Config{})
	if err != nil {
		return nil, nil, fmt.Errorf("open store: %w", err)
	}
	reg := prometheus.NewRegistry()
	ing := ingest.New(db, reg, ingest.Config{})
	platform := sim.New()
	s := &server{Store: db, Sim: platform}
	s.Svc = session.New(session.Config{
		Store: db, Sessions: db, Invitations: db, Appender: ing, Logger: slog.New(slog.DiscardHandler),
		Providers: func(appID string, cfg meetsync.ProviderConfig) (meetsync.Provider, error) {
			if cfg.Kind != meetsync.ProviderSim && cfg.Kind != "" {
				return nil, meetsync.Errorf(meetsync.EINVALID, "the client tests run on the sim platform, not %q", cfg.Kind)
			}
			return platform.Provider(appID), nil
		},
		Now: func() time.Time { return time.Now().Add(time.Duration(s.offset.Load())) },
		// The periodic comparison with the platform is off: a test decides
		// when time passes (advance). Deadlines, retries and invitations
		// are handled by the background loop as in production.
		ReconcileEvery: -1,
	})
	platform.SetCallbackSink(func(ctx context.Context, appID string, h http.Header, body []byte) error {
		_, err := s.Svc.HandleCallback(ctx, meetsync.ProviderSim, appID, h, body) // a retried one is answered as the first time
		return err
	})
	api := httpapi.New(httpapi.Config{
		Store:           db,
		Ingester:        ing,
		Logger:          slog.New(slog.DiscardHandler),
		Registry:        reg,
		StreamHeartbeat: 200 * time.Millisecond,
		URLPolicy:       meetsync.URLPolicy{AllowPrivate: true},
		Sessions:        s.Svc,
		SessionStore:    db,
		InvitationStore: db,
		Types:           schema.New(db, db, schema.Config{Logger: slog.New(slog.DiscardHandler)}),
	})
	now := time.Now().UTC()
	if len(name) > 60 {
		name = name[:60]
	}
	app := &meetsync.App{ID: meetsync.NewID("app"), Name: "app-" + strings.ReplaceAll(name, "/", "-"), CreatedAt: now}
	k, secret := meetsync.NewAPIKey(app.ID, now)
	if err := db.AppCreate(context.Background(), app, k); err != nil {
		platform.Close()
		ing.Close()
		db.Close()
		return nil, nil, fmt.Errorf("create app: %w", err)
	}
	s.Key, s.AppID = secret, app.ID
	srv := httptest.NewServer(api)
	if !strings.HasPrefix(srv.Listener.Addr().String(), "127.0.0.1:") {
		srv.Close()
		platform.Close()
		ing.Close()
		db.Close()
		return nil, nil, fmt.Errorf("test server listens on %s, want 127.0.0.1", srv.Listener.Addr())
	}
	s.URL = srv.URL
	s.Svc.Start()
	stop := func() {
		api.BeginShutdown()
		srv.CloseClientConnections()
		srv.Close()
		platform.Close()
		s.Svc.Close()
		ing.Close()
		db.Close()
	}
	return s, stop, nil
}

// app returns a client with the app key.
func (s *server) app() *client.Client {
	return client.New(s.URL, client.WithAPIKey(s.Key), client.WithRetry(client.Retry{Attempts: 3, Backoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}))
}

// advance moves the session engine's clock forward by d and runs what
// became due (the background loop may run it too: both are safe).
func (s *server) advance(t testing.TB, d time.Duration) {
	t.Helper()
	s.offset.Add(int64(d))
	s.runDue(t)
}

// runDue runs the session engine's due work now (deadlines, invitations
// to settle) instead of waiting for its next tick.
func (s *server) runDue(t testing.TB) {
	t.Helper()
	if _, err := s.Svc.RunDue(context.Background()); err != nil {
		t.Fatalf("run due: %v", err)
	}
}

// events returns every event of a user in the feed, in feed order.
func (s *server) events(t testing.TB, user string, types ...string) []*meetsync.Event {
	t.Helper()
	var all []*meetsync.Event
	after := "0"
	for {
		p, err := s.app().ListEvents(context.Background(), client.EventListParams{After: after, Limit: 1000, UserID: user, Types: types})
		if err != nil {
			t.Fatalf("list events: %v", err)
		}
		if len(p.Events) == 0 {
			return all
		}
		all = append(all, p.Events...)
		after = p.Next
	}
}

// sessionOf returns a user's session sides as the server keeps them.
func (s *server) sessionOf(t testing.TB, user string) (business, meeting string) {
	t.Helper()
	u, err := s.app().GetUser(context.Background(), user)
	if meetsync.ErrorCode(err) == meetsync.ENOTFOUND {
		return meetsync.SideLoggedOut, meetsync.SideLoggedOut
	}
	if err != nil {
		t.Fatal(err)
	}
	return u.Session.Business, u.Session.Meeting
}

// sessionEnded waits until a user's session ended on the server (both
// sides logged out); if it does not, the failure shows the session and
// the user's session events.
func (s *server) sessionEnded(t testing.TB, user string) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		b, m := s.sessionOf(t, user)
		if b == meetsync.SideLoggedOut && m == meetsync.SideLoggedOut {
			return
		}
		if time.Now().After(deadline) {
			var evs []string
			for _, ev := range s.events(t, user, "session.*") {
				evs = append(evs, ev.Type+" "+string(ev.Data))
			}
			t.Fatalf("the server session did not end: business %s, meeting %s; session events:\n%s", b, m, strings.Join(evs, "\n"))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// proxy is a TCP proxy in front of a server that can cut the network:
// while down it drops every connection, open or new.
type proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]bool
}

func newProxy(t testing.TB, targetURL string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: strings.TrimPrefix(targetURL, "http://"), conns: map[net.Conn]bool{}}
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.SetDown(true)
	})
	return p
}

// URL is the proxy's base URL.
func (p *proxy) URL() string { return "http://" + p.ln.Addr().String() }

// SetDown cuts (true) or restores (false) the network.
func (p *proxy) SetDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		for c := range p.conns {
			c.Close()
		}
		clear(p.conns)
	}
}

func (p *proxy) serve() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.pipe(in)
	}
}

func (p *proxy) pipe(in net.Conn) {
	p.mu.Lock()
	down := p.down
	p.mu.Unlock()
	if down {
		in.Close()
		return
	}
	out, err := net.Dial("tcp", p.target)
	if err != nil {
		in.Close()
		return
	}
	p.mu.Lock()
	if p.down {
		p.mu.Unlock()
		in.Close()
		out.Close()
		return
	}
	p.conns[in], p.conns[out] = true, true
	p.mu.Unlock()
	go func() {
		_, _ = io.Copy(out, in)
		out.Close()
		in.Close()
	}()
	_, _ = io.Copy(in, out)
	in.Close()
	out.Close()
}

// errNoNetwork is what a device's requests fail with while its network is off.
var errNoNetwork = errors.New("network unreachable (test: the device is offline)")

// netSwitch is a device's network as an http.RoundTripper (like the
// demo's switchTransport): while it is off every request fails at once,
// and the requests under way — the command stream — are cut.
type netSwitch struct {
	next http.RoundTripper

	mu   sync.Mutex
	off  bool
	live map[*cutBody]context.CancelFunc
}

func newNetSwitch() *netSwitch {
	return &netSwitch{next: http.DefaultTransport, live: map[*cutBody]context.CancelFunc{}}
}

// SetOff cuts (true) or restores (false) the device's network.
func (n *netSwitch) SetOff(off bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.off = off
	if off {
		for b, cancel := range n.live {
			b.cut.Store(true)
			cancel()
		}
		clear(n.live)
	}
}

func (n *netSwitch) RoundTrip(r *http.Request) (*http.Response, error) {
	n.mu.Lock()
	if n.off {
		n.mu.Unlock()
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, errNoNetwork
	}
	ctx, cancel := context.WithCancel(r.Context())
	b := &cutBody{}
	n.live[b] = cancel
	n.mu.Unlock()
	res, err := n.next.RoundTrip(r.WithContext(ctx))
	if err != nil {
		n.forget(b)
		cancel()
		if b.cut.Load() {
			return nil, errNoNetwork
		}
		return nil, err
	}
	b.ReadCloser, b.done = res.Body, func() { n.forget(b); cancel() }
	res.Body = b
	return res, nil
}

func (n *netSwitch) forget(b *cutBody) {
	n.mu.Lock()
	delete(n.live, b)
	n.mu.Unlock()
}

// cutBody is a response body that fails with errNoNetwork once the
// network was cut under it.
type cutBody struct {
	io.ReadCloser
	done func()
	cut  atomic.Bool
}

func (b *cutBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && b.cut.Load() {
		return n, errNoNetwork
	}
	return n, err
}

func (b *cutBody) Close() error {
	err := b.ReadCloser.Close()
	b.done()
	return err
}
