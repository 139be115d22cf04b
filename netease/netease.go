package netease

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/meetsync/meetsync"
)

// Defaults of Config.
const (
	DefaultBaseURL           = "https://meeting-api.netease.im"
	DefaultTimeout           = 10 * time.Second
	DefaultMaxAttempts       = 3
	DefaultBackoff           = 200 * time.Millisecond
	DefaultMaxBackoff        = 2 * time.Second
	DefaultCallbackTolerance = 5 * time.Minute
)

// maxResponseBytes bounds what is read of a platform answer.
const maxResponseBytes = 1 << 20

// Config configures a Provider. AppKey and AppSecret are required.
type Config struct {
	// AppKey and AppSecret are the NetEase application's credentials
	// (console: 应用配置). AppSecret signs requests and verifies callbacks;
	// it never appears in an error message.
	AppKey    string
	AppSecret string
	// BaseURL is the API gateway, scheme and host (and an optional path
	// prefix). Default DefaultBaseURL.
	BaseURL string
	// HTTPClient sends the requests. Default: a client with
	// http.DefaultTransport's settings.
	HTTPClient *http.Client
	// Timeout bounds each attempt of a request. Default 10 s.
	Timeout time.Duration
	// MaxAttempts is how many times a request is tried in all when it
	// fails with a 5xx or a connection error (1 = no retry). Default 3.
	MaxAttempts int
	// Backoff is the wait before the first retry; it doubles for each
	// further retry (with jitter) up to MaxBackoff. Defaults 200 ms and 2 s.
	Backoff    time.Duration
	MaxBackoff time.Duration
	// Now returns the current time, for the CurTime request header.
	// Default time.Now.
	Now func() time.Time
	// CallbackTolerance is how far a callback's CurTime may be from the
	// verifier's clock, in either direction. Default 5 min.
	CallbackTolerance time.Duration
}

// ConfigFrom returns the Config of an app's provider setting, with every
// other field at its default.
func ConfigFrom(pc meetsync.ProviderConfig) Config {
	return Config{AppKey: pc.AppKey, AppSecret: pc.AppSecret, BaseURL: pc.BaseURL}
}

