package sim_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/sim"
)

func TestEnsureAccount(t *testing.T) {
	t.Parallel()
	p, pr := setup(t)
	ctx := ctxT(t)
	if pr.Kind() != meetsync.ProviderSim {
		t.Fatalf("Kind = %q", pr.Kind())
	}
	a1, err := pr.EnsureAccount(ctx, meetsync.AccountRequest{UserUUID: "u1", DisplayName: "Alice"})
	if err != nil {
		t.Fatal(err)
	}
	if a1.Provider != meetsync.ProviderSim || a1.UserUUID != "u1" || a1.UserToken == "" || a1.AppKey != p.AppKey(appID) {
		t.Fatalf("account = %+v", a1)
	}
	// Idempotent: same account, same token; a new name renames it.
	a2, err := pr.EnsureAccount(ctx, meetsync.AccountRequest{UserUUID: "u1", DisplayName: "Alice B."})
	if err != nil {
		t.Fatal(err)
	}
	if *a2 != *a1 {
		t.Fatalf("second EnsureAccount = %+v, want %+v", a2, a1)
	}
	got, err := pr.LookupAccounts(ctx, []string{"u1", "nobody"})
	if err != nil {
		t.Fatal(err)
	}
	want := []meetsync.PlatformAccount{{UserUUID: "u1", Exists: true, Name: "Alice B."}, {UserUUID: "nobody"}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("LookupAccounts = %+v, want %+v", got, want)
	}
	// The name defaults to the uuid.
	a3 := account(t, pr, "u3")
	if v := p.View(appID); len(v.Accounts) != 2 || v.Accounts[1].Name != "U3" || a3.UserToken == a1.UserToken {
		t.Fatalf("view = %+v", v)
	}
}

func TestProviderValidation(t *testing.T) {
	t.Parallel()
	_, pr := setup(t)
	ctx := ctxT(t)
	account(t, pr, "host")
	tests := []struct {
		name  string
		call  func() error
		field string
	}{
		{"empty uuid", func() error { _, err := pr.EnsureAccount(ctx, meetsync.AccountRequest{}); return err }, "user_uuid"},
		{"uuid with space", func() error {
			_, err := pr.EnsureAccount(ctx, meetsync.AccountRequest{UserUUID: "a b"})
			return err
		}, "user_uuid"},
		{"uuid too long", func() error {
			_, err := pr.EnsureAccount(ctx, meetsync.AccountRequest{UserUUID: strings.Repeat("x", 129)})
			return err
		}, "user_uuid"},
		{"long name", func() error {
			_, err := pr.EnsureAccount(ctx, meetsync.AccountRequest{UserUUID: "u", DisplayName: strings.Repeat("名", 65)})
			return err
		}, "display_name"},
		{"revoke empty", func() error { _, err := pr.RevokeToken(ctx, ""); return err }, "user_uuid"},
		{"ban empty", func() error { return pr.SetBanned(ctx, "", true) }, "user_uuid"},
		{"meeting without host", func() error { _, err := pr.CreateMeeting(ctx, meetsync.MeetingRequest{}); return err }, "host_uuid"},
		{"long subject", func() error {
			_, err := pr.CreateMeeting(ctx, meetsync.MeetingRequest{HostUUID: "host", Subject: strings.Repeat("s", 129)})
			return err
		}, "subject"},
		{"bad password", func() error {
			_, err := pr.CreateMeeting(ctx, meetsync.MeetingRequest{HostUUID: "host", Password: "with space"})
			return err
		}, "password"},
		{"end before start", func() error {
			now := time.Now()
			_, err := pr.CreateMeeting(ctx, meetsync.MeetingRequest{HostUUID: "host", StartTime: now, EndTime: now.Add(-time.Hour)})
			return err
		}, "end_time"},
		{"meeting empty num", func() error { _, err := pr.Meeting(ctx, ""); return err }, "meeting_num"},
		{"cancel empty num", func() error { return pr.CancelMeeting(ctx, "") }, "meeting_num"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			wantCode(t, err, meetsync.EINVALID)
			if f := meetsync.ErrorField(err); f != tt.field {
				t.Fatalf("field = %q, want %q (%v)", f, tt.field, err)
			}
		})
	}
}

