package client_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/client"
	"github.com/meetsync/meetsync/httpapi"
	"github.com/meetsync/meetsync/ingest"
	"github.com/meetsync/meetsync/sqlite"
)

// wait is a deadline for asynchronous outcomes, not an expectation.
const wait = 20 * time.Second

// server is one running meetsync for a test: a real SQLite file, the
// group committer and the HTTP API on a real 127.0.0.1 listener, with one
// app and its key.
//
// The session routes of docs/sessions.md (/v1/users/{id}/login|logout,
// /v1/client/…) are served by the real API when it has them. Until it
// does, a contract shim in front of it serves them (see shim): the
// Coordinator's tests then run against the contract as documented, with
// every event still stored by the real server. Tests that check the real
// server's own session behaviour use needSessionRoutes and skip meanwhile.
type server struct {
	URL   string // the API (or the shim in front of it)
	Key   string // the app's API key
	AppID string
	Store *sqlite.DB
	shim  *shim // nil when the API has the session routes
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
	api := httpapi.New(httpapi.Config{
		Store:           db,
		Ingester:        ing,
		Logger:          slog.New(slog.DiscardHandler),
		Registry:        reg,
		StreamHeartbeat: 200 * time.Millisecond,
		URLPolicy:       meetsync.URLPolicy{AllowPrivate: true},
	})
	now := time.Now().UTC()
	if len(name) > 60 {
		name = name[:60]
	}
	app := &meetsync.App{ID: meetsync.NewID("app"), Name: "app-" + strings.ReplaceAll(name, "/", "-"), CreatedAt: now}
	k, secret := meetsync.NewAPIKey(app.ID, now)
	if err := db.AppCreate(context.Background(), app, k); err != nil {
		return nil, nil, fmt.Errorf("create app: %w", err)
	}
	s := &server{Key: secret, AppID: app.ID, Store: db}
	var h http.Handler = api
	if !hasSessionRoutes(api, secret) {
		s.shim = newShim(api, secret)
		h = s.shim
	}
	srv := httptest.NewServer(h)
	if !strings.HasPrefix(srv.Listener.Addr().String(), "127.0.0.1:") {
		srv.Close()
		return nil, nil, fmt.Errorf("test server listens on %s, want 127.0.0.1", srv.Listener.Addr())
	}
	s.URL = srv.URL
	stop := func() {
		api.BeginShutdown()
		if s.shim != nil {
			s.shim.close()
		}
		srv.CloseClientConnections()
		srv.Close()
		ing.Close()
		db.Close()
	}
	return s, stop, nil
}

// hasSessionRoutes reports whether the API serves POST /v1/users/{id}/login.
func hasSessionRoutes(api http.Handler, key string) bool {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/v1/users/route-probe/login", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer "+key)
	api.ServeHTTP(rec, req)
	return !isNoRoute(rec.Code, rec.Body.Bytes())
}

func isNoRoute(status int, body []byte) bool {
	return status == http.StatusNotFound && strings.Contains(string(body), "no route")
}

// needSessionRoutes skips a test of the real server's session behaviour
// while the API does not have the session routes yet.
func needSessionRoutes(t *testing.T, s *server) {
	t.Helper()
	if s.shim != nil {
		t.Skip("the API has no session routes yet (docs/sessions.md): POST /v1/users/{id}/login answers 404 no route")
	}
}

// needShim skips a test that drives a server-side fault only the shim can inject.
func needShim(t *testing.T, s *server) {
	t.Helper()
	if s.shim == nil {
		t.Skip("needs the contract shim's fault knobs; port this test to the sim provider's knobs")
	}
}

