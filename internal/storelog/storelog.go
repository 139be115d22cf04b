// Package storelog logs the errors of a background job's store calls
// without flooding the log during a database outage.
package storelog

import (
	"log/slog"
	"sync"
	"time"

	"github.com/meetsync/meetsync"
)

// Every is how often Log writes each message while the store is
// unavailable, as the HTTP API does for its 503s.
const Every = 10 * time.Second

// Log logs the errors of store calls made in a loop (claims, outcomes,
// due sessions). An error is logged at ERROR, except an unavailable store
// (EUNAVAILABLE: PostgreSQL down, out of reach or not answering): while
// the database is away every call fails alike, so those are logged at
// WARN, at most once per Every for each message, with the count of those
// left out since (similar_since_last). Its methods may be called
// concurrently.
type Log struct {
	logger *slog.Logger
	// Now is the wall clock; tests set another before the first Error.
	Now func() time.Time

	mu      sync.Mutex
	last    map[string]time.Time // by message: when it was last logged
	skipped map[string]int       // by message: left out since
}

// New returns a Log writing to logger.
func New(logger *slog.Logger) *Log {
	return &Log{logger: logger, Now: time.Now, last: map[string]time.Time{}, skipped: map[string]int{}}
}

// Error logs err, the failure of the call that msg names, with args.
func (l *Log) Error(msg string, err error, args ...any) {
	args = append([]any{"err", err}, args...)
	if meetsync.ErrorCode(err) != meetsync.EUNAVAILABLE {
		l.logger.Error(msg, args...)
		return
	}
	l.mu.Lock()
	now := l.Now()
	if last, ok := l.last[msg]; ok && now.Sub(last) < Every {
		l.skipped[msg]++
		l.mu.Unlock()
		return
	}
	l.last[msg] = now
	skipped := l.skipped[msg]
	l.skipped[msg] = 0
	l.mu.Unlock()
	l.logger.Warn(msg, append(args, "similar_since_last", skipped)...)
}
