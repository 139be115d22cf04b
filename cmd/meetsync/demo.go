package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/client"
	"github.com/meetsync/meetsync/sim"
	"github.com/meetsync/meetsync/webhook"
)

// runDemo is `meetsync demo`: the server on the sim platform, a sample
// receiver that verifies and prints every webhook, and simulated users
// going through the seed's flows: init, login (one of them while the
// platform is down), a meeting with invitations, a flapping connection,
// an offline spell, and logout.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("meetsync demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:0", "the server's listen address (127.0.0.1:0: any free port)")
	data := fs.String("data", "", "data directory (default: a temporary one, removed at the end)")
	keep := fs.Bool("keep", false, "keep the server running after the script, until Ctrl-C, to explore the API")
	verbose := fs.Bool("v", false, "show the server's log")
	// Flags only: the MEETSYNC_ variables are a real server's settings.
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("demo takes no arguments, got %q", fs.Args())
	}
	dir := *data
	if dir == "" {
		tmp, err := os.MkdirTemp("", "meetsync-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	d := &demo{out: stdout, start: time.Now()}
	logOut := io.Discard
	if *verbose {
		logOut = stderr
	}

	m := NewMain()
	m.Config.Addr, m.Config.Data, m.Config.AllowPrivateEndpoints = *addr, filepath.Join(dir, "server"), true
	m.Config.RetrySchedule = []time.Duration{0, time.Second, 2 * time.Second, 5 * time.Second}
	m.Config.ShutdownTimeout = 5 * time.Second
	m.Logger = slog.New(slog.NewTextHandler(logOut, nil))
	if err := m.Run(ctx); err != nil {
		m.Close()
		return err
	}
	defer m.Close()
	base := "http://" + m.Listener.Addr().String()
	keyBytes, err := os.ReadFile(filepath.Join(m.Config.Data, "bootstrap-key"))
	if err != nil {
		return err
	}
	key := strings.TrimSpace(string(keyBytes))
	d.say("meetsync is running at %s on the built-in sim meeting platform (data in %s)", base, m.Config.Data)
	// A device that loses its connection stays a member for 2 s (NEMeeting keeps it while it reconnects).
	m.Sim.SetMemberTimeout(2 * time.Second)

	// The business system's webhook receiver.
	recv, err := d.startReceiver()
	if err != nil {
		return err
	}
	defer recv.Close()
	api := client.New(base, client.WithAPIKey(key))
	ep, err := api.CreateEndpoint(ctx, client.EndpointParams{URL: client.Ptr(recv.URL), Description: client.Ptr("demo receiver"),
		EventTypes: client.Ptr([]string{"session.*", "meeting.*", "invitation.*", "client.*"})})
	if err != nil {
		return fmt.Errorf("create endpoint: %w", err)
	}
	d.secret.Store(ep.Secret)
	d.say("registered webhook endpoint %s → %s (secret shown once: %s…)", ep.ID, recv.URL, ep.Secret[:12])
	if _, err := api.UpdateApp(ctx, client.AppParams{LoginDeadline: client.Ptr(client.Duration(4 * time.Second)),
		LogoutDeadline: client.Ptr(client.Duration(3 * time.Second))}); err != nil {
		return fmt.Errorf("app settings: %w", err)
	}
	app, err := api.GetApp(ctx)
	if err != nil {
		return err
	}

	// The simulated users, each a device with the meeting SDK and meetsync's Coordinator.
	names := []string{"alice", "bob", "carol", "dave"}
	users := map[string]*demoUser{}
	for _, n := range names {
		u, err := d.newUser(m.Sim, base, key, filepath.Join(dir, "devices", n), n)
		if err != nil {
			return err
		}
		defer u.coord.Close()
		users[n] = u
	}
	alice, bob, carol, dave := users["alice"], users["bob"], users["carol"], users["dave"]

	step := func(format string, args ...any) { d.say("\n== "+format, args...) }
	wait := func(dur time.Duration) {
		select {
		case <-ctx.Done():
		case <-time.After(dur):
		}
	}

	step("1. init and login together (business first, then meeting), alice, bob and carol at once")
	var wg sync.WaitGroup
	for _, u := range []*demoUser{alice, bob, carol} {
		wg.Go(func() {
			if err := u.coord.Init(ctx); err != nil {
				d.say("%s init: %v", u.name, err)
			}
			if err := u.coord.Login(ctx); err != nil {
				d.say("%s login: %v", u.name, err)
			}
		})
	}
	wg.Wait()
	for _, u := range []*demoUser{alice, bob, carol} {
		st := u.coord.State()
		d.say("%s: business %s, meeting %s", u.name, st.Business, st.Meeting)
	}

	step("2. dave logs in while the meeting platform is down: no credentials, retries, then the rollback policy")
	if err := dave.coord.Init(ctx); err != nil {
		d.say("dave init: %v", err)
	}
	m.Sim.SetOutage(true)
	err = dave.coord.Login(ctx)
	d.say("dave login: %v", err)
	m.Sim.SetOutage(false)
	wait(time.Second)
	d.say("dave: business %s, meeting %s: the device rolled the business login back (its logout is in the webhooks)", dave.coord.State().Business, dave.coord.State().Meeting)

	step("3. alice hosts a meeting and invites bob and carol through the business system")
	prov := m.Sim.Provider(app.ID)
	mtg, err := prov.CreateMeeting(ctx, meetsync.MeetingRequest{HostUUID: meetsync.AccountUUID(app.ID, "alice"), Subject: "weekly sync"})
	if err != nil {
		return err
	}
	if err := alice.sdk.JoinMeeting(ctx, mtg.MeetingNum); err != nil {
		return err
	}
	invites, err := api.CreateInvitations(ctx, client.InviteRequest{MeetingNum: mtg.MeetingNum, Inviter: "alice",
		Invitees: []string{"bob", "carol"}, Subject: "weekly sync", ExpiresIn: client.Duration(2 * time.Minute)})
	if err != nil {
		return err
	}
	wait(500 * time.Millisecond)
	for _, inv := range invites {
		switch inv.Invitee {
		case "bob":
			d.say("bob accepts invitation %s and joins meeting %s", inv.ID, mtg.MeetingNum)
			if _, err := bob.coord.AcceptInvitation(ctx, inv.ID); err != nil {
				return err
			}
			if err := bob.sdk.JoinMeeting(ctx, mtg.MeetingNum); err != nil {
				return err
			}
		case "carol":
			d.say("carol rejects invitation %s", inv.ID)
			if _, err := carol.coord.RejectInvitation(ctx, inv.ID, "busy"); err != nil {
				return err
			}
		}
	}
	wait(time.Second)

	step("4. bob's connection flaps: CONNECTING ↔ INMEETING ×3, debounced on the device: it ends where it was, so nothing is sent")
	for i := 0; i < 3; i++ {
		bob.sdk.DropConnection()
		wait(60 * time.Millisecond)
		bob.sdk.Restore()
		wait(60 * time.Millisecond)
	}
	wait(time.Second)

	step("5. carol goes offline (meetsync unreachable), joins the meeting anyway; her events wait in the on-disk queue")
	carol.offline.Store(true)
	if err := carol.sdk.JoinMeeting(ctx, mtg.MeetingNum); err != nil {
		return err
	}
	wait(1500 * time.Millisecond)
	d.say("carol's offline queue holds %d event(s)", carol.coord.State().Queued)
	carol.offline.Store(false)
	d.say("carol is back online: the queue is flushed in order")
	syncCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_ = carol.coord.Sync(syncCtx)
	cancel()
	wait(time.Second)

	step("6. the meeting ends; everyone logs out together (business, then meeting; devices confirm)")
	_ = alice.sdk.LeaveMeeting(ctx)
	_ = bob.sdk.LeaveMeeting(ctx)
	_ = carol.sdk.LeaveMeeting(ctx)
	wait(700 * time.Millisecond)
	for _, u := range []*demoUser{alice, bob, carol} {
		wg.Go(func() {
			if err := u.coord.Logout(ctx); err != nil {
				d.say("%s logout: %v", u.name, err)
			}
		})
	}
	wg.Wait()
	wait(2 * time.Second)

	step("summary")
	for _, n := range names {
		u, err := api.GetUser(ctx, n)
		if err != nil {
			d.say("%-6s %v", n, err)
			continue
		}
		d.say("%-6s session business=%s meeting=%s; meeting status %s; last seq %d", n, u.Session.Business, u.Session.Meeting, u.Meeting.Status, u.LastSeq)
	}
	d.say("%d webhooks received, every signature verified: %v", d.received.Load(), d.badSigs.Load() == 0)
	if *keep {
		d.say("\nthe server keeps running at %s; API key: %s (Ctrl-C to stop)", base, key)
		d.say("the dashboard: %s/dashboard/ (sign in with that key)", base)
		<-ctx.Done()
	}
	return nil
}

type demo struct {
	out      io.Writer
	mu       sync.Mutex
	start    time.Time
	secret   atomic.Value // string
	received atomic.Int64
	badSigs  atomic.Int64
}

func (d *demo) say(format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintf(d.out, format+"\n", args...)
}

type demoReceiver struct {
	URL string
	srv *http.Server
}

func (r *demoReceiver) Close() { _ = r.srv.Close() }

// startReceiver runs the business system's webhook receiver: it verifies
// each signature and prints each webhook in one line.
func (d *demo) startReceiver() (*demoReceiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		secret, _ := d.secret.Load().(string)
		if err := webhook.Verify(secret, r.Header, body); err != nil {
			d.badSigs.Add(1)
			d.say("  ✗ webhook with a bad signature: %v", err)
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		d.received.Add(1)
		var ev struct {
			Type   string         `json:"type"`
			UserID string         `json:"user_id"`
			Seq    int64          `json:"seq"`
			Stale  bool           `json:"stale"`
			Data   map[string]any `json:"data"`
		}
		_ = json.Unmarshal(body, &ev)
		d.say("  webhook ✓ %-7s #%-2d %-24s %s", ev.UserID, ev.Seq, ev.Type, summarize(ev.Type, ev.Data, ev.Stale))
		w.WriteHeader(http.StatusNoContent)
	})}
	go func() { _ = srv.Serve(ln) }()
	return &demoReceiver{URL: "http://" + ln.Addr().String() + "/webhooks", srv: srv}, nil
}

