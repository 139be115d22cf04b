package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/meetsync/meetsync"
)

// The backlog: user state and the indexes of the events, written behind.
//
// An event is durable once its row is in the events table: the log is the
// truth, and a user's state is a function of the user's events (the rules
// of UserState.Apply). Writing the user's row and index entries (by user,
// and by app for the feed) with every event would cost random B-tree
// pages per event, and the WAL frames to match, where the event row
// itself goes to the end of the table. So the store writes behind:
//
//   - each append transaction writes its events rows and reflects their
//     effect on each user's state in memory, in the backlog; only users
//     whose change cannot be replayed from the events alone (an event
//     carrying Effects made by meetsync: a session, an invitation, a
//     platform membership) or whose due time moved (the session engine
//     finds users by the due_at index) have their row written in the same
//     transaction, stamped with the position it reflects (state_pos);
//   - a materializer writes the backlog in the background, in short
//     transactions: the rows of the users who have waited longest, with
//     one user_chunks row per user holding that user's pending events
//     (chunk.go), and the feed_runs rows of the events committed since
//     the last round (one per run of consecutive events of one app); and
//     store_meta's materialized_pos (below it nothing of a user is left in
//     the backlog) and feed_pos (feed_runs covers everything up to it);
//   - reads of a user's state, of the user list, of a user's events and of
//     an app's feed merge the backlog with the tables;
//   - opening the store replays the events after materialized_pos onto the
//     rows (skipping those a row already reflects), which rebuilds exactly
//     the backlog a crash lost, and checks that every replayed event gets
//     back the seq and staleness it was stored with.
//
// The backlog is valid because this process is the only writer of the
// file (the server locks its data directory), and every change to it is
// made under DB.writeMu.

// pendingEvent is a committed event of a user that is not yet in the
// user's chunks (and whose effect may not yet be in the user's row).
type pendingEvent struct {
	pos, seq, clientSeq int64
	id, deviceID        string
	stale               bool
}

func (p pendingEvent) result() meetsync.EventResult {
	return meetsync.EventResult{ID: p.id, Seq: p.seq, Stale: p.stale, Pos: p.pos, Duplicate: true}
}

// backlog is what is committed but not yet materialized. Its maps change
// under mu (held briefly, after a commit) and only by the holder of
// DB.writeMu; readers hold mu for reading.
type backlog struct {
	mu     sync.RWMutex
	users  map[userKey]*meetsync.UserState // states newer than their rows
	events map[userKey][]pendingEvent      // per user, in position order
	n      int                             // pending events in all

	// queue holds the users with pending events in the order their oldest
	// pending event was committed (so its head has the lowest position
	// left in the backlog), with that time. Only the holder of writeMu
	// uses it.
	queue []queued
	// feed holds the committed events not yet in feed_runs, in position
	// order (only the holder of writeMu uses it; readers use DB.feedPos,
	// up to which feed_runs is complete).
	feed []feedEntry
}

type feedEntry struct {
	app string
	pos int64
}

type queued struct {
	k     userKey
	since time.Time
}

func newBacklog() *backlog {
	return &backlog{users: map[userKey]*meetsync.UserState{}, events: map[userKey][]pendingEvent{}}
}

// user returns a copy of a user's backlog state, or nil.
func (b *backlog) user(k userKey) *meetsync.UserState {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if u, ok := b.users[k]; ok {
		return cloneUser(u)
	}
	return nil
}

// pending returns a copy of a user's pending events.
func (b *backlog) pending(k userKey) []pendingEvent {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return slices.Clone(b.events[k])
}

// appUsers returns copies of an app's backlog states with user ids above
// after, ordered by user id.
func (b *backlog) appUsers(appID, after string) []*meetsync.UserState {
	b.mu.RLock()
	var out []*meetsync.UserState
	for k, u := range b.users {
		if k.app == appID && k.user > after {
			out = append(out, cloneUser(u))
		}
	}
	b.mu.RUnlock()
	slices.SortFunc(out, func(a, b *meetsync.UserState) int { return strings.Compare(a.UserID, b.UserID) })
	return out
}

// size returns the number of pending events.
func (b *backlog) size() int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.n
}

// committedUser is a user's change in a committed transaction.
type committedUser struct {
	k       userKey
	state   *meetsync.UserState // the state after the transaction (owned by the backlog from now on)
	written bool                // the transaction wrote the row
	events  []pendingEvent
}