// app returns a client with the app key.
func (s *server) app() *client.Client {
	return client.New(s.URL, client.WithAPIKey(s.Key), client.WithRetry(client.Retry{Attempts: 3, Backoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}))
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

// shim serves the session routes of docs/sessions.md in front of an API
// that does not have them yet, as the contract describes them, and passes
// everything else through. It keeps sessions, tokens and commands in
// memory; what reaches the event log (client.initialized, the client's
// events) is posted to the real API with the app key, so the store, the
// ingest rules (client_seq idempotency, stale detection) and the feed are
// the real ones.
type shim struct {
	next http.Handler
	key  string

	mu       sync.Mutex
	tokens   map[string]*shimToken
	sessions map[string]*shimSession // by user
	cmds     map[string][]*client.Command
	signal   chan struct{} // closed at each change of cmds
	closing  chan struct{}
	n        int

	// Knobs.
	platformDown bool // login answers meeting:null, credentials 503
	// Records.
	loginReports map[string][]client.Result // by user
}

type shimToken struct {
	user, device string
	revoked      bool
}

type shimSession struct {
	id, business, meeting string
	devices               map[string]bool // device ids
	tokens                []string
}

func newShim(next http.Handler, key string) *shim {
	return &shim{next: next, key: key, tokens: map[string]*shimToken{}, sessions: map[string]*shimSession{},
		cmds: map[string][]*client.Command{}, signal: make(chan struct{}), closing: make(chan struct{}),
		loginReports: map[string][]client.Result{}}
}

func (s *shim) close() { close(s.closing) }

func (s *shim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case strings.HasPrefix(p, "/v1/users/") && (strings.HasSuffix(p, "/login") || strings.HasSuffix(p, "/logout")) && r.Method == "POST":
		if r.Header.Get("Authorization") != "Bearer "+s.key {
			shimError(w, http.StatusUnauthorized, meetsync.EUNAUTHORIZED, "missing or invalid API key")
			return
		}
		user := strings.TrimPrefix(p, "/v1/users/")
		if u, ok := strings.CutSuffix(user, "/login"); ok {
			s.login(w, r, u)
		} else {
			s.logout(w, r, strings.TrimSuffix(user, "/logout"))
		}
	case strings.HasPrefix(p, "/v1/client/"):
		tok, ok := s.auth(r)
		if !ok {
			shimError(w, http.StatusUnauthorized, meetsync.EUNAUTHORIZED, "missing, invalid or revoked client token")
			return
		}
		s.clientRoute(w, r, tok)
	default:
		s.next.ServeHTTP(w, r)
	}
}

func shimError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

func shimJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *shim) auth(r *http.Request) (*shimToken, bool) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tokens[tok]
	if t == nil || t.revoked {
		return nil, false
	}
	return t, true
}

func randomHex() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *shim) account(user string) *meetsync.MeetingAccount {
	s.n++
	return &meetsync.MeetingAccount{Provider: "sim", AppKey: "sim-app", UserUUID: "uuid-" + user, UserToken: fmt.Sprintf("token-%s-%d", user, s.n)}
}

func (s *shim) login(w http.ResponseWriter, r *http.Request, user string) {
	var in client.LoginRequest
	_ = json.NewDecoder(r.Body).Decode(&in)
	if in.DeviceID == "" {
		in.DeviceID = "default"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ses := s.sessions[user]
	if ses != nil && ses.business == meetsync.SideLoggingOut {
		shimError(w, http.StatusConflict, meetsync.ECONFLICT, "the user's session is logging out")
		return
	}
	if ses == nil {
		ses = &shimSession{id: "ses_" + randomHex(), devices: map[string]bool{}}
		s.sessions[user] = ses
	}
	ses.business, ses.meeting = meetsync.SideLoggedIn, meetsync.SidePending
	ses.devices[in.DeviceID] = true
	tok := meetsync.ClientTokenPrefix + randomHex()
	s.tokens[tok] = &shimToken{user: user, device: in.DeviceID}
	ses.tokens = append(ses.tokens, tok)
	var acct *meetsync.MeetingAccount
	if !s.platformDown {
		acct = s.account(user)
	}
	now := time.Now().UTC()
	shimJSON(w, http.StatusOK, map[string]any{"session_id": ses.id, "business": ses.business, "meeting_side": ses.meeting,
		"deadline": now.Add(time.Minute), "meeting": acct, "client_token": tok, "expires_at": now.Add(24 * time.Hour)})
}

func (s *shim) logout(w http.ResponseWriter, r *http.Request, user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ses := s.sessions[user]
	if ses == nil || ses.business == meetsync.SideLoggedOut {
		shimError(w, http.StatusNotFound, meetsync.ENOTFOUND, "the user has no open session")
		return
	}
	ses.business, ses.meeting = meetsync.SideLoggingOut, meetsync.SideLoggingOut
	for dev := range ses.devices {
		s.pushLocked(user, dev, client.CommandLogout, json.RawMessage(`{"reason":"logout"}`))
	}
	shimJSON(w, http.StatusAccepted, map[string]any{"session_id": ses.id, "state": meetsync.SideLoggingOut, "deadline": time.Now().UTC().Add(30 * time.Second)})
}

// push sends a command to a device (a knob: invitations).
func (s *shim) push(user, device, typ string, data json.RawMessage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pushLocked(user, device, typ, data)
}

func (s *shim) pushLocked(user, device, typ string, data json.RawMessage) {
	s.n++
	cmd := &client.Command{ID: fmt.Sprintf("cmd_%d", s.n), Type: typ, Data: data, CreatedAt: time.Now().UTC()}
	s.cmds[user+"/"+device] = append(s.cmds[user+"/"+device], cmd)
	close(s.signal)
	s.signal = make(chan struct{})
}

// session returns a user's session sides ("" if none).
func (s *shim) session(user string) (business, meeting string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ses := s.sessions[user]; ses != nil {
		return ses.business, ses.meeting
	}
	return meetsync.SideLoggedOut, meetsync.SideLoggedOut
}

func (s *shim) setPlatformDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.platformDown = down
}

