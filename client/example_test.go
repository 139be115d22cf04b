package client_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"sync"
	"time"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/client"
)

// exampleServer starts a meetsync on 127.0.0.1 for an example.
func exampleServer() (*server, func()) {
	dir, err := os.MkdirTemp("", "meetsync-example-")
	if err != nil {
		log.Fatal(err)
	}
	s, stop, err := startServer(dir, "example")
	if err != nil {
		log.Fatal(err)
	}
	return s, func() { stop(); os.RemoveAll(dir) }
}

// A business backend posts a device's status, reads the user's state and
// the feed, and gets meetsync's errors as *meetsync.Error.
func ExampleClient() {
	srv, stop := exampleServer()
	defer stop()
	ctx := context.Background()

	c := client.New(srv.URL, client.WithAPIKey(srv.Key)) // msk_…
	seq := int64(1)
	res, err := c.PostEvent(ctx, meetsync.EventInput{
		Type: meetsync.TypeMeetingStatusChanged, UserID: "alice", DeviceID: "laptop", ClientSeq: &seq,
		Data: json.RawMessage(`{"status":"MEETING_STATUS_INMEETING","arg":0,"meeting_num":"123"}`),
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("seq", res.Seq, "duplicate", res.Duplicate)

	// Posting it again is harmless: the same client_seq is stored once.
	res, _ = c.PostEvent(ctx, meetsync.EventInput{
		Type: meetsync.TypeMeetingStatusChanged, UserID: "alice", DeviceID: "laptop", ClientSeq: &seq,
		Data: json.RawMessage(`{"status":"MEETING_STATUS_INMEETING","arg":0,"meeting_num":"123"}`),
	})
	fmt.Println("seq", res.Seq, "duplicate", res.Duplicate)

	u, _ := c.GetUser(ctx, "alice")
	fmt.Println(u.UserID, u.Meeting.Status, u.Meeting.MeetingNum)

	page, _ := c.ListEvents(ctx, client.EventListParams{After: "0", Types: []string{"meeting.*"}})
	for _, ev := range page.Events {
		fmt.Println(ev.Type, ev.UserID, ev.ClientSeq)
	}

	_, err = c.PostEvent(ctx, meetsync.EventInput{Type: meetsync.TypeMeetingStatusChanged, UserID: "alice",
		Data: json.RawMessage(`{"status":"dancing"}`)})
	fmt.Println(meetsync.ErrorCode(err), meetsync.ErrorField(err))
	// Output:
	// seq 1 duplicate false
	// seq 1 duplicate true
	// alice in_meeting 123
	// meeting.status_changed alice 1
	// invalid data.status
}

// exampleSDK stands for the meeting SDK (NEMeeting): joining a meeting
// fires its status callbacks.
type exampleSDK struct {
	mu       sync.Mutex
	listener client.MeetingListener
}

func (s *exampleSDK) Init(ctx context.Context) error { return nil }
func (s *exampleSDK) Login(ctx context.Context, acct meetsync.MeetingAccount) error {
	fmt.Println("SDK login with credentials:", acct.UserUUID != "" && acct.UserToken != "")
	return nil
}
func (s *exampleSDK) Logout(ctx context.Context) error { fmt.Println("SDK logout"); return nil }
func (s *exampleSDK) JoinMeeting(ctx context.Context, num string) error {
	s.mu.Lock()
	l := s.listener
	s.mu.Unlock()
	l.OnMeetingStatusChanged(meetsync.StatusConnecting, meetsync.ReasonBySelf, num)
	l.OnMeetingStatusChanged(meetsync.StatusInMeeting, meetsync.ReasonBySelf, num)
	return nil
}
func (s *exampleSDK) LeaveMeeting(ctx context.Context) error { return nil }
func (s *exampleSDK) SetListener(l client.MeetingListener) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listener = l
}

// The seed's flow on a device: init both systems, log in (business, then
// meeting), forward the meeting status, log out.
func ExampleCoordinator() {
	srv, stop := exampleServer()
	defer stop()
	ctx := context.Background()
	queueDir, _ := os.MkdirTemp("", "meetsync-queue-")
	defer os.RemoveAll(queueDir)

	sdk := &exampleSDK{}
	co, err := client.NewCoordinator(client.Config{
		Client: client.New(srv.URL),
		SDK:    sdk,
		// A real app plugs in its own backend; APIBusiness calls meetsync
		// directly with the app key.
		Business: &client.APIBusiness{Client: client.New(srv.URL, client.WithAPIKey(srv.Key)), UserID: "alice", DeviceID: "laptop"},
		QueueDir: queueDir, // the offline queue: keep it across restarts
		Policy:   client.PolicyRollback,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer co.Close()

	if err := co.Init(ctx); err != nil {
		log.Fatal(err)
	}
	if err := co.Login(ctx); err != nil {
		log.Fatal(err)
	}
	st := co.State()
	fmt.Println("business", st.Business, "meeting", st.Meeting)

	_ = sdk.JoinMeeting(ctx, "123456")
	// Sync sends the debounced status now and waits until it is stored.
	if err := co.Sync(ctx); err != nil {
		log.Fatal(err)
	}
	u, _ := client.New(srv.URL, client.WithAPIKey(srv.Key)).GetUser(ctx, "alice")
	fmt.Println("alice is", u.Meeting.Status, "in", u.Meeting.MeetingNum, "on", u.Meeting.DeviceID)

	if err := co.Logout(ctx); err != nil {
		log.Fatal(err)
	}
	st = co.State()
	fmt.Println("business", st.Business, "meeting", st.Meeting)
	// Output:
	// SDK login with credentials: true
	// business logged_in meeting logged_in
	// alice is in_meeting in 123456 on laptop
	// SDK logout
	// business logged_out meeting logged_out
}

// An invitation from the business system reaches the user's device; the
// user accepts it and joins the meeting with the SDK (here the simulated
// NEMeeting SDK of meetsync's sim platform), which completes it.
func ExampleCoordinator_AcceptInvitation() {
	srv, stop := exampleServer()
	defer stop()
	ctx := context.Background()
	queueDir, _ := os.MkdirTemp("", "meetsync-queue-")
	defer os.RemoveAll(queueDir)
	backend := client.New(srv.URL, client.WithAPIKey(srv.Key))

	sdk := srv.Sim.NewSDK("")
	invitations := make(chan client.Invitation, 1)
	co, err := client.NewCoordinator(client.Config{
		Client:       client.New(srv.URL),
		SDK:          sdk,
		Business:     &client.APIBusiness{Client: backend, UserID: "bob", DeviceID: "phone"},
		QueueDir:     queueDir,
		OnInvitation: func(inv client.Invitation) { invitations <- inv },
	})
	if err != nil {
		log.Fatal(err)
	}
	defer co.Close()
	if err := co.Init(ctx); err != nil {
		log.Fatal(err)
	}
	if err := co.Login(ctx); err != nil {
		log.Fatal(err)
	}

	// The business system invites bob to a meeting alice hosts.
	num := exampleMeeting(srv, "alice")
	if _, err := backend.CreateInvitations(ctx, client.InviteRequest{MeetingNum: num, Inviter: "alice",
		Invitees: []string{"bob"}, Subject: "standup"}); err != nil {
		log.Fatal(err)
	}
	inv := <-invitations
	fmt.Println("bob is invited by", inv.Inviter, "to", inv.Subject)

	accepted, err := co.AcceptInvitation(ctx, inv.ID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("invitation", accepted.State)
	if err := sdk.JoinMeeting(ctx, inv.MeetingNum); err != nil {
		log.Fatal(err)
	}
	// meetsync completes the invitation once bob is in the meeting.
	state := accepted.State
	for deadline := time.Now().Add(10 * time.Second); state != meetsync.InviteJoined && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		if cur, err := backend.GetInvitation(ctx, inv.ID); err == nil {
			state = cur.State
		}
	}
	fmt.Println("invitation", state)
	// Output:
	// bob is invited by alice to standup
	// invitation accepted
	// invitation joined
}

// exampleMeeting creates a meeting on the sim platform hosted by host's
// meeting account.
func exampleMeeting(srv *server, host string) string {
	ctx := context.Background()
	prov := srv.Sim.Provider(srv.AppID)
	acct, err := prov.EnsureAccount(ctx, meetsync.AccountRequest{UserUUID: meetsync.AccountUUID(srv.AppID, host), DisplayName: host})
	if err != nil {
		log.Fatal(err)
	}
	m, err := prov.CreateMeeting(ctx, meetsync.MeetingRequest{HostUUID: acct.UserUUID, Subject: "standup"})
	if err != nil {
		log.Fatal(err)
	}
	return m.MeetingNum
}

// The offline queue on its own: events are numbered and kept on disk until
// acknowledged, across restarts.
func ExampleQueue() {
	dir, _ := os.MkdirTemp("", "meetsync-queue-")
	defer os.RemoveAll(dir)

	q, _ := client.OpenQueue(dir)
	for _, st := range []string{"connecting", "in_meeting"} {
		seq, _ := q.Enqueue(meetsync.EventInput{Type: meetsync.TypeMeetingStatusChanged, UserID: "alice",
			Data: json.RawMessage(`{"status":"` + st + `"}`)})
		fmt.Println("queued client_seq", seq)
	}
	_ = q.Ack(1) // the server stored client_seq 1
	q.Close()

	q, _ = client.OpenQueue(dir) // after a restart
	defer q.Close()
	for _, ev := range q.Peek(0) {
		fmt.Println("pending", *ev.ClientSeq, string(ev.Data))
	}
	seq, _ := q.Enqueue(meetsync.EventInput{Type: meetsync.TypeMeetingStatusChanged, UserID: "alice", Data: json.RawMessage(`{"status":"idle"}`)})
	fmt.Println("queued client_seq", seq)
	// Output:
	// queued client_seq 1
	// queued client_seq 2
	// pending 2 {"status":"in_meeting"}
	// queued client_seq 3
}
