package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/meetsync/meetsync"
)

// Client calls meetsync's HTTP API. It is safe for concurrent use. Its zero
// value is not usable; call New.
type Client struct {
	base  string
	hc    *http.Client
	token string
	retry Retry
}

// Option configures a Client.
type Option func(*Client)

// WithAPIKey authenticates with an app API key (msk_…): the business
// backend's credential, for every route but the /v1/client ones.
func WithAPIKey(key string) Option { return func(c *Client) { c.token = key } }

// WithClientToken authenticates with a client token (mct_…), issued by a
// login for one user and device: the credential of the /v1/client routes.
func WithClientToken(token string) Option { return func(c *Client) { c.token = token } }

// WithHTTPClient sets the HTTP client (default: a client of its own with
// a 30 s timeout for calls; streams are not bound by that timeout).
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithRetry sets the retry policy (default DefaultRetry).
func WithRetry(r Retry) Option { return func(c *Client) { c.retry = r } }

// Retry is how a Client retries a call that failed in a way a retry may
// fix: a transport failure, 429, or a 5xx other than 501. A call is retried
// only when repeating it is harmless: reads, idempotent writes (login,
// command acks, event posts whose events all carry a client_seq or an id,
// or that carry an Idempotency-Key), and any call that was refused before
// the server saw it (connection refused, 429). Delays grow from Backoff,
// doubling up to MaxBackoff, with ±20 % jitter; a Retry-After header is
// honoured up to MaxBackoff.
type Retry struct {
	// Attempts is the most attempts of one call, the first included.
	// 1 turns retries off. Default 3.
	Attempts int
	// Backoff is the delay before the first retry. Default 200 ms.
	Backoff time.Duration
	// MaxBackoff caps each delay. Default 5 s.
	MaxBackoff time.Duration
}

// DefaultRetry is the retry policy of a Client without WithRetry.
var DefaultRetry = Retry{Attempts: 3, Backoff: 200 * time.Millisecond, MaxBackoff: 5 * time.Second}

func (r Retry) withDefaults() Retry {
	if r.Attempts <= 0 {
		r.Attempts = DefaultRetry.Attempts
	}
	if r.Backoff <= 0 {
		r.Backoff = DefaultRetry.Backoff
	}
	if r.MaxBackoff <= 0 {
		r.MaxBackoff = DefaultRetry.MaxBackoff
	}
	if r.MaxBackoff < r.Backoff {
		r.MaxBackoff = r.Backoff
	}
	return r
}

// delay returns the delay before retry n (1 for the first retry).
func (r Retry) delay(n int) time.Duration {
	d := r.Backoff
	for i := 1; i < n && d < r.MaxBackoff; i++ {
		d *= 2
	}
	return jitter(min(d, r.MaxBackoff))
}

// jitter spreads d by ±20 %.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d + time.Duration((rand.Float64()*0.4-0.2)*float64(d))
}

// New returns a Client of the meetsync server at baseURL
// (http://127.0.0.1:8080). Without WithAPIKey or WithClientToken it sends no
// credentials (enough for the health checks).
func New(baseURL string, opts ...Option) *Client {
	c := &Client{base: strings.TrimRight(baseURL, "/"), retry: DefaultRetry}
	for _, o := range opts {
		o(c)
	}
	if c.hc == nil {
		c.hc = defaultHTTPClient
	}
	c.retry = c.retry.withDefaults()
	return c
}

// defaultHTTPClient is shared by the Clients built without WithHTTPClient,
// so that they share connections. Calls are bounded by callTimeout, not by
// the http.Client, so that streams can last.
var defaultHTTPClient = &http.Client{Transport: http.DefaultTransport}

// callTimeout bounds one attempt of a call (not a stream) whose context has no deadline.
const callTimeout = 30 * time.Second

