package postgres

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/meetsync/meetsync"
)

// errUnavailable is what callers are told when the database cannot be
// reached or refuses service: EUNAVAILABLE (503 in the HTTP API, which
// clients retry), not an internal error.
var errUnavailable = meetsync.Errorf(meetsync.EUNAVAILABLE, "the database is unavailable; try again shortly")

// unavailableError is a driver error that means the database is out of
// reach: its code and message are errUnavailable's, its text (for logs)
// and its chain keep the cause.
type unavailableError struct{ cause error }

func (e *unavailableError) Error() string   { return e.cause.Error() }
func (e *unavailableError) Unwrap() []error { return []error{errUnavailable, e.cause} }

// unavailable returns err marked as the database being unavailable when it
// is: no connection could be made, the connection broke, or the server
// refuses service (shutting down, starting up, out of connections or
// resources). Other errors, and errors that already carry a meetsync code,
// are returned as they are.
func unavailable(err error) error {
	if err == nil || !outOfReach(err) {
		return err
	}
	var me *meetsync.Error
	if errors.As(err, &me) {
		return err
	}
	return &unavailableError{err}
}

func outOfReach(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false // the caller gave up: not the database's doing
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	if c := pgCode(err); c != "" {
		// 08: connection exception; 53: insufficient resources (too
		// many connections, disk full); 57P01–57P03: shutting down,
		// crashed, starting up.
		return strings.HasPrefix(c, "08") || strings.HasPrefix(c, "53") || strings.HasPrefix(c, "57P0")
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
}

// pool is the connection pool, its errors marked by unavailable.
type pool struct{ *pgxpool.Pool }

func (p pool) Acquire(ctx context.Context) (*pgxpool.Conn, error) {
	c, err := p.Pool.Acquire(ctx)
	return c, unavailable(err)
}

func (p pool) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	t, err := p.Pool.Exec(ctx, sql, args...)
	return t, unavailable(err)
}

// Query's rows mark their errors too: a connection the server ended
// (restart, failover, pg_terminate_backend) shows while the rows are read,
// not at Query.
func (p pool) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	r, err := p.Pool.Query(ctx, sql, args...)
	if err != nil {
		return r, unavailable(err)
	}
	return rows{r}, nil
}

type rows struct{ pgx.Rows }

func (r rows) Err() error { return unavailable(r.Rows.Err()) }

func (r rows) Scan(dest ...any) error { return unavailable(r.Rows.Scan(dest...)) }

func (p pool) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return row{p.Pool.QueryRow(ctx, sql, args...)}
}

type row struct{ pgx.Row }

func (r row) Scan(dest ...any) error { return unavailable(r.Row.Scan(dest...)) }