func (s *shim) reports(user string) []client.Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]client.Result(nil), s.loginReports[user]...)
}

func (s *shim) clientRoute(w http.ResponseWriter, r *http.Request, tok *shimToken) {
	p := strings.TrimPrefix(r.URL.Path, "/v1/client/")
	switch {
	case p == "init" && r.Method == "POST":
		var in client.InitReport
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			shimError(w, http.StatusBadRequest, meetsync.EINVALID, err.Error())
			return
		}
		data, _ := json.Marshal(in)
		body, _ := json.Marshal(map[string]any{"type": meetsync.TypeClientInitialized, "user_id": tok.user, "device_id": tok.device, "data": json.RawMessage(data)})
		rec := s.forward("/v1/events", body)
		if rec.Code != http.StatusOK {
			copyResponse(w, rec)
			return
		}
		var res struct {
			Events []client.EventResult `json:"events"`
		}
		_ = json.Unmarshal(rec.Body.Bytes(), &res)
		now := time.Now().UTC()
		shimJSON(w, http.StatusOK, map[string]any{"event": &meetsync.Event{ID: res.Events[0].ID, Type: meetsync.TypeClientInitialized,
			UserID: tok.user, Seq: res.Events[0].Seq, DeviceID: tok.device, Source: meetsync.SourceClient, OccurredAt: now, ReceivedAt: now, Data: data}})
	case p == "login" && r.Method == "POST":
		var in client.Result
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			shimError(w, http.StatusBadRequest, meetsync.EINVALID, err.Error())
			return
		}
		s.mu.Lock()
		s.loginReports[tok.user] = append(s.loginReports[tok.user], in)
		ses := s.sessions[tok.user]
		if in.OK {
			ses.meeting = meetsync.SideLoggedIn
		}
		out := client.Session{ID: ses.id, Business: ses.business, Meeting: ses.meeting, Policy: client.PolicyRollback}
		s.mu.Unlock()
		shimJSON(w, http.StatusOK, map[string]any{"session": out})
	case p == "credentials" && r.Method == "POST":
		s.mu.Lock()
		down := s.platformDown
		var acct *meetsync.MeetingAccount
		if !down {
			acct = s.account(tok.user)
		}
		s.mu.Unlock()
		if down {
			shimError(w, http.StatusServiceUnavailable, meetsync.EUNAVAILABLE, "the meeting platform cannot be reached")
			return
		}
		shimJSON(w, http.StatusOK, map[string]any{"meeting": acct})
	case p == "events" && r.Method == "POST":
		s.clientEvents(w, r, tok)
	case p == "commands" && r.Method == "GET":
		s.commands(w, r, tok)
	case strings.HasPrefix(p, "commands/") && strings.HasSuffix(p, "/ack") && r.Method == "POST":
		s.ack(w, tok, strings.TrimSuffix(strings.TrimPrefix(p, "commands/"), "/ack"))
	default:
		shimError(w, http.StatusNotFound, meetsync.ENOTFOUND, "no route "+r.Method+" "+r.URL.Path)
	}
}

