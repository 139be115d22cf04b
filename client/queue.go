package client

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/meetsync/meetsync"
)

// Queue is a device's durable event queue (an outbox): events are
// appended to a log on disk, each written and fsynced before Enqueue
// returns, and leave it only when Ack says the server stored them. It also
// numbers them: each event gets the device's next client_seq, and the
// numbering keeps increasing across restarts (and across the queue being
// emptied), so that a resent event is a harmless duplicate and a late one
// is recognised as stale.
//
// The log survives a crash at any point: a record torn by a crash
// mid-write fails its checksum and is cut off when the queue is opened
// again (that Enqueue never returned, so nothing acknowledged is lost).
// Acks are records of the same log; once acknowledged records take up
// enough room, the pending ones are copied to a new log file that replaces
// the old one atomically.
//
// A Queue is safe for concurrent use. One process at a time may open a
// directory (a lock file enforces it where the OS has flock).
type Queue struct {
	dir string
	cfg QueueConfig

	mu      sync.Mutex
	unlock  func()
	f       *os.File
	gen     uint64
	size    int64 // end of the valid log
	dead    int64 // bytes of acknowledged records and acks
	lastSeq int64
	pending []queued
	closed  bool
}

// queued is one pending event and the size of its record.
type queued struct {
	ev   meetsync.EventInput
	size int64
}

// QueueConfig configures a Queue.
type QueueConfig struct {
	// MaxBytes bounds the pending events on disk: Enqueue fails with
	// ETOOLARGE beyond it. Default 64 MiB.
	MaxBytes int64
	// CompactBytes is how much room acknowledged records may take before
	// the log is rewritten without them. Default 256 KiB.
	CompactBytes int64
}

func (c QueueConfig) withDefaults() QueueConfig {
	if c.MaxBytes <= 0 {
		c.MaxBytes = 64 << 20
	}
	if c.CompactBytes <= 0 {
		c.CompactBytes = 256 << 10
	}
	return c
}

// Record layout: length (uint32 LE) of the payload, CRC-32C of the payload
// (uint32 LE), then the payload: 'E' and the event's JSON, or 'A' and the
// decimal client_seq acknowledged through.
const (
	recHeader  = 8
	maxPayload = meetsync.MaxBodyBytes + 1
	kindEvent  = 'E'
	kindAck    = 'A'
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

const logPrefix, logSuffix = "queue-", ".log"

func logName(gen uint64) string { return fmt.Sprintf("%s%016d%s", logPrefix, gen, logSuffix) }

// OpenQueue opens (creating it if needed) the queue kept in dir, with the
// default QueueConfig.
func OpenQueue(dir string) (*Queue, error) { return OpenQueueConfig(dir, QueueConfig{}) }

// OpenQueueConfig opens the queue kept in dir. It recovers from a crash:
// a torn record at the end of the log is cut off, a half-done compaction
// is discarded.
func OpenQueueConfig(dir string, cfg QueueConfig) (*Queue, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open queue: %w", err)
	}
	unlock, err := lockQueueDir(dir)
	if err != nil {
		return nil, err
	}
	q := &Queue{dir: dir, cfg: cfg.withDefaults(), unlock: unlock}
	if err := q.open(); err != nil {
		unlock()
		return nil, err
	}
	return q, nil
}

func (q *Queue) open() error {
	entries, err := os.ReadDir(q.dir)
	if err != nil {
		return fmt.Errorf("open queue: %w", err)
	}
	var gens []uint64
	for _, e := range entries {
		name := e.Name()
		if strings.HasSuffix(name, ".tmp") {
			// A compaction that did not finish: its source is still there.
			_ = os.Remove(filepath.Join(q.dir, name))
			continue
		}
		if s, ok := strings.CutPrefix(name, logPrefix); ok {
			if s, ok = strings.CutSuffix(s, logSuffix); ok {
				if g, err := strconv.ParseUint(s, 10, 64); err == nil {
					gens = append(gens, g)
				}
			}
		}
	}
	sort.Slice(gens, func(i, j int) bool { return gens[i] < gens[j] })
	created := len(gens) == 0
	q.gen = 1
	if !created {
		// The newest log is complete (a compaction renames it into place
		// only once it is on disk); the older ones are what it replaced.
		q.gen = gens[len(gens)-1]
		for _, g := range gens[:len(gens)-1] {
			_ = os.Remove(filepath.Join(q.dir, logName(g)))
		}
	}
	q.f, err = os.OpenFile(filepath.Join(q.dir, logName(q.gen)), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open queue: %w", err)
	}
	if created {
		if err := syncDir(q.dir); err != nil {
			q.f.Close()
			return fmt.Errorf("open queue: %w", err)
		}
	}
	if err := q.load(); err != nil {
		q.f.Close()
		return err
	}
	return nil
}