// publish records a committed transaction and its events (feed, in
// position order). The caller holds writeMu.
func (b *backlog) publish(cs []committedUser, feed []feedEntry, at time.Time) {
	b.feed = append(b.feed, feed...)
	// Users join the queue in the order of their first pending event, so
	// that its head always holds the lowest pending position.
	slices.SortFunc(cs, func(a, b committedUser) int {
		switch {
		case len(a.events) == 0 || len(b.events) == 0:
			return len(b.events) - len(a.events)
		case a.events[0].pos < b.events[0].pos:
			return -1
		case a.events[0].pos > b.events[0].pos:
			return 1
		}
		return 0
	})
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range cs {
		if c.written {
			delete(b.users, c.k)
		} else {
			b.users[c.k] = c.state
		}
		if len(c.events) == 0 {
			continue
		}
		old := b.events[c.k]
		if len(old) == 0 {
			b.queue = append(b.queue, queued{c.k, at})
		}
		b.events[c.k] = append(old, c.events...)
		b.n += len(c.events)
	}
}

// MaterializeConfig tunes the backlog (see backlog.go); the zero value is
// the default.
type MaterializeConfig struct {
	// After is how long a user's oldest pending change waits before it is
	// written. Longer writes fewer pages (a user's changes in that time
	// become one row write), and replays more on a restart after a crash.
	// Default 5 s.
	After time.Duration
	// MaxPending caps the pending events: above it the oldest users are
	// written whatever their age. It bounds memory and the replay after a
	// crash. Default 65,536.
	MaxPending int
	// Batch is the most users one materializing transaction writes, which
	// bounds how long it holds the write lock. Default 32.
	Batch int
}

func (c MaterializeConfig) withDefaults() MaterializeConfig {
	if c.After <= 0 {
		c.After = 5 * time.Second
	}
	if c.MaxPending <= 0 {
		c.MaxPending = 65536
	}
	if c.Batch <= 0 {
		c.Batch = 32
	}
	return c
}

// due returns how many users at the head of the queue should be written
// now (at most Batch).
func (b *backlog) due(cfg MaterializeConfig, now time.Time) int {
	n := 0
	over := b.size() > cfg.MaxPending
	for n < len(b.queue) && n < cfg.Batch && (over || now.Sub(b.queue[n].since) >= cfg.After) {
		n++
	}
	return n
}

// materializeLoop writes the backlog in the background until stop closes.
func (db *DB) materializeLoop() {
	defer close(db.matDone)
	t := time.NewTicker(min(db.mat.After/4, feedEvery))
	defer t.Stop()
	for {
		select {
		case <-db.matStop:
			return
		case <-t.C:
		case <-db.matKick:
		}
		for {
			n, err := db.materialize(context.Background(), false)
			db.matErr(err)
			if err != nil || n == 0 {
				break
			}
			// Short rounds with a pause between them: the appends waiting
			// for the write lock go first.
			select {
			case <-db.matStop:
				return
			case <-time.After(roundPause):
			}
		}
	}
}

// matErr records the outcome of a materializing round; after a failed
// one the next round tries again (a failed round changes nothing).
func (db *DB) matErr(err error) {
	db.matMu.Lock()
	db.matLastErr = err
	db.matMu.Unlock()
}

// materialize writes one batch of the backlog (every user's if all is
// set, else the due ones) and returns how many users it wrote. It takes
// writeMu and waits for durability after releasing it.
func (db *DB) materialize(ctx context.Context, all bool) (int, error) {
	db.writeMu.Lock()
	n, t, err := db.materializeLocked(ctx, all)
	db.writeMu.Unlock()
	if err != nil || n == 0 {
		return n, err
	}
	return n, db.sync.wait(t)
}

// materializeAll writes the whole backlog; the caller holds writeMu.
func (db *DB) materializeAll(ctx context.Context) error {
	for {
		n, _, err := db.materializeLocked(ctx, true)
		if err != nil || n == 0 {
			return err
		}
	}
}