// forward posts body to the real API with the app key.
func (s *shim) forward(path string, body []byte) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", path, strings.NewReader(string(body)))
	req.Header.Set("Authorization", "Bearer "+s.key)
	req.Header.Set("Content-Type", "application/json")
	s.next.ServeHTTP(rec, req)
	return rec
}

func copyResponse(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

// clientEvents is POST /v1/events with user and device from the token.
func (s *shim) clientEvents(w http.ResponseWriter, r *http.Request, tok *shimToken) {
	var in struct {
		Events []map[string]any `json:"events"`
	}
	b, _ := io.ReadAll(r.Body)
	var single map[string]any
	if err := json.Unmarshal(b, &in); err != nil || in.Events == nil {
		if err := json.Unmarshal(b, &single); err != nil {
			shimError(w, http.StatusBadRequest, meetsync.EINVALID, "malformed JSON")
			return
		}
		in.Events = []map[string]any{single}
	}
	for i, ev := range in.Events {
		for field, want := range map[string]string{"user_id": tok.user, "device_id": tok.device} {
			if v, ok := ev[field].(string); ok && v != "" && v != want {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusForbidden)
				_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": meetsync.EFORBIDDEN,
					"message": "a client token can only post events of its own user and device", "field": fmt.Sprintf("events[%d].%s", i, field)}})
				return
			}
			ev[field] = want
		}
	}
	var body []byte
	if single != nil {
		body, _ = json.Marshal(single)
	} else {
		body, _ = json.Marshal(in)
	}
	copyResponse(w, s.forward("/v1/events", body))
}

// pending returns a device's unacknowledged commands and the change signal.
func (s *shim) pending(tok *shimToken) ([]*client.Command, chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*client.Command(nil), s.cmds[tok.user+"/"+tok.device]...), s.signal
}

func (s *shim) commands(w http.ResponseWriter, r *http.Request, tok *shimToken) {
	if !strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
		cmds, _ := s.pending(tok)
		if cmds == nil {
			cmds = []*client.Command{}
		}
		shimJSON(w, http.StatusOK, map[string]any{"commands": cmds})
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_, _ = io.WriteString(w, "retry: 100\n\n")
	_ = rc.Flush()
	sent := map[string]bool{}
	for {
		cmds, signal := s.pending(tok)
		for _, c := range cmds {
			if sent[c.ID] {
				continue
			}
			sent[c.ID] = true
			b, _ := json.Marshal(c)
			if _, err := fmt.Fprintf(w, "event: command\nid: %s\ndata: %s\n\n", c.ID, b); err != nil {
				return
			}
		}
		_ = rc.Flush()
		select {
		case <-signal:
		case <-r.Context().Done():
			return
		case <-s.closing:
			return
		case <-time.After(200 * time.Millisecond):
			if _, err := io.WriteString(w, ": keep-alive\n\n"); err != nil {
				return
			}
		}
		if _, ok := s.auth(r); !ok {
			return
		}
	}
}

func (s *shim) ack(w http.ResponseWriter, tok *shimToken, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := tok.user + "/" + tok.device
	var found *client.Command
	for i, c := range s.cmds[k] {
		if c.ID == id {
			found = c
			s.cmds[k] = append(s.cmds[k][:i:i], s.cmds[k][i+1:]...)
			break
		}
	}
	if found == nil {
		// Acknowledged already: harmless.
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if found.Type == client.CommandLogout {
		// The session ends once no device has a logout to confirm.
		ses := s.sessions[tok.user]
		left := false
		for dev := range ses.devices {
			for _, c := range s.cmds[tok.user+"/"+dev] {
				left = left || c.Type == client.CommandLogout
			}
		}
		if !left {
			ses.business, ses.meeting = meetsync.SideLoggedOut, meetsync.SideLoggedOut
			for _, t := range ses.tokens {
				s.tokens[t].revoked = true
			}
			delete(s.sessions, tok.user)
		}
	}
	close(s.signal)
	s.signal = make(chan struct{})
	w.WriteHeader(http.StatusNoContent)
}
