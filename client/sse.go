package client

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/meetsync/meetsync"
)

// sseMessage is one dispatched Server-Sent Events message.
type sseMessage struct {
	Event string // "" means "message"
	ID    string // the last event id after this message
	Data  string
	// IDOnly marks a block that set the id without data: nothing to
	// dispatch, but a reconnection resumes after that id.
	IDOnly bool
}

// sseReader parses a text/event-stream (the WHATWG rules: LF, CR or CRLF
// line ends, comments, multi-line data, id without NUL, retry).
type sseReader struct {
	r       *bufio.Reader
	lastID  string
	retry   time.Duration // the server's reconnection delay, 0 if none
	afterCR bool          // the last line ended with a CR
}

// maxSSELine bounds one line of a stream.
const maxSSELine = 4 << 20

func newSSEReader(r io.Reader, lastID string) *sseReader {
	return &sseReader{r: bufio.NewReaderSize(r, 64<<10), lastID: lastID}
}

// line reads one line without its end. io.EOF at the end of the stream.
func (s *sseReader) line() (string, error) {
	var buf []byte
	for {
		c, err := s.r.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) && len(buf) > 0 {
				return "", io.ErrUnexpectedEOF // a line without its end
			}
			return "", err
		}
		if s.afterCR {
			s.afterCR = false
			if c == '\n' {
				continue // the LF of a CRLF
			}
		}
		switch c {
		case '\n':
			return string(buf), nil
		case '\r':
			// Do not wait for the next byte: a CR alone ends a line too.
			s.afterCR = true
			return string(buf), nil
		}
		buf = append(buf, c)
		if len(buf) > maxSSELine {
			return "", meetsync.Errorf(meetsync.ETOOLARGE, "event stream line longer than %d bytes", maxSSELine)
		}
	}
}

// next returns the next message. io.EOF (or io.ErrUnexpectedEOF) when the stream ends.
func (s *sseReader) next() (sseMessage, error) {
	var event string
	var data []string
	hasData, hasID := false, false
	for {
		line, err := s.line()
		if err != nil {
			return sseMessage{}, err
		}
		if line == "" {
			if !hasData {
				if hasID {
					return sseMessage{ID: s.lastID, IDOnly: true}, nil
				}
				event = ""
				continue
			}
			return sseMessage{Event: event, ID: s.lastID, Data: strings.Join(data, "\n")}, nil
		}
		if line[0] == ':' {
			continue
		}
		field, value, found := strings.Cut(line, ":")
		if found {
			value = strings.TrimPrefix(value, " ")
		}
		switch field {
		case "event":
			event = value
		case "data":
			data, hasData = append(data, value), true
		case "id":
			if !strings.ContainsRune(value, 0) {
				s.lastID, hasID = value, true
			}
		case "retry":
			if ms, err := strconv.Atoi(value); err == nil && ms >= 0 {
				s.retry = time.Duration(ms) * time.Millisecond
			}
		}
	}
}

// StreamOption configures StreamEvents and Commands.
type StreamOption func(*streamConfig)

type streamConfig struct {
	onError func(error)
	onOpen  func()
}

// OnStreamError is called with each error that ends a connection of the
// stream before it reconnects (the stream goes on).
func OnStreamError(f func(error)) StreamOption { return func(c *streamConfig) { c.onError = f } }

// OnStreamOpen is called each time a connection of the stream is open (its
// headers arrived).
func OnStreamOpen(f func()) StreamOption { return func(c *streamConfig) { c.onOpen = f } }

// stream holds a Server-Sent Events stream open: it connects, hands every
// message to fn, and reconnects after a failure with backoff (from the
// client's Retry, without a limit on attempts), sending Last-Event-ID when
// it has one. It returns when ctx ends (ctx.Err()), when fn returns an
// error (that error), or on an error a reconnection cannot fix
// (unauthorized, invalid, not found…).
func (c *Client) stream(ctx context.Context, path, lastID string, fn func(sseMessage) error, opts []StreamOption) error {
	var cfg streamConfig
	for _, o := range opts {
		o(&cfg)
	}
	failures := 0
	var serverRetry time.Duration
	for {
		got, err := c.streamOnce(ctx, path, &lastID, &serverRetry, fn, cfg.onOpen)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var fe fnError
		if errors.As(err, &fe) {
			return fe.err
		}
		if err != nil && !streamRetryable(err) {
			return err
		}
		if cfg.onError != nil {
			if err == nil {
				err = meetsync.Errorf(meetsync.EUNAVAILABLE, "GET %s: the stream ended", path)
			}
			cfg.onError(err)
		}
		if got {
			failures = 0
		}
		failures++
		d := c.retry.delay(failures)
		if failures == 1 && serverRetry > 0 {
			d = jitter(serverRetry)
		}
		if sleep(ctx, d) != nil {
			return ctx.Err()
		}
	}
}

// fnError marks an error returned by the caller's function.
type fnError struct{ err error }

func (e fnError) Error() string { return e.err.Error() }

// streamRetryable reports whether a stream that failed with err may be
// opened again.
func streamRetryable(err error) bool {
	switch meetsync.ErrorCode(err) {
	case meetsync.EUNAVAILABLE, meetsync.ERATELIMIT, meetsync.EINTERNAL:
		return true
	}
	return false
}

// streamOnce holds one connection. got reports whether any message arrived.
func (c *Client) streamOnce(ctx context.Context, path string, lastID *string, serverRetry *time.Duration, fn func(sseMessage) error, onOpen func()) (got bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := c.newRequest(ctx, "GET", path, nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	if *lastID != "" {
		req.Header.Set("Last-Event-ID", *lastID)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return false, transportError("GET", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, responseError("GET", path, resp)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		return false, meetsync.Errorf(meetsync.EINTERNAL, "GET %s: answered %q, not an event stream", path, ct)
	}
	if onOpen != nil {
		onOpen()
	}
	sr := newSSEReader(resp.Body, *lastID)
	for {
		m, err := sr.next()
		*serverRetry = sr.retry
		if err != nil {
			if ctx.Err() != nil {
				return got, ctx.Err()
			}
			var me *meetsync.Error
			if errors.As(err, &me) {
				return got, err
			}
			return got, transportError("GET", path, err)
		}
		if m.IDOnly {
			// The server says where the stream stands (a stream that
			// starts at the current end): resume from there.
			*lastID = m.ID
			continue
		}
		got = true
		if err := fn(m); err != nil {
			return got, fnError{err}
		}
		// Resume after this message only once fn has taken it.
		*lastID = m.ID
	}
}