// materializeLocked writes, in one transaction, the rows and index
// entries of the users at the head of the queue and the feed entries of
// the events committed so far; the caller holds writeMu. It returns how
// many users and feed entries it wrote.
func (db *DB) materializeLocked(ctx context.Context, all bool) (int, uint64, error) {
	b := db.backlog
	n := len(b.queue)
	if !all {
		n = b.due(db.mat, time.Now())
	} else {
		n = min(n, db.mat.Batch)
	}
	nf := min(len(b.feed), maxFeedPerRound)
	if n == 0 && nf == 0 {
		return 0, 0, nil
	}
	keys := make([]userKey, n)
	for i, q := range b.queue[:n] {
		keys[i] = q.k
	}
	slices.SortFunc(keys, func(a, b userKey) int {
		if c := strings.Compare(a.app, b.app); c != 0 {
			return c
		}
		return strings.Compare(a.user, b.user)
	})
	b.mu.RLock()
	states := make([]*meetsync.UserState, n)
	pend := make([][]pendingEvent, n)
	for i, k := range keys {
		states[i], pend[i] = b.users[k], b.events[k]
	}
	b.mu.RUnlock()

	tx, err := db.beginWrite(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("materialize: %w", err)
	}
	defer tx.Rollback()
	w := wtx{db, tx}
	for i, k := range keys {
		p := pend[i]
		if u := states[i]; u != nil {
			if err := putUser(ctx, w, u, p[len(p)-1].pos); err != nil {
				return 0, 0, fmt.Errorf("materialize: %w", err)
			}
		}
		for len(p) > 0 {
			c := p[:min(len(p), maxChunkEntries)]
			first, entries := encodeChunk(c)
			if _, err := w.ExecContext(ctx, chunkPutSQL, k.app, k.user, c[len(c)-1].pos, first, entries); err != nil {
				return 0, 0, fmt.Errorf("materialize: %w", err)
			}
			p = p[len(c):]
		}
	}
	feedPos, lastRun := db.feedPos.Load(), db.lastRun
	if nf > 0 {
		// Consecutive events of one app make a run; the first one
		// continues the last run written if it is of the same app.
		for _, f := range b.feed[:nf] {
			if lastRun != nil && lastRun.app == f.app {
				lastRun = &feedRun{app: f.app, first: lastRun.first, last: f.pos}
				continue
			}
			if err := putRun(ctx, w, lastRun, db.lastRun); err != nil {
				return 0, 0, fmt.Errorf("materialize: %w", err)
			}
			lastRun = &feedRun{app: f.app, first: f.pos, last: f.pos}
		}
		if err := putRun(ctx, w, lastRun, db.lastRun); err != nil {
			return 0, 0, fmt.Errorf("materialize: %w", err)
		}
		feedPos = b.feed[nf-1].pos
	}
	// Below the oldest pending event that stays, nothing is left.
	mark := db.sync.committedPos.Load()
	if n < len(b.queue) {
		mark = b.events[b.queue[n].k][0].pos - 1
	}
	for _, kv := range []struct {
		key   string
		value int64
	}{{"materialized_pos", mark}, {"feed_pos", feedPos}, {"next_pos", db.nextPos}} {
		if _, err := w.ExecContext(ctx, "UPDATE store_meta SET value = ? WHERE key = ?", kv.value, kv.key); err != nil {
			return 0, 0, fmt.Errorf("materialize: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, 0, fmt.Errorf("materialize: commit: %w", err)
	}
	db.feedPos.Store(feedPos)
	db.lastRun = lastRun
	b.feed = slices.Delete(b.feed, 0, nf)
	b.mu.Lock()
	for i, k := range keys {
		delete(b.users, k)
		delete(b.events, k)
		b.n -= len(pend[i])
	}
	b.mu.Unlock()
	// The states leave the backlog for the cache, so appends still find
	// them without reading their rows.
	db.userCache.put(slices.DeleteFunc(states, func(u *meetsync.UserState) bool { return u == nil }))
	b.queue = slices.Delete(b.queue, 0, n)
	if len(b.queue) == 0 {
		b.queue = nil // let a grown backing array go
	}
	if len(b.feed) == 0 {
		b.feed = nil
	}
	return n + nf, db.sync.ticket(), nil
}

// feedEvery is how often, at least, the materializer looks at the
// backlog: the feed's newest events are written to feed_runs at that
// pace (until then a feed read scans them in the events table).
const feedEvery = 250 * time.Millisecond

// roundPause separates two materializing rounds.
const roundPause = time.Millisecond

// maxFeedPerRound is the most feed entries one materializing transaction
// writes.
const maxFeedPerRound = 2048

const chunkPutSQL = "INSERT OR REPLACE INTO user_chunks (app_id, user_id, last_pos, first_pos, entries) VALUES (?, ?, ?, ?, ?)"

// feedRun is a row of feed_runs: positions first..last are all app's.
type feedRun struct {
	app         string
	first, last int64
}

// putRun writes run: it extends the run written last if it starts there
// (was), else it is a new row.
func putRun(ctx context.Context, w wtx, run, was *feedRun) error {
	if run == nil {
		return nil
	}
	if was != nil && was.app == run.app && was.first == run.first {
		if run.last == was.last {
			return nil
		}
		_, err := w.ExecContext(ctx, "UPDATE feed_runs SET last_pos = ? WHERE app_id = ? AND first_pos = ?", run.last, run.app, run.first)
		return err
	}
	_, err := w.ExecContext(ctx, "INSERT INTO feed_runs (app_id, first_pos, last_pos) VALUES (?, ?, ?)", run.app, run.first, run.last)
	return err
}

// maxRowsPerInsert is the most rows one multi-row INSERT carries.
const maxRowsPerInsert = 64

// rowCounts are the row counts of the multi-row INSERTs, largest first:
// few sizes, so few statements are prepared and cached.
var rowCounts = []int{maxRowsPerInsert, 16, 4, 1}

// multiRowSQL returns, by row count (rowCounts), the statement prefix
// followed by that many placeholder tuples of cols.
func multiRowSQL(prefix string, cols int) map[int]string {
	tuple := "(?" + strings.Repeat(", ?", cols-1) + ")"
	out := map[int]string{}
	for _, n := range rowCounts {
		out[n] = prefix + tuple + strings.Repeat(", "+tuple, n-1)
	}
	return out
}

// execRows inserts the rows in args (cols values each), each statement
// the largest of rowCounts that the rows left fill.
func execRows(ctx context.Context, w wtx, stmts map[int]string, cols int, args []any) error {
	for len(args) > 0 {
		rows := len(args) / cols
		n := 1
		for _, size := range rowCounts {
			if rows >= size {
				n = size
				break
			}
		}
		if _, err := w.ExecContext(ctx, stmts[n], args[:n*cols]...); err != nil {
			return err
		}
		args = args[n*cols:]
	}
	return nil
}

// replay rebuilds the backlog from the events after mark (store_meta's
// materialized_pos) and feedPos (its feed_pos; see the comment at the top
// of this file). It runs in Open, before the
// store is used.
func (db *DB) replay(ctx context.Context, mark, feedPos int64) error {
	rows, err := db.writer.QueryContext(ctx, "SELECT "+eventCols+" FROM events WHERE pos > ? ORDER BY pos", min(mark, feedPos))
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	var evs []*meetsync.Event
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			rows.Close()
			return fmt.Errorf("replay: %w", err)
		}
		evs = append(evs, e)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	if len(evs) == 0 {
		return nil
	}
	type replayed struct {
		u       *meetsync.UserState
		rowPos  int64 // the row's state_pos
		chunked int64 // the newest position in the user's chunks
		applied bool
		pending []pendingEvent
	}
	users := map[userKey]*replayed{}
	var order []*replayed
	var feed []feedEntry
	for _, ev := range evs {
		if ev.Pos > feedPos {
			feed = append(feed, feedEntry{ev.AppID, ev.Pos})
		}
		if ev.Pos <= mark {
			continue
		}
		k := userKey{ev.AppID, ev.UserID}
		r := users[k]
		if r == nil {
			r = &replayed{}
			var err error
			r.u, r.rowPos, err = scanUserPos(db.writer.QueryRowContext(ctx, "SELECT "+userCols+", state_pos FROM users WHERE app_id = ? AND user_id = ?",
				k.app, k.user))
			if errors.Is(err, sql.ErrNoRows) {
				r.u = meetsync.NewUserState(k.app, k.user)
			} else if err != nil {
				return fmt.Errorf("replay: user %s: %w", k.user, err)
			}
			var chunked sql.NullInt64
			if err := db.writer.QueryRowContext(ctx, "SELECT max(last_pos) FROM user_chunks WHERE app_id = ? AND user_id = ?", k.app, k.user).
				Scan(&chunked); err != nil {
				return fmt.Errorf("replay: user %s: %w", k.user, err)
			}
			r.chunked = chunked.Int64
			users[k] = r
			order = append(order, r)
		}
		if ev.Pos > r.chunked {
			r.pending = append(r.pending, pendingEvent{pos: ev.Pos, seq: ev.Seq, clientSeq: ev.ClientSeq, id: ev.ID, deviceID: ev.DeviceID, stale: ev.Stale})
		}
		if ev.Pos <= r.rowPos {
			continue // the row was written with this event's transaction or a later one
		}
		seq, stale := ev.Seq, ev.Stale
		ev.Stale = false
		r.u.Apply(ev)
		if ev.Seq != seq || ev.Stale != stale {
			return fmt.Errorf("replay: event %s of user %s: replaying it gives seq %d (stale %v) where the log has seq %d (stale %v); the store is inconsistent",
				ev.ID, ev.UserID, ev.Seq, ev.Stale, seq, stale)
		}
		r.applied = true
	}
	now := time.Now()
	cs := make([]committedUser, len(order))
	for i, r := range order {
		k := userKey{r.u.AppID, r.u.UserID}
		cs[i] = committedUser{k: k, state: r.u, written: !r.applied, events: r.pending}
	}
	db.backlog.publish(cs, feed, now)
	return nil
}

func scanUserPos(sc scanner) (*meetsync.UserState, int64, error) {
	var pos int64
	u, err := scanUser(scanFunc(func(dst ...any) error { return sc.Scan(append(dst, &pos)...) }))
	return u, pos, err
}

type scanFunc func(...any) error

func (f scanFunc) Scan(dst ...any) error { return f(dst...) }