func TestProviderNotFound(t *testing.T) {
	t.Parallel()
	p, pr := setup(t)
	ctx := ctxT(t)
	_, err := pr.RevokeToken(ctx, "ghost")
	wantCode(t, err, meetsync.ENOTFOUND)
	wantCode(t, pr.SetBanned(ctx, "ghost", true), meetsync.ENOTFOUND)
	_, err = pr.CreateMeeting(ctx, meetsync.MeetingRequest{HostUUID: "ghost"})
	wantCode(t, err, meetsync.ENOTFOUND)
	_, err = pr.Meeting(ctx, "123")
	wantCode(t, err, meetsync.ENOTFOUND)
	wantCode(t, pr.CancelMeeting(ctx, "123"), meetsync.ENOTFOUND)

	// Another app's view holds neither this app's accounts nor its meetings.
	account(t, pr, "host")
	m, err := pr.CreateMeeting(ctx, meetsync.MeetingRequest{HostUUID: "host"})
	if err != nil {
		t.Fatal(err)
	}
	other := p.Provider("app_other")
	_, err = other.Meeting(ctx, m.MeetingNum)
	wantCode(t, err, meetsync.ENOTFOUND)
	_, err = other.RevokeToken(ctx, "host")
	wantCode(t, err, meetsync.ENOTFOUND)
	if p.AppKey("app_other") == p.AppKey(appID) {
		t.Fatal("two apps share an app key")
	}
}