func (c Config) withDefaults() Config {
	if c.BaseURL == "" {
		c.BaseURL = DefaultBaseURL
	}
	c.BaseURL = strings.TrimRight(c.BaseURL, "/")
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{}
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.Backoff <= 0 {
		c.Backoff = DefaultBackoff
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.MaxBackoff < c.Backoff {
		c.MaxBackoff = c.Backoff
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.CallbackTolerance <= 0 {
		c.CallbackTolerance = DefaultCallbackTolerance
	}
	return c
}

func (c Config) validate() error {
	if strings.TrimSpace(c.AppKey) == "" {
		return meetsync.FieldErrorf("app_key", "app_key is required for the netease provider")
	}
	if strings.TrimSpace(c.AppSecret) == "" {
		return meetsync.FieldErrorf("app_secret", "app_secret is required for the netease provider")
	}
	u, err := url.Parse(c.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return meetsync.FieldErrorf("base_url", "base_url must be an absolute http(s) URL such as %s", DefaultBaseURL)
	}
	return nil
}

// Provider is the NetEase Meeting implementation of meetsync.Provider for
// one NetEase application. It is safe for concurrent use.
type Provider struct {
	cfg Config
}

var _ meetsync.Provider = (*Provider)(nil)

// New returns a Provider. EINVALID (naming app_key, app_secret or base_url)
// for an unusable Config.
func New(cfg Config) (*Provider, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Provider{cfg: cfg}, nil
}

// Kind returns meetsync.ProviderNetEase.
func (p *Provider) Kind() string { return meetsync.ProviderNetEase }

// AppKey returns the NetEase application key the provider serves.
func (p *Provider) AppKey() string { return p.cfg.AppKey }

// CheckSum returns the request signature NetEase expects in the CheckSum
// header: lowercase hex SHA1(secret + nonce + curTime).
func CheckSum(secret, nonce, curTime string) string {
	return sha1Hex(secret + nonce + curTime)
}

func sha1Hex(s string) string {
	sum := sha1.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// Request header names.
const (
	HeaderAppKey   = "AppKey"
	HeaderNonce    = "Nonce"
	HeaderCurTime  = "CurTime"
	HeaderCheckSum = "CheckSum"
	HeaderMD5      = "MD5"
)

// envelope is every answer of the server API.
type envelope struct {
	Code      *int            `json:"code"`
	Msg       string          `json:"msg"`
	RequestID string          `json:"requestId"`
	Data      json.RawMessage `json:"data"`
}

// call describes one API request.
type call struct {
	op     string // the API's name, for messages: "add-user"
	method string
	path   string
	query  url.Values
	body   any // JSON-encoded when non-nil
}

// attemptError is the outcome of a failed attempt that may be retried.
type attemptError struct {
	msg string // caller-safe description
}

// do sends c, retrying 5xx answers and connection errors, and decodes the
// envelope's data into out (when out is non-nil).
func (p *Provider) do(ctx context.Context, c call, out any) error {
	var payload []byte
	if c.body != nil {
		b, err := json.Marshal(c.body)
		if err != nil {
			return fmt.Errorf("netease %s: encode request: %w", c.op, err)
		}
		payload = b
	}
	target := p.cfg.BaseURL + c.path
	if len(c.query) > 0 {
		target += "?" + c.query.Encode()
	}
	if _, err := url.Parse(target); err != nil {
		return fmt.Errorf("netease %s: build the request URL: %w", c.op, err)
	}
	var last *attemptError
	for attempt := 1; ; attempt++ {
		env, status, aerr := p.attempt(ctx, c, target, payload)
		if aerr == nil {
			return p.finish(c, env, status, out)
		}
		last = aerr
		if ctx.Err() != nil {
			return meetsync.Errorf(meetsync.EUNAVAILABLE, "netease %s: %s (gave up: %v)", c.op, last.msg, ctx.Err())
		}
		if attempt >= p.cfg.MaxAttempts {
			break
		}
		if err := sleep(ctx, p.backoff(attempt)); err != nil {
			return meetsync.Errorf(meetsync.EUNAVAILABLE, "netease %s: %s (gave up: %v)", c.op, last.msg, err)
		}
	}
	return meetsync.Errorf(meetsync.EUNAVAILABLE, "netease %s: %s after %d attempts", c.op, last.msg, p.cfg.MaxAttempts)
}

// backoff returns the wait after the attempt-th failure: Backoff doubled
// per retry, capped at MaxBackoff, with "equal jitter" (half fixed, half
// random) so that many callers do not retry in step.
func (p *Provider) backoff(attempt int) time.Duration {
	d := p.cfg.Backoff
	for i := 1; i < attempt && d < p.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, p.cfg.MaxBackoff)
	half := d / 2
	return half + time.Duration(mrand.Int64N(int64(half)+1))
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// attempt sends one signed request. A nil *attemptError means the platform
// answered something final (success, a 4xx or a business error); env is
// then nil when the body was not an envelope.
func (p *Provider) attempt(ctx context.Context, c call, target string, payload []byte) (*envelope, int, *attemptError) {
	actx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	var body io.Reader
	if payload != nil {
		body = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(actx, c.method, target, body)
	if err != nil {
		// A malformed URL: not retryable, not the platform's fault.
		return nil, 0, &attemptError{msg: "cannot build the request (check base_url)"}
	}
	if payload != nil {
		req.Header.Set("Content-Type", "application/json;charset=utf-8")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "meetsync-netease/1")
	p.sign(req.Header)

	resp, err := p.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, 0, &attemptError{msg: describeTransportError(err, actx)}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return nil, 0, &attemptError{msg: "connection failed while reading the answer: " + describeTransportError(err, actx)}
	}
	if resp.StatusCode >= 500 {
		return nil, 0, &attemptError{msg: fmt.Sprintf("platform answered HTTP %d", resp.StatusCode)}
	}
	var env envelope
	if json.Unmarshal(raw, &env) != nil || env.Code == nil {
		return nil, resp.StatusCode, nil
	}
	return &env, resp.StatusCode, nil
}

// sign sets the four signature headers with a fresh nonce.
func (p *Provider) sign(h http.Header) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	nonce := hex.EncodeToString(b[:])
	cur := strconv.FormatInt(p.cfg.Now().Unix(), 10)
	h.Set(HeaderAppKey, p.cfg.AppKey)
	h.Set(HeaderNonce, nonce)
	h.Set(HeaderCurTime, cur)
	h.Set(HeaderCheckSum, CheckSum(p.cfg.AppSecret, nonce, cur))
}

// describeTransportError says what went wrong on the wire, without the URL
// (which net/url errors repeat) or anything else from the request.
func describeTransportError(err error, actx context.Context) string {
	var ne net.Error
	switch {
	case errors.Is(actx.Err(), context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		return "no answer (timed out)"
	case errors.Is(err, context.Canceled):
		return "request canceled"
	}
	var op *net.OpError
	if errors.As(err, &op) {
		cause := op.Err
		var se *os.SyscallError
		if errors.As(cause, &se) {
			cause = se.Err
		}
		return "connection failed (" + op.Op + ": " + cause.Error() + ")"
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "connection closed by the platform"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return "connection failed (" + ue.Err.Error() + ")"
	}
	return "connection failed"
}

// finish turns a final answer into the call's result.
func (p *Provider) finish(c call, env *envelope, status int, out any) error {
	if env == nil {
		if status >= 200 && status < 300 {
			return meetsync.Errorf(meetsync.EUNAVAILABLE, "netease %s: the platform's answer (HTTP %d) is not the API's JSON envelope", c.op, status)
		}
		return mapError(c.op, status, "", "", httpStatusCode(status))
	}
	code := *env.Code
	if code == 0 || code == 200 {
		if out == nil || len(env.Data) == 0 || string(env.Data) == "null" {
			return nil
		}
		if err := json.Unmarshal(env.Data, out); err != nil {
			return meetsync.Errorf(meetsync.EUNAVAILABLE, "netease %s: unexpected data in the answer (requestId %s)", c.op, safeText(env.RequestID, 64))
		}
		return nil
	}
	return mapError(c.op, status, env.Msg, env.RequestID, code)
}

// httpStatusCode maps an HTTP status without an envelope to the platform
// code of the same meaning.
func httpStatusCode(status int) int {
	if status >= 200 && status < 300 {
		return 500
	}
	return status
}

// Platform error codes (NetEase Meeting / NERoom server API 错误码).
const (
	codeBadRequest     = 400
	codeUnauthorized   = 401
	codeTokenIncorrect = 402
	codeForbidden      = 403
	codeNotFound       = 404
	codeMethod         = 405
	codeTokenExpired   = 406
	codeExists         = 409
	codeParam          = 414 // parameter error (IM-style)
	codeMediaType      = 415
	codeRateLimit      = 416 // frequency limit (IM-style)
	codeTooMany        = 429
	codeInternal       = 500
	codeBusy           = 503
	codeIMUserMissing  = 701
	codeIMService      = 702
	codeIMUserExists   = 703
	codeNotEnabled     = 600420
)

// mapError maps a platform error code to a meetsync error.
func mapError(op string, status int, msg, requestID string, code int) error {
	var mcode, what string
	switch {
	case code == codeUnauthorized:
		mcode, what = meetsync.EFORBIDDEN, "the platform rejected meetsync's credentials for this app (check the provider's app_key and app_secret)"
	case code == codeForbidden || code == codeNotEnabled:
		mcode, what = meetsync.EFORBIDDEN, "the platform refused the operation"
	case code == codeTokenIncorrect || code == codeTokenExpired:
		mcode, what = meetsync.EUNAUTHORIZED, "the platform rejected a token"
	case code == codeNotFound || code == codeIMUserMissing:
		mcode, what = meetsync.ENOTFOUND, "not found on the platform"
	case code == codeExists || code == codeIMUserExists:
		mcode, what = meetsync.ECONFLICT, "already exists on the platform"
	case code == codeRateLimit || code == codeTooMany:
		mcode, what = meetsync.ERATELIMIT, "the platform's rate limit was reached"
	case code == codeInternal || code == codeBusy || code == codeIMService || code >= 500 && code < 600:
		mcode, what = meetsync.EUNAVAILABLE, "the platform failed"
	default: // 400, 405, 414, 415, 3xxx meeting parameter errors, anything else
		mcode, what = meetsync.EINVALID, "the platform refused the request"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "netease %s: %s (code %d", op, what, code)
	if status != 0 && status != 200 {
		fmt.Fprintf(&b, ", HTTP %d", status)
	}
	if m := safeText(msg, 200); m != "" {
		fmt.Fprintf(&b, ": %s", m)
	}
	if r := safeText(requestID, 64); r != "" {
		fmt.Fprintf(&b, ", requestId %s", r)
	}
	b.WriteString(")")
	return &meetsync.Error{Code: mcode, Message: b.String()}
}

// safeText returns s cut to n bytes, valid UTF-8, without control characters.
func safeText(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	s = strings.ToValidUTF8(s, "")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			return -1
		}
		return r
	}, s)
	return strings.TrimSpace(s)
}