// WithToken returns a copy of c that authenticates with token (an API key
// or a client token) and shares c's HTTP client and retry policy.
func (c *Client) WithToken(token string) *Client {
	cp := *c
	cp.token = token
	return &cp
}

// BaseURL returns the server's base URL as given to New.
func (c *Client) BaseURL() string { return c.base }

// request is one API call.
type request struct {
	method string
	path   string // with its query
	body   any    // nil, []byte (sent as is) or a value encoded as JSON
	header http.Header
	// idempotent calls are retried after any retryable failure; the others
	// only when the server cannot have seen them.
	idempotent bool
	// want are the success statuses (default: any 2xx).
	want []int
	// status, if set, receives the status of the successful answer.
	status *int
}

// do performs r and decodes a JSON answer into out (if not nil).
func (c *Client) do(ctx context.Context, r request, out any) error {
	var body []byte
	switch b := r.body.(type) {
	case nil:
	case []byte:
		body = b
	default:
		var err error
		if body, err = json.Marshal(b); err != nil {
			return meetsync.Errorf(meetsync.EINVALID, "encode the body of %s %s: %v", r.method, r.path, err)
		}
	}
	for attempt := 1; ; attempt++ {
		resp, err := c.send(ctx, r, body)
		var retryAfter time.Duration
		if err == nil {
			retryAfter, err = c.finish(r, resp, out)
			if err == nil {
				return nil
			}
		}
		if attempt >= c.retry.Attempts || !retryable(err, r.idempotent) || ctx.Err() != nil {
			return err
		}
		d := c.retry.delay(attempt)
		if retryAfter > 0 {
			d = min(retryAfter, c.retry.MaxBackoff)
		}
		if sleep(ctx, d) != nil {
			return err
		}
	}
}

