package httpapi

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

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
// with its cause and shown as "internal error".
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := meetsync.ErrorCode(err)
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

// unavailableLogEvery is how often a 503 caused by the store (the database
// out of reach) is logged: during an outage every request fails alike.
const unavailableLogEvery = 10 * time.Second

// logUnavailable logs err, a store being unavailable, once per
// unavailableLogEvery, with how many such errors were left out meanwhile.
func (s *Server) logUnavailable(r *http.Request, err error) {
	now := time.Now().UnixNano()
	last := s.unavailAt.Load()
	if now-last < int64(unavailableLogEvery) || !s.unavailAt.CompareAndSwap(last, now) {
		s.unavailSkipped.Add(1)
		return
	}
	s.log.Warn("store unavailable", "method", r.Method, "path", r.URL.Path, "err", err,
		"similar_since_last", s.unavailSkipped.Swap(0))
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
