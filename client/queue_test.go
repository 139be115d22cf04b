package client

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meetsync/meetsync"
)

func testEvent(i int) meetsync.EventInput {
	return meetsync.EventInput{Type: meetsync.TypeMeetingStatusChanged, UserID: "u1",
		Data: json.RawMessage(fmt.Sprintf(`{"status":%d,"i":%d}`, i%4, i))}
}

func openQueue(t *testing.T, dir string, cfg QueueConfig) *Queue {
	t.Helper()
	q, err := OpenQueueConfig(dir, cfg)
	if err != nil {
		t.Fatalf("open queue: %v", err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// seqs returns the client_seq of the pending events.
func seqs(q *Queue) []int64 {
	var out []int64
	for _, ev := range q.Peek(0) {
		out = append(out, *ev.ClientSeq)
	}
	return out
}

func enqueue(t *testing.T, q *Queue, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		seq, err := q.Enqueue(testEvent(i))
		if err != nil {
			t.Fatal(err)
		}
		if seq != int64(i) {
			t.Fatalf("event %d got client_seq %d", i, seq)
		}
	}
}

func equalSeqs(a []int64, from, to int64) bool {
	if int64(len(a)) != to-from+1 {
		return false
	}
	for i, s := range a {
		if s != from+int64(i) {
			return false
		}
	}
	return true
}

func TestQueueBasics(t *testing.T) {
	dir := t.TempDir()
	q := openQueue(t, dir, QueueConfig{})
	if q.Len() != 0 || q.LastSeq() != 0 {
		t.Fatalf("a new queue has %d events, last seq %d", q.Len(), q.LastSeq())
	}
	enqueue(t, q, 1, 5)
	evs := q.Peek(2)
	if len(evs) != 2 || *evs[0].ClientSeq != 1 || string(evs[1].Data) != `{"status":2,"i":2}` || evs[0].UserID != "u1" {
		t.Fatalf("peek = %+v", evs)
	}
	*evs[0].ClientSeq = 99 // a copy: the queue is not changed
	if err := q.Ack(2); err != nil {
		t.Fatal(err)
	}
	if got := seqs(q); !equalSeqs(got, 3, 5) {
		t.Fatalf("after ack 2: %v", got)
	}
	if err := q.Ack(2); err != nil || q.Len() != 3 {
		t.Fatalf("a repeated ack changed the queue: %v, %d", err, q.Len())
	}
	q.Close()

	// Reopened, it holds what was not acknowledged, and numbers on.
	q = openQueue(t, dir, QueueConfig{})
	if got := seqs(q); !equalSeqs(got, 3, 5) || q.LastSeq() != 5 {
		t.Fatalf("reopened: %v, last %d", got, q.LastSeq())
	}
	enqueue(t, q, 6, 6)
	if err := q.Ack(6); err != nil || q.Len() != 0 {
		t.Fatalf("ack all: %v, %d left", err, q.Len())
	}
	q.Close()
	q = openQueue(t, dir, QueueConfig{})
	if q.Len() != 0 || q.LastSeq() != 6 {
		t.Fatalf("reopened empty queue: %d events, last %d", q.Len(), q.LastSeq())
	}
	enqueue(t, q, 7, 7)
}

func TestQueueLocked(t *testing.T) {
	dir := t.TempDir()
	openQueue(t, dir, QueueConfig{})
	if _, err := OpenQueue(dir); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("a second open of the same queue: %v", err)
	}
}

func TestQueueCompaction(t *testing.T) {
	dir := t.TempDir()
	q := openQueue(t, dir, QueueConfig{CompactBytes: 512})
	gen := q.gen
	n := 0
	for round := range 20 {
		enqueue(t, q, n+1, n+10)
		n += 10
		// Leave a few pending each round.
		if err := q.Ack(int64(n - 3)); err != nil {
			t.Fatal(err)
		}
		if got := seqs(q); !equalSeqs(got, int64(n-2), int64(n)) {
			t.Fatalf("round %d: pending %v", round, got)
		}
	}
	if q.gen == gen {
		t.Fatal("the log was never compacted")
	}
	logs, _ := filepath.Glob(filepath.Join(dir, "queue-*"))
	if len(logs) != 1 {
		t.Fatalf("log files after compaction: %v", logs)
	}
	if fi, err := os.Stat(logs[0]); err != nil || fi.Size() > 4096 {
		t.Fatalf("compacted log: %v, %v", fi, err)
	}
	q.Close()
	q = openQueue(t, dir, QueueConfig{CompactBytes: 512})
	if got := seqs(q); !equalSeqs(got, int64(n-2), int64(n)) || q.LastSeq() != int64(n) {
		t.Fatalf("reopened after compactions: %v, last %d", got, q.LastSeq())
	}
	// Everything acknowledged and compacted: the numbering carries on.
	if err := q.Ack(int64(n)); err != nil {
		t.Fatal(err)
	}
	for g := q.gen; q.gen == g; {
		enqueue(t, q, n+1, n+1)
		n++
		if err := q.Ack(int64(n)); err != nil {
			t.Fatal(err)
		}
	}
	q.Close()
	q = openQueue(t, dir, QueueConfig{CompactBytes: 512})
	if q.Len() != 0 || q.LastSeq() != int64(n) {
		t.Fatalf("reopened: %d pending, last %d, want 0, %d", q.Len(), q.LastSeq(), n)
	}
}

// TestQueueTornTail cuts the log at every byte of its last record (a
// crash mid-write) and at every byte of a trailing ack: the queue opens
// with the records before the cut, and appends after them.
func TestQueueTornTail(t *testing.T) {
	src := t.TempDir()
	q := openQueue(t, src, QueueConfig{})
	enqueue(t, q, 1, 3)
	before, err := os.Stat(filepath.Join(src, logName(q.gen)))
	if err != nil {
		t.Fatal(err)
	}
	enqueue(t, q, 4, 4)
	withFour, _ := os.Stat(filepath.Join(src, logName(q.gen)))
	if err := q.Ack(2); err != nil {
		t.Fatal(err)
	}
	q.Close()
	full, err := os.ReadFile(filepath.Join(src, logName(1)))
	if err != nil {
		t.Fatal(err)
	}
	for cut := before.Size(); cut < int64(len(full)); cut++ {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, logName(1)), full[:cut], 0o600); err != nil {
			t.Fatal(err)
		}
		q, err := OpenQueue(dir)
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		want := []int64{1, 2, 3}
		switch {
		case cut >= withFour.Size(): // the ack is torn: events 1-4 are pending
			want = []int64{1, 2, 3, 4}
		}
		if got := seqs(q); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("cut at %d: pending %v, want %v", cut, got, want)
		}
		// New records follow the valid ones (the torn bytes are gone).
		seq, err := q.Enqueue(testEvent(9))
		if err != nil || seq != want[len(want)-1]+1 {
			t.Fatalf("cut at %d: enqueue after recovery = %d, %v", cut, seq, err)
		}
		q.Close()
		q, err = OpenQueue(dir)
		if err != nil {
			t.Fatal(err)
		}
		if got := seqs(q); len(got) != len(want)+1 || got[len(got)-1] != seq {
			t.Fatalf("cut at %d: after append and reopen: %v", cut, got)
		}
		q.Close()
	}
}

