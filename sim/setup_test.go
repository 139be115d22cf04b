package sim_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/sim"
)

const appID = "app_test"

// setup returns an in-memory platform (closed when the test ends) and the
// Provider of appID.
func setup(t *testing.T) (*sim.Platform, meetsync.Provider) {
	t.Helper()
	p := sim.New()
	t.Cleanup(func() { p.Close() })
	return p, p.Provider(appID)
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// account provisions a meeting account.
func account(t *testing.T, pr meetsync.Provider, uuid string) *meetsync.MeetingAccount {
	t.Helper()
	acct, err := pr.EnsureAccount(ctxT(t), meetsync.AccountRequest{UserUUID: uuid, DisplayName: strings.ToUpper(uuid)})
	if err != nil {
		t.Fatalf("EnsureAccount(%s): %v", uuid, err)
	}
	return acct
}

// wantCode fails the test unless err is a *meetsync.Error with code.
func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if got := meetsync.ErrorCode(err); got != code {
		t.Fatalf("error = %v (code %q), want code %q", err, got, code)
	}
}

// recorder is an SDK listener that records what it hears.
type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) OnMeetingStatusChanged(status meetsync.MeetingStatus, arg meetsync.Reason, meetingNum string) {
	r.add(fmt.Sprintf("%s/%s@%s", status, arg, meetingNum))
}
func (r *recorder) OnKickOut()         { r.add("kick_out") }
func (r *recorder) OnAuthInfoExpired() { r.add("auth_info_expired") }

func (r *recorder) add(s string) {
	r.mu.Lock()
	r.events = append(r.events, s)
	r.mu.Unlock()
}

// take returns and forgets what was recorded, after the SDK's queued
// listener calls have all been made.
func (r *recorder) take(t *testing.T, sdk *sim.SDK) []string {
	t.Helper()
	if err := sdk.Flush(ctxT(t)); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.events
	r.events = nil
	return out
}

func wantEvents(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("%s:\n got  %q\n want %q", what, got, want)
	}
}

// device is an SDK logged in as acct with a recorder.
func device(t *testing.T, p *sim.Platform, acct *meetsync.MeetingAccount) (*sim.SDK, *recorder) {
	t.Helper()
	sdk := p.NewSDK(p.AppKey(appID))
	rec := &recorder{}
	sdk.SetListener(rec)
	if err := sdk.Init(ctxT(t)); err != nil {
		t.Fatalf("Init: %v", err)
	}
	if err := sdk.Login(ctxT(t), *acct); err != nil {
		t.Fatalf("Login: %v", err)
	}
	return sdk, rec
}

// received is one callback the sink got, verified.
type received struct {
	header http.Header
	body   []byte
	cb     *meetsync.Callback
}

// collector is a callback sink that verifies each callback with the
// provider and can be told to fail.
type collector struct {
	t  *testing.T
	pr meetsync.Provider

	mu   sync.Mutex
	got  []received
	fail func(body []byte, attempt int) error // nil: accept
	seen map[string]int                       // body → attempts
	ch   chan struct{}
}

func newCollector(t *testing.T, p *sim.Platform, pr meetsync.Provider) *collector {
	c := &collector{t: t, pr: pr, seen: map[string]int{}, ch: make(chan struct{}, 1000)}
	p.SetCallbackSink(c.sink)
	return c
}

func (c *collector) sink(ctx context.Context, app string, h http.Header, body []byte) error {
	c.mu.Lock()
	c.seen[string(body)]++
	attempt := c.seen[string(body)]
	fail := c.fail
	c.mu.Unlock()
	if app != appID {
		c.t.Errorf("callback for app %q, want %q", app, appID)
	}
	if fail != nil {
		if err := fail(body, attempt); err != nil {
			return err
		}
	}
	cb, err := c.pr.VerifyCallback(h, body, time.Now())
	if err != nil {
		c.t.Errorf("VerifyCallback of the platform's own callback: %v", err)
		return err
	}
	c.mu.Lock()
	c.got = append(c.got, received{h.Clone(), body, cb})
	c.mu.Unlock()
	c.ch <- struct{}{}
	return nil
}

// wait returns the callbacks accepted so far once there are at least n.
func (c *collector) wait(t *testing.T, n int) []received {
	t.Helper()
	ctx := ctxT(t)
	for {
		c.mu.Lock()
		if len(c.got) >= n {
			out := append([]received(nil), c.got...)
			c.mu.Unlock()
			return out
		}
		c.mu.Unlock()
		select {
		case <-c.ch:
		case <-ctx.Done():
			t.Fatalf("waited for %d callbacks, got %d", n, len(c.got))
		}
	}
}

// types returns "type:user@meeting" of each callback's events.
func types(rs []received) []string {
	var out []string
	for _, r := range rs {
		for _, e := range r.cb.Events {
			s := e.Type
			if e.UserUUID != "" {
				s += ":" + e.UserUUID
			}
			out = append(out, s)
		}
	}
	return out
}
