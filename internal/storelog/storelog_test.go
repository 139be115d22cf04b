package storelog_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/internal/storelog"
)

var errStoreUnavailable = fmt.Errorf("claim deliveries: %w", meetsync.Errorf(meetsync.EUNAVAILABLE, "the database is unavailable; try again shortly"))

// TestLog: a store error is logged at ERROR each time; an
// unavailable store at WARN, once per 10 s for each message, with the
// count of those left out since.
func TestLog(t *testing.T) {
	var buf bytes.Buffer
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	l := storelog.New(slog.New(slog.NewTextHandler(&buf, nil)))
	l.Now = func() time.Time { return now }

	for range 3 {
		l.Error("claim deliveries", errors.New("disk I/O error"), "retry_in", time.Second)
	}
	if n := strings.Count(buf.String(), `level=ERROR msg="claim deliveries" err="disk I/O error" retry_in=1s`); n != 3 {
		t.Errorf("%d ERROR lines for 3 errors that are not the store being unavailable, want 3:\n%s", n, buf.String())
	}

	buf.Reset()
	l.Error("claim deliveries", errStoreUnavailable, "retry_in", time.Second)
	for range 4 {
		l.Error("claim deliveries", errStoreUnavailable, "retry_in", time.Second)
		l.Error("record delivery outcomes", errStoreUnavailable, "try", 1)
	}
	now = now.Add(storelog.Every - time.Millisecond)
	l.Error("claim deliveries", errStoreUnavailable, "retry_in", time.Second)
	log := buf.String()
	if strings.Contains(log, "level=ERROR") {
		t.Errorf("an unavailable store is logged at ERROR:\n%s", log)
	}
	if n := strings.Count(log, `level=WARN msg="claim deliveries"`); n != 1 {
		t.Errorf("%d WARN lines for 6 unavailable claims within 10 s, want 1:\n%s", n, log)
	}
	if !strings.Contains(log, `level=WARN msg="claim deliveries" err="claim deliveries: `) || !strings.Contains(log, `the database is unavailable; try again shortly" retry_in=1s similar_since_last=0`) {
		t.Errorf("the first unavailable claim is not logged with its error and similar_since_last=0:\n%s", log)
	}
	if n := strings.Count(log, `level=WARN msg="record delivery outcomes"`); n != 1 {
		t.Errorf("%d WARN lines for 4 unavailable outcome records, want 1 (each message has its own limit):\n%s", n, log)
	}

	now = now.Add(time.Millisecond)
	l.Error("claim deliveries", errStoreUnavailable, "retry_in", time.Second)
	if !strings.Contains(buf.String(), `retry_in=1s similar_since_last=5`) {
		t.Errorf("10 s later the claim is not logged with the 5 left out:\n%s", buf.String())
	}
}
