package sim_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/sim"
)

// printer is a listener that prints what the SDK reports.
type printer struct{}

func (printer) OnMeetingStatusChanged(status meetsync.MeetingStatus, arg meetsync.Reason, meetingNum string) {
	fmt.Printf("sdk: %s (%s) %s\n", status.SDKName(), arg, meetingNum)
}
func (printer) OnKickOut()         { fmt.Println("sdk: onKickOut") }
func (printer) OnAuthInfoExpired() { fmt.Println("sdk: onAuthInfoExpired") }

// The platform, the server side (Provider, callbacks) and a device (SDK)
// going through a meeting.
func Example() {
	p := sim.New()
	defer p.Close()
	pr := p.Provider("app_demo")

	// The server checks and translates each callback the platform sends.
	events := make(chan string, 10)
	p.SetCallbackSink(func(ctx context.Context, appID string, h http.Header, body []byte) error {
		cb, err := p.Provider(appID).VerifyCallback(h, body, time.Now())
		if err != nil {
			return err
		}
		for _, e := range cb.Events {
			events <- strings.TrimSpace(e.Type + " " + e.UserUUID)
		}
		return nil
	})

	ctx := context.Background()
	acct, _ := pr.EnsureAccount(ctx, meetsync.AccountRequest{UserUUID: "alice", DisplayName: "Alice"})
	m, _ := pr.CreateMeeting(ctx, meetsync.MeetingRequest{HostUUID: "alice", Subject: "Standup"})

	sdk := p.NewSDK(p.AppKey("app_demo"))
	sdk.SetListener(printer{})
	_ = sdk.Init(ctx)
	_ = sdk.Login(ctx, *acct)
	_ = sdk.JoinMeeting(ctx, m.MeetingNum)
	_ = sdk.LeaveMeeting(ctx)
	_ = sdk.Flush(ctx)

	for range 3 {
		fmt.Println("callback:", <-events)
	}
	// Output:
	// sdk: MEETING_STATUS_CONNECTING (by_self) 100000001
	// sdk: MEETING_STATUS_INMEETING (by_self) 100000001
	// sdk: MEETING_STATUS_DISCONNECTING (by_self) 100000001
	// sdk: MEETING_STATUS_IDLE (by_self) 100000001
	// callback: meeting.started
	// callback: meeting.member_joined alice
	// callback: meeting.member_left alice
}

// Faults are injected at run time: an outage, a flapping connection, a
// server-side logout.
func Example_faults() {
	p := sim.New()
	defer p.Close()
	pr := p.Provider("app_demo")
	ctx := context.Background()
	acct, _ := pr.EnsureAccount(ctx, meetsync.AccountRequest{UserUUID: "bob"})
	m, _ := pr.CreateMeeting(ctx, meetsync.MeetingRequest{HostUUID: "bob"})
	sdk := p.NewSDK(p.AppKey("app_demo"))
	_ = sdk.Init(ctx)

	p.SetOutage(true)
	fmt.Println("login during the outage:", meetsync.ErrorCode(sdk.Login(ctx, *acct)))
	p.SetOutage(false)
	fmt.Println("login after it:", sdk.Login(ctx, *acct))

	sdk.SetListener(printer{})
	_ = sdk.JoinMeeting(ctx, m.MeetingNum)
	sdk.DropConnection() // the member drops out of the platform meeting
	sdk.Restore()        // and comes back
	_, _ = pr.RevokeToken(ctx, "bob")
	_ = sdk.Flush(ctx)
	// Output:
	// login during the outage: unavailable
	// login after it: <nil>
	// sdk: MEETING_STATUS_CONNECTING (by_self) 100000001
	// sdk: MEETING_STATUS_INMEETING (by_self) 100000001
	// sdk: MEETING_STATUS_CONNECTING (by_self) 100000001
	// sdk: MEETING_STATUS_INMEETING (by_self) 100000001
	// sdk: MEETING_STATUS_DISCONNECTING (auth_info_expired) 100000001
	// sdk: MEETING_STATUS_IDLE (auth_info_expired) 100000001
	// sdk: onAuthInfoExpired
}