func TestMeetingLifecycle(t *testing.T) {
	t.Parallel()
	p, pr := setup(t)
	ctx := ctxT(t)
	account(t, pr, "host")
	start := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	m, err := pr.CreateMeeting(ctx, meetsync.MeetingRequest{HostUUID: "host", StartTime: start, EndTime: start.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if m.State != meetsync.MeetingStateScheduled || m.Subject != "HOST's meeting" || m.HostUUID != "host" ||
		len(m.MeetingNum) != 9 || len(m.Members) != 0 || !m.StartTime.Equal(start) {
		t.Fatalf("created = %+v", m)
	}
	m2, err := pr.CreateMeeting(ctx, meetsync.MeetingRequest{HostUUID: "host", Subject: "Standup"})
	if err != nil {
		t.Fatal(err)
	}
	if m2.MeetingNum == m.MeetingNum || m2.Subject != "Standup" {
		t.Fatalf("second meeting = %+v", m2)
	}
	// Canceling a scheduled meeting cancels it; again is harmless.
	if err := pr.CancelMeeting(ctx, m.MeetingNum); err != nil {
		t.Fatal(err)
	}
	if err := pr.CancelMeeting(ctx, m.MeetingNum); err != nil {
		t.Fatal(err)
	}
	got, err := pr.Meeting(ctx, m.MeetingNum)
	if err != nil || got.State != meetsync.MeetingStateCanceled {
		t.Fatalf("Meeting = %+v, %v", got, err)
	}
	// A banned host cannot create meetings.
	if err := pr.SetBanned(ctx, "host", true); err != nil {
		t.Fatal(err)
	}
	_, err = pr.CreateMeeting(ctx, meetsync.MeetingRequest{HostUUID: "host"})
	wantCode(t, err, meetsync.EFORBIDDEN)
	acc, _ := pr.LookupAccounts(ctx, []string{"host"})
	if !acc[0].Banned {
		t.Fatalf("LookupAccounts = %+v", acc)
	}
	if v := p.View(appID); len(v.Meetings) != 2 {
		t.Fatalf("view meetings = %+v", v.Meetings)
	}
}

// Every Provider method fails with EUNAVAILABLE during an outage and works
// again after it.
func TestOutage(t *testing.T) {
	t.Parallel()
	p, pr := setup(t)
	ctx := ctxT(t)
	account(t, pr, "host")
	m, err := pr.CreateMeeting(ctx, meetsync.MeetingRequest{HostUUID: "host"})
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]func() error{
		"EnsureAccount": func() error {
			_, err := pr.EnsureAccount(ctx, meetsync.AccountRequest{UserUUID: "new"})
			return err
		},
		"RevokeToken":    func() error { _, err := pr.RevokeToken(ctx, "host"); return err },
		"SetBanned":      func() error { return pr.SetBanned(ctx, "host", false) },
		"LookupAccounts": func() error { _, err := pr.LookupAccounts(ctx, []string{"host"}); return err },
		"CreateMeeting": func() error {
			_, err := pr.CreateMeeting(ctx, meetsync.MeetingRequest{HostUUID: "host"})
			return err
		},
		"Meeting":       func() error { _, err := pr.Meeting(ctx, m.MeetingNum); return err },
		"CancelMeeting": func() error { return pr.CancelMeeting(ctx, m.MeetingNum) },
		"Invite":        func() error { return p.Invite(ctx, appID, m.MeetingNum, "", "host") },
		"RemoveMember":  func() error { return p.RemoveMember(ctx, appID, m.MeetingNum, "host") },
	}
	before := p.Stats()
	p.SetOutage(true)
	for name, call := range calls {
		err := call()
		wantCode(t, err, meetsync.EUNAVAILABLE)
		if !strings.Contains(err.Error(), "outage") {
			t.Errorf("%s: %v does not say outage", name, err)
		}
	}
	after := p.Stats()
	if after.Failed-before.Failed != int64(len(calls)) {
		t.Fatalf("Failed counted %d, want %d", after.Failed-before.Failed, len(calls))
	}
	for name := range calls {
		if after.Calls[name]-before.Calls[name] != 1 {
			t.Errorf("Calls[%s] = %d, want one more than %d", name, after.Calls[name], before.Calls[name])
		}
	}
	if _, err := pr.Meeting(ctx, m.MeetingNum); err == nil {
		t.Fatal("outage: the meeting was read")
	}
	// Nothing was changed by the failed calls.
	if v := p.View(appID); len(v.Accounts) != 1 || len(v.Meetings) != 1 {
		t.Fatalf("view after outage = %+v", v)
	}
	p.SetOutage(false)
	if _, err := pr.Meeting(ctx, m.MeetingNum); err != nil {
		t.Fatalf("after the outage: %v", err)
	}
}

// The error rate fails about that fraction of calls, the same ones for the
// same seed.
func TestErrorRate(t *testing.T) {
	t.Parallel()
	p, pr := setup(t)
	ctx := ctxT(t)
	run := func(seed uint64) []bool {
		p.SetErrorRate(0.3, seed)
		out := make([]bool, 400)
		for i := range out {
			_, err := pr.LookupAccounts(ctx, []string{"x"})
			if err != nil {
				wantCode(t, err, meetsync.EUNAVAILABLE)
			}
			out[i] = err != nil
		}
		return out
	}
	a := run(7)
	failed := 0
	for _, f := range a {
		if f {
			failed++
		}
	}
	if failed < 80 || failed > 160 { // 30% of 400 is 120
		t.Fatalf("%d of 400 calls failed at rate 0.3", failed)
	}
	b := run(7)
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("same seed, call %d: %v then %v", i, a[i], b[i])
		}
	}
	p.SetErrorRate(1, 1)
	_, err := pr.LookupAccounts(ctx, nil)
	wantCode(t, err, meetsync.EUNAVAILABLE)
	p.SetErrorRate(0, 1)
	if _, err := pr.LookupAccounts(ctx, nil); err != nil {
		t.Fatal(err)
	}
}

