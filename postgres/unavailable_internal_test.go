package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/meetsync/meetsync"
)

// TestUnavailable: driver errors that mean the database is out of reach
// become EUNAVAILABLE with a message that shows no cause; others, and the
// caller's own cancellation, keep their meaning.
func TestUnavailable(t *testing.T) {
	t.Parallel()
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{refused, meetsync.EUNAVAILABLE},
		{fmt.Errorf("list events: %w", io.ErrUnexpectedEOF), meetsync.EUNAVAILABLE},
		{&pgconn.PgError{Code: "57P01", Message: "terminating connection due to administrator command"}, meetsync.EUNAVAILABLE},
		{&pgconn.PgError{Code: "57P03", Message: "the database system is starting up"}, meetsync.EUNAVAILABLE},
		{&pgconn.PgError{Code: "53300", Message: "too many connections"}, meetsync.EUNAVAILABLE},
		{&pgconn.PgError{Code: "08006", Message: "connection failure"}, meetsync.EUNAVAILABLE},
		{&pgconn.PgError{Code: "23505", Message: "duplicate key"}, meetsync.EINTERNAL},
		{&pgconn.PgError{Code: "57014", Message: "canceling statement due to user request"}, meetsync.EINTERNAL},
		{pgx.ErrNoRows, meetsync.EINTERNAL},
		{fmt.Errorf("append: %w", context.Canceled), meetsync.EINTERNAL},
		{fmt.Errorf("dial: %w: %w", refused, context.DeadlineExceeded), meetsync.EINTERNAL},
		{meetsync.Errorf(meetsync.ENOTFOUND, "app not found"), meetsync.ENOTFOUND},
	} {
		err := fmt.Errorf("wrapped: %w", unavailable(tc.err))
		if got := meetsync.ErrorCode(err); got != tc.want {
			t.Errorf("%v: code %q, want %q", tc.err, got, tc.want)
		}
		if tc.want == meetsync.EUNAVAILABLE {
			if msg := meetsync.ErrorMessage(err); msg != errUnavailable.Message {
				t.Errorf("%v: message %q, want %q", tc.err, msg, errUnavailable.Message)
			}
			if !errors.Is(err, tc.err) {
				t.Errorf("%v: the cause is not in the chain", tc.err)
			}
		}
	}
	if unavailable(nil) != nil {
		t.Error("unavailable(nil) is not nil")
	}
}