func TestQueueGarbageAndCorruption(t *testing.T) {
	t.Run("a flipped byte in the last record", func(t *testing.T) {
		dir := t.TempDir()
		q := openQueue(t, dir, QueueConfig{})
		enqueue(t, q, 1, 2)
		q.Close()
		path := filepath.Join(dir, logName(1))
		b, _ := os.ReadFile(path)
		b[len(b)-2] ^= 0xff
		os.WriteFile(path, b, 0o600)
		q = openQueue(t, dir, QueueConfig{})
		if got := seqs(q); !equalSeqs(got, 1, 1) {
			t.Fatalf("pending %v, want [1]", got)
		}
	})
	t.Run("zeros after the records (a preallocated tail)", func(t *testing.T) {
		dir := t.TempDir()
		q := openQueue(t, dir, QueueConfig{})
		enqueue(t, q, 1, 2)
		q.Close()
		f, _ := os.OpenFile(filepath.Join(dir, logName(1)), os.O_APPEND|os.O_WRONLY, 0)
		f.Write(make([]byte, 100))
		f.Close()
		q = openQueue(t, dir, QueueConfig{})
		if got := seqs(q); !equalSeqs(got, 1, 2) {
			t.Fatalf("pending %v", got)
		}
	})
}

// TestQueueCompactionCrash: a crash during a compaction leaves a .tmp
// file (before the rename) or two logs (after it, before the old one is
// removed). Either way the queue opens whole.
func TestQueueCompactionCrash(t *testing.T) {
	dir := t.TempDir()
	q := openQueue(t, dir, QueueConfig{})
	enqueue(t, q, 1, 4)
	if err := q.Ack(1); err != nil {
		t.Fatal(err)
	}
	q.Close()
	old, _ := os.ReadFile(filepath.Join(dir, logName(1)))

	// Before the rename: a half-written new log.
	os.WriteFile(filepath.Join(dir, logName(2)+".tmp"), old[:10], 0o600)
	q = openQueue(t, dir, QueueConfig{})
	if got := seqs(q); !equalSeqs(got, 2, 4) {
		t.Fatalf("with a leftover tmp: %v", got)
	}
	if _, err := os.Stat(filepath.Join(dir, logName(2)+".tmp")); !os.IsNotExist(err) {
		t.Fatalf("the leftover tmp file is still there: %v", err)
	}
	// After the rename: the compacted log is the queue, the old one goes.
	if err := q.compact(); err != nil {
		t.Fatal(err)
	}
	q.Close()
	os.WriteFile(filepath.Join(dir, logName(1)), old, 0o600)
	q = openQueue(t, dir, QueueConfig{})
	if got := seqs(q); !equalSeqs(got, 2, 4) || q.LastSeq() != 4 {
		t.Fatalf("with the old log left: %v, last %d", got, q.LastSeq())
	}
	if _, err := os.Stat(filepath.Join(dir, logName(1))); !os.IsNotExist(err) {
		t.Fatalf("the old log is still there: %v", err)
	}
}

