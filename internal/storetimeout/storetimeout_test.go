package storetimeout_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/internal/storetimeout"
)

// hang is a store call that waits for its context and then fails as a
// driver does, with an uncoded error.
func hang(ctx context.Context) (int, error) {
	<-ctx.Done()
	return 0, errors.New("read tcp: i/o timeout")
}

// TestCall: a call whose own deadline passed is unavailable, its message
// public and its cause kept; a coded error and the caller's own
// cancellation are returned as they are; a call in time is untouched.
func TestCall(t *testing.T) {
	t.Parallel()
	to := storetimeout.New(20 * time.Millisecond)

	_, err := storetimeout.Call(context.Background(), to, hang)
	if meetsync.ErrorCode(err) != meetsync.EUNAVAILABLE || !strings.Contains(meetsync.ErrorMessage(err), "did not answer within 20ms") ||
		!strings.Contains(err.Error(), "i/o timeout") {
		t.Errorf("a call out of time: %v (code %s, message %q); want unavailable, the cause in its text", err, meetsync.ErrorCode(err), meetsync.ErrorMessage(err))
	}

	notFound := meetsync.Errorf(meetsync.ENOTFOUND, "no such user")
	if err := storetimeout.Call0(context.Background(), to, func(ctx context.Context) error { <-ctx.Done(); return notFound }); err != notFound {
		t.Errorf("a coded error out of time: %v, want it as it is", err)
	}

	parent, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(time.Millisecond); cancel() }()
	if _, err := storetimeout.Call(parent, storetimeout.New(time.Hour), hang); meetsync.ErrorCode(err) != meetsync.EINTERNAL {
		t.Errorf("the caller gone: %v (code %s), want the store's error as it is", err, meetsync.ErrorCode(err))
	}

	if v, err := storetimeout.Call(context.Background(), to, func(context.Context) (int, error) { return 7, nil }); v != 7 || err != nil {
		t.Errorf("a call in time: %d, %v", v, err)
	}
	var nilStore meetsync.Store
	if storetimeout.Store(nilStore, to) != nil {
		t.Error("a nil store is not left nil")
	}
}
