package meetsync

import (
	"errors"
	"fmt"
)

// Error codes. Each maps to exactly one HTTP status in httpapi (the only
// table that does so) and travels back to Go clients unchanged.
const (
	EINVALID      = "invalid"      // bad input: 400
	EUNAUTHORIZED = "unauthorized" // missing, wrong or revoked credentials: 401
	EFORBIDDEN    = "forbidden"    // authenticated but not allowed: 403
	ENOTFOUND     = "not_found"    // does not exist, or belongs to another app: 404
	ECONFLICT     = "conflict"     // clashes with existing state: 409
	ETOOLARGE     = "too_large"    // request body over the limit: 413
	ERATELIMIT    = "rate_limited" // slow down: 429
	EUNAVAILABLE  = "unavailable"  // not ready or shutting down: 503
	EINTERNAL     = "internal"     // a bug or an infrastructure failure: 500
)

// Error is meetsync's error type: a code from the list above, a message safe
// to show to the caller, and optionally the input field at fault.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

// Error implements the error interface.
func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("meetsync %s: %s (field %s)", e.Code, e.Message, e.Field)
	}
	return fmt.Sprintf("meetsync %s: %s", e.Code, e.Message)
}

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// FieldErrorf returns an EINVALID *Error that names the input field at fault.
func FieldErrorf(field, format string, args ...any) *Error {
	return &Error{Code: EINVALID, Message: fmt.Sprintf(format, args...), Field: field}
}

// ErrorCode returns the code of err if it is (or wraps) an *Error, and
// EINTERNAL for any other non-nil error.
func ErrorCode(err error) string {
	var e *Error
	if err == nil {
		return ""
	} else if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the caller-safe message of err: the message of an
// *Error, or "internal error" for anything else (whose cause is logged, never shown).
func ErrorMessage(err error) string {
	var e *Error
	if err == nil {
		return ""
	} else if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}

// ErrorField returns the field named by err if it is an *Error.
func ErrorField(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Field
	}
	return ""
}
