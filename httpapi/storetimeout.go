package httpapi

import (
	"context"
	"time"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/internal/storetimeout"
)

// DefaultStoreTimeout is Config.StoreTimeout's default.
const DefaultStoreTimeout = 10 * time.Second

// boundedIngester is an Ingester whose Append waits at most the store
// timeout for its commit. The ingest service then stops waiting (the
// events may still commit: its error says so, and a retry with the same
// Idempotency-Key, event ids or client_seq is answered as a duplicate).
type boundedIngester struct {
	Ingester
	t *storetimeout.Timeout
}

func (b boundedIngester) Append(ctx context.Context, req *meetsync.AppendRequest) error {
	return storetimeout.Call0(ctx, b.t, func(ctx context.Context) error { return b.Ingester.Append(ctx, req) })
}

// boundedTypes is a TypeRegistry whose store calls are bounded by t.
type boundedTypes struct {
	TypeRegistry
	t *storetimeout.Timeout
}

func (s boundedTypes) EventTypePut(ctx context.Context, p *meetsync.EventTypePutParams) (*meetsync.EventType, bool, error) {
	var created bool
	et, err := storetimeout.Call(ctx, s.t, func(ctx context.Context) (et *meetsync.EventType, err error) {
		et, created, err = s.TypeRegistry.EventTypePut(ctx, p)
		return et, err
	})
	return et, created, err
}

func (s boundedTypes) EventTypeGet(ctx context.Context, appID, name string, version int) (*meetsync.EventType, error) {
	return storetimeout.Call(ctx, s.t, func(ctx context.Context) (*meetsync.EventType, error) {
		return s.TypeRegistry.EventTypeGet(ctx, appID, name, version)
	})
}

func (s boundedTypes) EventTypeList(ctx context.Context, appID string) ([]*meetsync.EventType, error) {
	return storetimeout.Call(ctx, s.t, func(ctx context.Context) ([]*meetsync.EventType, error) {
		return s.TypeRegistry.EventTypeList(ctx, appID)
	})
}