// load reads the log, cutting off a torn tail.
func (q *Queue) load() error {
	data, err := io.ReadAll(q.f)
	if err != nil {
		return fmt.Errorf("read queue: %w", err)
	}
	var acked int64
	var off int64
	var events []queued
	for {
		payload, n := readRecord(data[off:])
		if n == 0 {
			break
		}
		switch payload[0] {
		case kindEvent:
			var ev meetsync.EventInput
			if err := json.Unmarshal(payload[1:], &ev); err != nil || ev.ClientSeq == nil {
				return fmt.Errorf("queue %s: bad event record at offset %d", q.dir, off)
			}
			events = append(events, queued{ev: ev, size: int64(n)})
			q.lastSeq = max(q.lastSeq, *ev.ClientSeq)
		case kindAck:
			seq, err := strconv.ParseInt(string(payload[1:]), 10, 64)
			if err != nil {
				return fmt.Errorf("queue %s: bad ack record at offset %d", q.dir, off)
			}
			acked = max(acked, seq)
			q.lastSeq = max(q.lastSeq, seq)
			q.dead += int64(n)
		default:
			return fmt.Errorf("queue %s: unknown record kind %q at offset %d", q.dir, payload[0], off)
		}
		off += int64(n)
	}
	if off < int64(len(data)) {
		// A record torn by a crash (or garbage after it): its Enqueue never
		// returned. Cut it off so that new records follow the valid ones.
		if err := q.f.Truncate(off); err != nil {
			return fmt.Errorf("queue: cut off a torn record: %w", err)
		}
		if err := q.f.Sync(); err != nil {
			return fmt.Errorf("queue: %w", err)
		}
	}
	q.size = off
	for _, e := range events {
		if *e.ev.ClientSeq > acked {
			q.pending = append(q.pending, e)
		} else {
			q.dead += e.size
		}
	}
	return nil
}

// readRecord returns the payload of the record at the start of b and the
// record's size, or 0 if b does not start with a whole, valid record.
func readRecord(b []byte) (payload []byte, n int) {
	if len(b) < recHeader {
		return nil, 0
	}
	size := binary.LittleEndian.Uint32(b)
	if size == 0 || size > maxPayload || int64(len(b)-recHeader) < int64(size) {
		return nil, 0
	}
	payload = b[recHeader : recHeader+int(size)]
	if crc32.Checksum(payload, crcTable) != binary.LittleEndian.Uint32(b[4:]) {
		return nil, 0
	}
	return payload, recHeader + int(size)
}