// send performs one attempt of r. Its errors are transport errors.
func (c *Client) send(ctx context.Context, r request, body []byte) (*http.Response, error) {
	actx, cancel := ctx, context.CancelFunc(func() {})
	if _, ok := ctx.Deadline(); !ok {
		actx, cancel = context.WithTimeout(ctx, callTimeout)
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := c.newRequest(actx, r.method, r.path, rd)
	if err != nil {
		cancel()
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	for k, v := range r.header {
		req.Header[k] = v
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		cancel()
		return nil, transportError(r.method, r.path, err)
	}
	resp.Body = &cancelBody{resp.Body, cancel}
	return resp, nil
}

// newRequest builds a request to the API with the credentials.
func (c *Client) newRequest(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, &meetsync.Error{Code: meetsync.EINVALID, Message: fmt.Sprintf("bad request URL %q: %v", c.base+path, err), Field: "baseURL"}
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	req.Header.Set("User-Agent", "meetsync-go-client/1")
	return req, nil
}

// cancelBody releases an attempt's timeout when its body is closed.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// maxResponse bounds a response body the client reads into memory.
const maxResponse = 64 << 20

// finish reads resp: a success is decoded into out, a failure becomes an
// error (with the Retry-After delay, if any).
func (c *Client) finish(r request, resp *http.Response, out any) (time.Duration, error) {
	defer resp.Body.Close()
	ok := resp.StatusCode >= 200 && resp.StatusCode < 300
	if len(r.want) > 0 {
		ok = false
		for _, s := range r.want {
			ok = ok || resp.StatusCode == s
		}
	}
	if !ok {
		return retryAfter(resp), responseError(r.method, r.path, resp)
	}
	if r.status != nil {
		*r.status = resp.StatusCode
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponse))
		return 0, nil
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return 0, transportError(r.method, r.path, err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return 0, meetsync.Errorf(meetsync.EINTERNAL, "%s %s: cannot decode the answer (%d, %d bytes): %v", r.method, r.path, resp.StatusCode, len(b), err)
	}
	return 0, nil
}

// responseError decodes an error answer: meetsync's {"error":{…}}, or for
// anything else (a proxy's page) an error with the code of the status.
func responseError(method, path string, resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var body struct {
		Error *meetsync.Error `json:"error"`
	}
	if json.Unmarshal(b, &body) == nil && body.Error != nil && body.Error.Code != "" {
		return body.Error
	}
	snippet := strings.TrimSpace(string(b))
	if len(snippet) > 200 {
		snippet = snippet[:200] + "…"
	}
	msg := fmt.Sprintf("%s %s: HTTP %s", method, path, resp.Status)
	if snippet != "" {
		msg += ": " + snippet
	}
	return &meetsync.Error{Code: codeOfStatus(resp.StatusCode), Message: msg}
}

// codeOfStatus maps an HTTP status without a meetsync error body to a code.
func codeOfStatus(status int) string {
	switch {
	case status == http.StatusBadRequest:
		return meetsync.EINVALID
	case status == http.StatusUnauthorized:
		return meetsync.EUNAUTHORIZED
	case status == http.StatusForbidden:
		return meetsync.EFORBIDDEN
	case status == http.StatusNotFound, status == http.StatusGone:
		return meetsync.ENOTFOUND
	case status == http.StatusConflict:
		return meetsync.ECONFLICT
	case status == http.StatusRequestEntityTooLarge:
		return meetsync.ETOOLARGE
	case status == http.StatusTooManyRequests:
		return meetsync.ERATELIMIT
	case status == http.StatusBadGateway, status == http.StatusServiceUnavailable, status == http.StatusGatewayTimeout:
		return meetsync.EUNAVAILABLE
	case status >= 400 && status < 500:
		return meetsync.EINVALID
	case status == http.StatusNotImplemented, status == http.StatusHTTPVersionNotSupported:
		// The server (or a proxy) does not do what was asked: a retry
		// cannot help, as with a 4xx.
		return meetsync.EINVALID
	}
	return meetsync.EINTERNAL
}

func retryAfter(resp *http.Response) time.Duration {
	v := resp.Header.Get("Retry-After")
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

// netError is a transport failure: it is a *meetsync.Error with the code
// EUNAVAILABLE (errors.As finds it) and wraps the cause (errors.Is finds
// context.Canceled, syscall.ECONNREFUSED…).
type netError struct {
	me    *meetsync.Error
	cause error
}

func (e *netError) Error() string   { return e.me.Error() }
func (e *netError) Unwrap() []error { return []error{e.me, e.cause} }

func transportError(method, path string, err error) error {
	var ne *netError
	if errors.As(err, &ne) {
		return err
	}
	return &netError{me: meetsync.Errorf(meetsync.EUNAVAILABLE, "%s %s: %v", method, path, err), cause: err}
}

// retryable reports whether a failed call may be tried again.
func retryable(err error, idempotent bool) bool {
	var ne *netError
	if errors.As(err, &ne) {
		if errors.Is(err, context.Canceled) {
			return false
		}
		// A refused connection never reached the server.
		return idempotent || notSent(err)
	}
	switch meetsync.ErrorCode(err) {
	case meetsync.ERATELIMIT:
		return true // refused before any work
	case meetsync.EUNAVAILABLE, meetsync.EINTERNAL:
		return idempotent
	}
	return false
}

// notSent reports whether a transport error happened before the request
// could reach the server.
func notSent(err error) bool {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// escape escapes one path segment.
func escape(s string) string { return url.PathEscape(s) }

// Ptr returns a pointer to v, for the optional fields of update requests.
func Ptr[T any](v T) *T { return &v }

// Healthz checks that the server is up (GET /healthz).
func (c *Client) Healthz(ctx context.Context) error {
	return c.do(ctx, request{method: "GET", path: "/healthz", idempotent: true}, nil)
}

// Readyz checks that the server is ready to serve (GET /readyz): its
// store is reachable and it is not shutting down.
func (c *Client) Readyz(ctx context.Context) error {
	return c.do(ctx, request{method: "GET", path: "/readyz", idempotent: true}, nil)
}