// summarize picks the telling fields of an event's data.
func summarize(typ string, data map[string]any, stale bool) string {
	var parts []string
	for _, k := range []string{"status", "reason", "meeting_num", "business", "meeting", "state", "invitee", "forced", "platform_revoked", "policy", "attempt", "kind"} {
		if v, ok := data[k]; ok && v != "" {
			if k == "reason" && v == "by_self" {
				continue
			}
			parts = append(parts, fmt.Sprintf("%s=%v", k, v))
		}
	}
	if stale {
		parts = append(parts, "STALE")
	}
	return strings.Join(parts, " ")
}

// demoUser is one simulated device: the sim meeting SDK and a Coordinator
// whose connection to meetsync can be cut (an offline spell).
type demoUser struct {
	name    string
	sdk     *sim.SDK
	coord   *client.Coordinator
	offline atomic.Bool
}

func (d *demo) newUser(p *sim.Platform, base, key, dir, name string) (*demoUser, error) {
	u := &demoUser{name: name, sdk: p.NewSDK("")}
	hc := &http.Client{Transport: &switchTransport{off: &u.offline, next: http.DefaultTransport}}
	c, err := client.NewCoordinator(client.Config{
		Client:        client.New(base, client.WithHTTPClient(hc)),
		SDK:           u.sdk,
		Business:      &client.APIBusiness{Client: client.New(base, client.WithAPIKey(key)), UserID: name, DeviceID: name + "-laptop", DisplayName: name},
		QueueDir:      dir,
		LoginAttempts: 3,
		LoginBackoff:  300 * time.Millisecond,
		SendBackoff:   200 * time.Millisecond,
		OnInvitation: func(inv client.Invitation) {
			d.say("  %s's device: invitation to meeting %s from %s", name, inv.MeetingNum, inv.Inviter)
		},
	})
	if err != nil {
		return nil, err
	}
	u.coord = c
	return u, nil
}

// switchTransport fails every request while off is set, like a device
// without network.
type switchTransport struct {
	off  *atomic.Bool
	next http.RoundTripper
}

func (t *switchTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if t.off.Load() {
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, errors.New("network unreachable (demo offline spell)")
	}
	return t.next.RoundTrip(r)
}
