package httpapi

import (
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
// with its cause and shown as "internal error".
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := meetsync.ErrorCode(err)
	if code == meetsync.EINTERNAL {
		s.log.Error("internal error", "method", r.Method, "path", r.URL.Path, "err", err)
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
