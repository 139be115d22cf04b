package client_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/client"
)

// The child process of TestQueueSurvivesKill: it runs when these are set.
const (
	childDirEnv = "MEETSYNC_TEST_QUEUE_CHILD_DIR"
	childURLEnv = "MEETSYNC_TEST_QUEUE_CHILD_URL"
	childKeyEnv = "MEETSYNC_TEST_QUEUE_CHILD_KEY"
)

// TestQueueChild is the child process of TestQueueSurvivesKill (it skips
// otherwise): like a device that is partly online, it enqueues status
// events as fast as it can, sends some of them and acknowledges what the
// server stored, and prints "enqueued SEQ" after each Enqueue returned,
// until it is killed.
func TestQueueChild(t *testing.T) {
	dir := os.Getenv(childDirEnv)
	if dir == "" {
		t.Skip("the child process of TestQueueSurvivesKill")
	}
	q, err := client.OpenQueueConfig(dir, client.QueueConfig{CompactBytes: 2048})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	app := client.New(os.Getenv(childURLEnv), client.WithAPIKey(os.Getenv(childKeyEnv)))
	for i := 0; i < 10000; i++ {
		seq, err := q.Enqueue(restartEvent(q.LastSeq() + 1))
		if err != nil {
			fmt.Println("error", err)
			os.Exit(2)
		}
		fmt.Println("enqueued", seq)
		if i%3 != 2 {
			continue
		}
		// Send up to 4 of the oldest (now and then all of them) through
		// the app route (which needs the device), and acknowledge them
		// once stored.
		n := 4
		if i%10 == 8 {
			n = 0
		}
		batch := q.Peek(n)
		for j := range batch {
			batch[j].DeviceID = "d1"
		}
		if _, err := app.PostEvents(context.Background(), batch); err != nil {
			fmt.Println("error", err)
			os.Exit(2)
		}
		if err := q.Ack(*batch[len(batch)-1].ClientSeq); err != nil {
			fmt.Println("error", err)
			os.Exit(2)
		}
	}
	os.Exit(0)
}

// restartEvent is the status event the child enqueues as client_seq n:
// its data carries n, so that a stored event shows which one it is.
func restartEvent(n int64) meetsync.EventInput {
	statuses := []meetsync.MeetingStatus{meetsync.StatusConnecting, meetsync.StatusInMeeting, meetsync.StatusDisconnecting, meetsync.StatusIdle}
	return meetsync.EventInput{Type: meetsync.TypeMeetingStatusChanged, UserID: "rita",
		OccurredAt: time.Now().UTC().Format(time.RFC3339Nano),
		Data:       json.RawMessage(fmt.Sprintf(`{"status":%d,"n":%d}`, statuses[n%4], n))}
}

// runChild runs TestQueueChild on dir and kills it (SIGKILL) once it has
// confirmed at least minEvents more events, at a random point of its work
// (mid-write, mid-fsync, mid-send or mid-compaction). It returns the
// highest client_seq the child confirmed.
func runChild(t *testing.T, s *server, dir string, minEvents int) int64 {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestQueueChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), childDirEnv+"="+dir, childURLEnv+"="+s.URL, childKeyEnv+"="+s.Key)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Wait() }()
	killAt := minEvents + rand.IntN(minEvents)
	timer := time.AfterFunc(wait, func() { _ = cmd.Process.Kill() })
	defer timer.Stop()
	sc := bufio.NewScanner(out)
	var last int64
	n := 0
	for sc.Scan() {
		line := sc.Text()
		if s, ok := strings.CutPrefix(line, "enqueued "); ok {
			v, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				t.Fatalf("child said %q", line)
			}
			last = v
			if n++; n == killAt {
				if err := cmd.Process.Kill(); err != nil {
					t.Fatal(err)
				}
			}
			continue
		}
		if strings.HasPrefix(line, "error") {
			t.Fatalf("child: %s", line)
		}
	}
	if n < killAt {
		t.Fatalf("the child stopped after %d events, before it was killed", n)
	}
	return last
}

// TestQueueSurvivesKill kills a process that is writing its queue
// (SIGKILL, twice), reopens the queue in a new Coordinator and sends what
// it holds to a real server: every event the child confirmed is stored
// exactly once, client_seq kept increasing across the restarts, and the
// user's state is that of the newest event.
func TestQueueSurvivesKill(t *testing.T) {
	if os.Getenv(childDirEnv) != "" {
		t.Skip("in the child")
	}
	t.Parallel()
	s := setup(t)
	dir := t.TempDir()
	first := runChild(t, s, dir, 40)
	second := runChild(t, s, dir, 40)
	if second <= first {
		t.Fatalf("the second run confirmed up to %d, the first %d: numbering went back", second, first)
	}

	t.Logf("the children confirmed client_seq up to %d, then %d", first, second)
	d := newDevice(t, s, s.URL, "rita", dir)
	st := d.State()
	if st.LastSeq < second || st.LastSeq > second+1 {
		t.Fatalf("reopened queue: last seq %d, the child confirmed %d", st.LastSeq, second)
	}
	if err := d.Login(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	d.sync(t)

	evs := s.events(t, "rita", meetsync.TypeMeetingStatusChanged)
	last := st.LastSeq
	if int64(len(evs)) != last {
		t.Fatalf("%d events stored, want %d (client_seq 1..%d)", len(evs), last, last)
	}
	for i, ev := range evs {
		var d struct{ N int64 }
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			t.Fatal(err)
		}
		if ev.ClientSeq != int64(i+1) || d.N != ev.ClientSeq || ev.DeviceID != "d1" {
			t.Fatalf("event %d: client_seq %d, data %s, device %q: want client_seq %d, each event once, in order", i, ev.ClientSeq, ev.Data, ev.DeviceID, i+1)
		}
		if ev.Stale {
			t.Fatalf("event %d is stale: the queue reordered", ev.ClientSeq)
		}
	}
	u, err := s.app().GetUser(context.Background(), "rita")
	if err != nil {
		t.Fatal(err)
	}
	want, _, _, _ := evs[len(evs)-1].StatusChange()
	if u.Meeting.Code != int(want) || len(u.Devices) != 1 || u.Devices[0].LastClientSeq != last {
		t.Fatalf("user %+v, want status %v and last client_seq %d", u, want, last)
	}
	if st := d.State(); st.Queued != 0 || st.LastSeq != last {
		t.Fatalf("state after the flush %+v", st)
	}
	// Sending it all again would be harmless: the server knows every client_seq.
	q := s.app()
	again := make([]meetsync.EventInput, 0, 10)
	for n := int64(1); n <= min(last, 10); n++ {
		ev := restartEvent(n)
		ev.DeviceID, ev.ClientSeq = "d1", &n
		again = append(again, ev)
	}
	rs, err := q.PostEvents(context.Background(), again)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if !r.Duplicate {
			t.Fatalf("a resent event was stored again: %+v", r)
		}
	}
}