func appendRecord(b []byte, kind byte, body []byte) []byte {
	var h [recHeader]byte
	payload := make([]byte, 0, 1+len(body))
	payload = append(append(payload, kind), body...)
	binary.LittleEndian.PutUint32(h[:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(h[4:], crc32.Checksum(payload, crcTable))
	return append(append(b, h[:]...), payload...)
}

var errQueueClosed = meetsync.Errorf(meetsync.EUNAVAILABLE, "the queue is closed")

// Enqueue appends ev with the device's next client_seq (any client_seq it
// carries is replaced) and returns that number once the event is on disk.
// ETOOLARGE when the queue is full or the event is over the size limit.
func (q *Queue) Enqueue(ev meetsync.EventInput) (int64, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return 0, errQueueClosed
	}
	seq := q.lastSeq + 1
	ev.ClientSeq = &seq
	body, err := json.Marshal(ev)
	if err != nil {
		return 0, meetsync.Errorf(meetsync.EINVALID, "queue: encode the event: %v", err)
	}
	if len(body)+1 > maxPayload {
		return 0, meetsync.Errorf(meetsync.ETOOLARGE, "queue: an event of %d bytes is over the limit of %d", len(body), maxPayload-1)
	}
	rec := appendRecord(nil, kindEvent, body)
	if q.size-q.dead+int64(len(rec)) > q.cfg.MaxBytes {
		return 0, meetsync.Errorf(meetsync.ETOOLARGE, "queue: full (%d pending events, %d bytes at most)", len(q.pending), q.cfg.MaxBytes)
	}
	if err := q.write(rec); err != nil {
		return 0, err
	}
	q.lastSeq = seq
	q.pending = append(q.pending, queued{ev: ev, size: int64(len(rec))})
	return seq, nil
}

// write appends rec to the log and fsyncs it. On failure the log is cut
// back to where it was.
func (q *Queue) write(rec []byte) error {
	if _, err := q.f.WriteAt(rec, q.size); err != nil {
		_ = q.f.Truncate(q.size)
		return fmt.Errorf("queue: write: %w", err)
	}
	if err := q.f.Sync(); err != nil {
		_ = q.f.Truncate(q.size)
		return fmt.Errorf("queue: sync: %w", err)
	}
	q.size += int64(len(rec))
	return nil
}

// Peek returns copies of up to n pending events, oldest first (n <= 0:
// all of them). They stay in the queue until Ack.
func (q *Queue) Peek(n int) []meetsync.EventInput {
	q.mu.Lock()
	defer q.mu.Unlock()
	if n <= 0 || n > len(q.pending) {
		n = len(q.pending)
	}
	out := make([]meetsync.EventInput, n)
	for i := range out {
		out[i] = q.pending[i].ev
		seq := *out[i].ClientSeq
		out[i].ClientSeq = &seq
		out[i].Data = append(json.RawMessage(nil), out[i].Data...)
	}
	return out
}

// Len returns the number of pending events.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending)
}

// LastSeq returns the client_seq of the newest event ever enqueued (0 for
// none): the next one gets LastSeq()+1.
func (q *Queue) LastSeq() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.lastSeq
}

// Ack removes every pending event whose client_seq is at most seq: the
// server stored them (or refused them for good). The removal is on disk
// when Ack returns.
func (q *Queue) Ack(seq int64) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return errQueueClosed
	}
	n := 0
	for n < len(q.pending) && *q.pending[n].ev.ClientSeq <= seq {
		n++
	}
	if n == 0 {
		return nil
	}
	through := *q.pending[n-1].ev.ClientSeq
	rec := appendRecord(nil, kindAck, strconv.AppendInt(nil, through, 10))
	if err := q.write(rec); err != nil {
		return err
	}
	for _, e := range q.pending[:n] {
		q.dead += e.size
	}
	q.dead += int64(len(rec))
	q.pending = append(q.pending[:0:0], q.pending[n:]...)
	if q.dead >= q.cfg.CompactBytes {
		// The ack is on disk already: a failed compaction only leaves the
		// log bigger than it needs to be, and is tried again next time.
		_ = q.compact()
	}
	return nil
}

// compact writes the pending events to a new log, after an ack record
// that carries the numbering on, and puts it in place of the current one
// (an atomic rename: a crash leaves either log whole).
func (q *Queue) compact() error {
	// Everything before the first pending event is acknowledged; with none
	// pending, everything through lastSeq is.
	through := q.lastSeq
	if len(q.pending) > 0 {
		through = *q.pending[0].ev.ClientSeq - 1
	}
	buf := appendRecord(nil, kindAck, strconv.AppendInt(nil, through, 10))
	dead := int64(len(buf))
	sizes := make([]int64, len(q.pending))
	for i, e := range q.pending {
		body, err := json.Marshal(e.ev)
		if err != nil {
			return err
		}
		n := len(buf)
		buf = appendRecord(buf, kindEvent, body)
		sizes[i] = int64(len(buf) - n)
	}
	gen := q.gen + 1
	name := filepath.Join(q.dir, logName(gen))
	tmp := name + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err = f.Write(buf); err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	// From here the new log is the queue (the next open takes the newest).
	old := q.f
	q.f, q.gen, q.size, q.dead = f, gen, int64(len(buf)), dead
	for i := range q.pending {
		q.pending[i].size = sizes[i]
	}
	old.Close()
	err = syncDir(q.dir)
	_ = os.Remove(filepath.Join(q.dir, logName(gen-1)))
	return err
}

// Close closes the queue. Pending events stay on disk for the next OpenQueue.
func (q *Queue) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil
	}
	q.closed = true
	err := q.f.Close()
	q.unlock()
	return err
}

// Dir returns the queue's directory.
func (q *Queue) Dir() string { return q.dir }
