package postgres

import (
	"context"
	"testing"
)

// TestUntilVisibleBacksOff: a read held back for the whole wait (a long
// transaction on the database) is looked at again with growing pauses: a
// handful of queries per wait, not one per millisecond. (Pauses are never
// shorter than asked, so the count can only come out lower on a slow
// machine.)
func TestUntilVisibleBacksOff(t *testing.T) {
	t.Parallel()
	reads := 0
	held, err := untilVisible(context.Background(), func() (int64, int64, bool, error) {
		reads++
		return 10 << posBits, 5 << posBits, true, nil // committed beyond the bound
	})
	if err != nil || !held {
		t.Fatalf("untilVisible = %v, %v; want held", held, err)
	}
	if reads > 12 {
		t.Errorf("%d reads in one wait of %v, want at most 12 (pauses 1 ms doubling to %v)", reads, feedWait, feedRetryMax)
	}
}
