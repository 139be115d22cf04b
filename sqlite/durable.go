package sqlite

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// walSyncer makes commits durable outside the write lock (group fsync).
//
// With synchronous=FULL, SQLite fsyncs the WAL inside COMMIT, while it
// holds the database's write lock, so the next transaction cannot start
// until the disk has answered: one writer alternates between using the
// CPU and waiting for the disk. Instead the writer connection runs with
// synchronous=NORMAL (a commit writes its WAL frames and returns; SQLite
// still syncs the WAL before every checkpoint and its header when the WAL
// is reused) and every write waits for a walSyncer.wait that fdatasyncs
// the WAL file after its commit. The next transaction proceeds while the
// disk works, and one fdatasync covers every commit made before it began,
// of any goroutine. Nothing is acknowledged before its frames (with their
// commit marker) are on disk, which is exactly SQLite's FULL guarantee.
//
// An fsync that fails leaves the kernel's page cache in an unknown state
// (the error may not be reported again), so the syncer fails for good:
// every later wait returns the error and the store must be reopened.
type walSyncer struct {
	// f is the -wal file, opened once the WAL exists; nil when the
	// connection's own synchronous setting decides durability (NORMAL,
	// EXTRA), and then wait only moves durablePos.
	f    *os.File
	fs   fileSyncer // how f is synced (io_uring or fdatasync)
	path string
	fmu  sync.Mutex // guards replacing f
	old  []*os.File // replaced WAL files

	mu      sync.Mutex
	cond    *sync.Cond
	tickets uint64 // commits made (a commit takes the next ticket)
	synced  uint64 // every ticket up to this one is durable
	started uint64 // the highest ticket a sync that began covers
	running int    // syncs in flight
	err     error

	// committedPos is the highest feed position committed (set under
	// the store's write lock before the commit takes its ticket) and
	// durablePos the highest one an fdatasync covered: reads of the feed
	// stop there, so no reader sees an event a power loss could take back.
	committedPos atomic.Int64
	durablePos   atomic.Int64

	// syncs counts the fdatasyncs of the WAL made and syncNanos the time
	// they took (WALSyncs).
	syncs     atomic.Uint64
	syncNanos atomic.Int64
}

// newWALSyncer returns a syncer of the WAL of the database at dbPath that
// syncs it by method (see Config.SyncMethod), or, with fsync false, one
// that only tracks positions.
func newWALSyncer(dbPath string, fsync bool, method string) (*walSyncer, error) {
	s := &walSyncer{}
	s.cond = sync.NewCond(&s.mu)
	if !fsync {
		return s, nil
	}
	var err error
	if s.fs, err = newFileSyncer(method); err != nil {
		return nil, err
	}
	s.path = dbPath + "-wal"
	if err := s.open(); err != nil {
		s.fs.close()
		return nil, err
	}
	return s, nil
}

// open opens the WAL file (SQLite creates it when a connection first uses
// the database, and deletes it only when the last one closes).
func (s *walSyncer) open() error {
	f, err := os.OpenFile(s.path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open the write-ahead log to sync it: %w", err)
	}
	if s.f != nil {
		// Another sync may be using it: closed with the syncer.
		s.old = append(s.old, s.f)
	}
	s.f = f
	return nil
}

// syncWAL fdatasyncs the WAL file, first reopening it if SQLite replaced
// it (it deletes the WAL when its last connection closes, after
// checkpointing it into the database file and syncing that).
func (s *walSyncer) syncWAL() error {
	s.fmu.Lock()
	f := s.f
	have, err := f.Stat()
	if err == nil {
		if now, serr := os.Stat(s.path); serr == nil && !os.SameFile(have, now) {
			err = s.open()
			f = s.f
		}
	}
	s.fmu.Unlock()
	if err != nil {
		return err
	}
	return s.fs.sync(f)
}

// ticket records that a commit returned and returns its ticket for wait.
func (s *walSyncer) ticket() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tickets++
	return s.tickets
}

// wait returns once ticket t is durable. A waiter whose commit no
// running fdatasync covers starts one, for every ticket issued so far;
// the others wait for it. Up to maxSyncs run at once: a commit need not
// wait for a sync that began before it to end before its own can start.
func (s *walSyncer) wait(t uint64) error {
	if s.f == nil {
		s.advance(s.committedPos.Load())
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.synced < t {
		if s.err != nil {
			return s.err
		}
		if s.started >= t || s.running >= maxSyncs {
			s.cond.Wait()
			continue
		}
		s.running++
		target, pos := s.tickets, s.committedPos.Load()
		s.started = target
		s.mu.Unlock()
		start := time.Now()
		err := s.syncWAL()
		s.syncNanos.Add(int64(time.Since(start)))
		s.syncs.Add(1)
		s.mu.Lock()
		s.running--
		if err != nil {
			s.err = fmt.Errorf("sync the write-ahead log: %w (the store must be reopened)", err)
		} else {
			s.synced = max(s.synced, target)
			s.advance(pos)
		}
		s.cond.Broadcast()
	}
	return nil
}

// maxSyncs is how many fdatasyncs of the WAL may run at once.
const maxSyncs = 1

// advance moves durablePos up to pos.
func (s *walSyncer) advance(pos int64) {
	for {
		cur := s.durablePos.Load()
		if pos <= cur || s.durablePos.CompareAndSwap(cur, pos) {
			return
		}
	}
}

// commitDone makes a commit that just returned durable.
func (s *walSyncer) commitDone() error { return s.wait(s.ticket()) }

// method is how the WAL is synced: SyncIOURing or SyncFdatasync, or ""
// when the connection's synchronous setting decides durability.
func (s *walSyncer) method() string {
	if s.f == nil {
		return ""
	}
	return s.fs.method()
}

func (s *walSyncer) close() error {
	for _, f := range s.old {
		f.Close()
	}
	if s.f == nil {
		return nil
	}
	return errors.Join(s.f.Close(), s.fs.close())
}

// SyncMethod says how a commit is made durable: SyncIOURing or
// SyncFdatasync for the group fsync of synchronous FULL, "" when SQLite's
// own synchronous setting (NORMAL, EXTRA) decides.
func (db *DB) SyncMethod() string { return db.sync.method() }

// WALSyncs returns how many group fdatasyncs of the WAL the store has made
// and the time they took in all, from the sync's start to the moment its
// waiter resumed: under load most of an ack's wait for the disk. Both stay
// zero when SQLite's own synchronous setting decides durability.
func (db *DB) WALSyncs() (n uint64, took time.Duration) {
	return db.sync.syncs.Load(), time.Duration(db.sync.syncNanos.Load())
}
