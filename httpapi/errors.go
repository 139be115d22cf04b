package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/meetsync/meetsync"
)

// statusOf is the one table from error codes to HTTP statuses.
var statusOf = map[string]int{
	meetsync.EINVALID:      http.StatusBadRequest,
	meetsync.EUNAUTHORIZED: http.StatusUnauthorized,
	meetsync.EFORBIDDEN:    http.StatusForbidden,
	meetsync.ENOTFOUND:     http.StatusNotFound,
	meetsync.ECONFLICT:     http.StatusConflict,
	meetsync.ETOOLARGE:     http.StatusRequestEntityTooLarge,
	meetsync.ERATELIMIT:    http.StatusTooManyRequests,
	meetsync.EUNAVAILABLE:  http.StatusServiceUnavailable,
	meetsync.EINTERNAL:     http.StatusInternalServerError,
}

// ErrorStatus returns the HTTP status for an error code.
func ErrorStatus(code string) int {
	if s, ok := statusOf[code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

type errorBody struct {
	Error *meetsync.Error `json:"error"`
}

// writeError writes err as {"error":{…}}. An internal error is logged once
// with its cause and shown as "internal error". A request whose client went
// away is neither: see clientGone.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := meetsync.ErrorCode(err)
	if clientGone(r, err, code) {
		// Nobody reads an answer, and nothing failed on meetsync's side:
		// logged at Debug, and counted as 499 (the status proxies use for
		// a client that closed the request), not as a 500.
		s.log.Debug("request canceled by the client", "method", r.Method, "path", r.URL.Path, "err", err)
		w.WriteHeader(statusClientClosed)
		return
	}
	switch code {
	case meetsync.EINTERNAL:
		s.log.Error("internal error", "method", r.Method, "path", r.URL.Path, "err", err)
	case meetsync.EUNAVAILABLE:
		if _, bare := err.(*meetsync.Error); !bare {
			s.logUnavailable(r, err)
		}
		// Clients (meetsync's among them) wait this long before trying
		// again, on this replica or another.
		w.Header().Set("Retry-After", "1")
	case meetsync.ERATELIMIT:
		// Ours says how long; one passed on from the meeting platform, 1 s.
		if w.Header().Get("Retry-After") == "" {
			w.Header().Set("Retry-After", "1")
		}
	}
	var maxErr *http.MaxBytesError
	if errors.As(err, &maxErr) {
		code, err = meetsync.ETOOLARGE, meetsync.Errorf(meetsync.ETOOLARGE, "request body is larger than %d bytes", maxErr.Limit)
	}
	body := errorBody{&meetsync.Error{Code: code, Message: meetsync.ErrorMessage(err), Field: meetsync.ErrorField(err)}}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(ErrorStatus(code))
	_ = json.NewEncoder(w).Encode(body)
}

// statusClientClosed is the status a request is counted with
// (meetsync_http_requests_total) when its client went away before the
// answer: nginx's 499 "client closed request".
const statusClientClosed = 499

// clientGone reports whether err is the end of a request whose client went
// away: its context was canceled (net/http does that when the connection
// closes, or an HTTP/2 stream is reset) and err is that cancellation, or an
// uncoded error that the store or the committer returned because of it
// (a driver's "context canceled", "interrupted"). A store deadline that
// passed is not the client's doing: it is EUNAVAILABLE (internal/storetimeout).
func clientGone(r *http.Request, err error, code string) bool {
	if r.Context().Err() == nil {
		return false
	}
	return code == meetsync.EINTERNAL || errors.Is(err, context.Canceled)
}

// logUnavailable logs err, a store being unavailable: at WARN, once per
// storelog.Every, with how many such errors were left out meanwhile
// (during an outage every request fails alike).
func (s *Server) logUnavailable(r *http.Request, err error) {
	s.storeLog.Error("store unavailable", err, "method", r.Method, "path", r.URL.Path)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		slog.Error("encode response", "err", err)
		http.Error(w, `{"error":{"code":"internal","message":"internal error"}}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b = append(b, '\n')
	_, _ = w.Write(b)
}