func TestQueueLimits(t *testing.T) {
	q := openQueue(t, t.TempDir(), QueueConfig{MaxBytes: 400})
	var err error
	n := 0
	for err == nil && n < 100 {
		_, err = q.Enqueue(testEvent(n))
		n++
	}
	if meetsync.ErrorCode(err) != meetsync.ETOOLARGE {
		t.Fatalf("a full queue: %v after %d events", err, n)
	}
	// Acknowledging makes room.
	if err := q.Ack(q.LastSeq()); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Enqueue(testEvent(0)); err != nil {
		t.Fatalf("after the ack: %v", err)
	}
	big := meetsync.EventInput{Type: "x.y", UserID: "u", Data: json.RawMessage(`{"b":"` + strings.Repeat("x", meetsync.MaxBodyBytes) + `"}`)}
	q2 := openQueue(t, t.TempDir(), QueueConfig{MaxBytes: 8 << 20})
	if _, err := q2.Enqueue(big); meetsync.ErrorCode(err) != meetsync.ETOOLARGE {
		t.Fatalf("an event over the size limit: %v", err)
	}
	q.Close()
	if _, err := q.Enqueue(testEvent(1)); meetsync.ErrorCode(err) != meetsync.EUNAVAILABLE {
		t.Fatalf("enqueue after close: %v", err)
	}
}