// A call slower than its context fails with EUNAVAILABLE; a closed
// platform refuses calls.
func TestLatencyAndClose(t *testing.T) {
	t.Parallel()
	p, pr := setup(t)
	p.SetLatency(time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { _, err := pr.LookupAccounts(ctx, nil); done <- err }()
	cancel()
	err := <-done
	wantCode(t, err, meetsync.EUNAVAILABLE)
	if !strings.Contains(err.Error(), context.Canceled.Error()) {
		t.Fatalf("error %v does not say why", err)
	}
	p.SetLatency(0)

	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = pr.LookupAccounts(ctxT(t), nil)
	wantCode(t, err, meetsync.EUNAVAILABLE)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestOpenPersists(t *testing.T) {
	t.Parallel()
	path := t.TempDir() + "/sim.json"
	p, err := sim.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	pr := p.Provider(appID)
	ctx := ctxT(t)
	acct := account(t, pr, "alice")
	if err := pr.SetBanned(ctx, "alice", true); err != nil {
		t.Fatal(err)
	}
	if _, err := pr.CreateMeeting(ctx, meetsync.MeetingRequest{HostUUID: "alice", Subject: "S"}); err == nil {
		t.Fatal("banned host created a meeting")
	}
	if err := pr.SetBanned(ctx, "alice", false); err != nil {
		t.Fatal(err)
	}
	m, err := pr.CreateMeeting(ctx, meetsync.MeetingRequest{HostUUID: "alice", Subject: "S", Password: "123456"})
	if err != nil {
		t.Fatal(err)
	}
	key := p.AppKey(appID)
	p.Close()
	// Only the state file is left (no temporary files), and it is JSON.
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil || len(entries) != 1 || entries[0].Name() != "sim.json" {
		t.Fatalf("state dir holds %v (%v)", entries, err)
	}
	if b, err := os.ReadFile(path); err != nil || !json.Valid(b) {
		t.Fatalf("state file: %v", err)
	}

	p2, err := sim.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	pr2 := p2.Provider(appID)
	if p2.AppKey(appID) != key {
		t.Fatal("app key changed across a reopen")
	}
	again, err := pr2.EnsureAccount(ctx, meetsync.AccountRequest{UserUUID: "alice"})
	if err != nil || *again != *acct {
		t.Fatalf("reopened account = %+v, %v; want %+v", again, err, acct)
	}
	got, err := pr2.Meeting(ctx, m.MeetingNum)
	if err != nil || got.Subject != "S" || got.State != meetsync.MeetingStateScheduled {
		t.Fatalf("reopened meeting = %+v, %v", got, err)
	}
	m2, err := pr2.CreateMeeting(ctx, meetsync.MeetingRequest{HostUUID: "alice"})
	if err != nil || m2.MeetingNum == m.MeetingNum {
		t.Fatalf("meeting number reused after reopen: %+v, %v", m2, err)
	}
	// The token still logs in, and the password was kept.
	sdk := p2.NewSDK(key)
	if err := sdk.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if err := sdk.Login(ctx, *acct); err != nil {
		t.Fatalf("login with the persisted token: %v", err)
	}
	wantCode(t, sdk.JoinMeeting(ctx, m.MeetingNum), meetsync.EFORBIDDEN)
	if err := sdk.JoinMeetingWithPassword(ctx, m.MeetingNum, "123456"); err != nil {
		t.Fatal(err)
	}
	// A revoked token stays revoked across a reopen.
	if _, err := pr2.RevokeToken(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	p2.Close()
	p3, err := sim.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer p3.Close()
	sdk3 := p3.NewSDK(key)
	_ = sdk3.Init(ctx)
	wantCode(t, sdk3.Login(ctx, *acct), meetsync.EUNAUTHORIZED)
	// Members are not persisted: they were devices of the old process.
	got, _ = p3.Provider(appID).Meeting(ctx, m.MeetingNum)
	if got.State != meetsync.MeetingStateStarted || len(got.Members) != 0 {
		t.Fatalf("meeting after restart = %+v", got)
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	_, err := sim.Open("")
	wantCode(t, err, meetsync.EINVALID)

	dir := t.TempDir()
	bad := dir + "/bad.json"
	if err := writeFile(bad, "{not json"); err != nil {
		t.Fatal(err)
	}
	if _, err := sim.Open(bad); err == nil || !strings.Contains(err.Error(), "not valid") {
		t.Fatalf("Open(corrupt) = %v", err)
	}
	future := dir + "/future.json"
	if err := writeFile(future, `{"version":99}`); err != nil {
		t.Fatal(err)
	}
	if _, err := sim.Open(future); err == nil || !strings.Contains(err.Error(), "version") {
		t.Fatalf("Open(future version) = %v", err)
	}
	if _, err := sim.Open(dir + "/missing/dir/state.json"); err == nil {
		t.Fatal("Open in a missing directory succeeded")
	}
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }
