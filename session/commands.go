package session

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/meetsync/meetsync"
)

// AckInput is the body of POST /v1/client/commands/{id}/ack: the outcome
// of acting on the command, {"ok":true} or {"ok":false,"code":3,
// "message":"…"} — the shape of the Go client's Result and of the body of
// POST /v1/client/login. An empty body is {"ok":true}.
type AckInput struct {
	OK *bool `json:"ok"`
	// Code and Message say why the device could not act on the command
	// (the SDK's error code and message).
	Code    int    `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
	// Error is the former name of Message, still accepted.
	Error string `json:"error,omitempty"`
}

// maxAckMessage is the longest message an ack may have.
const maxAckMessage = 1024

// outcome checks an ack and returns whether the device acted on the
// command and the ack error to store with it (ackErrorText).
func (in AckInput) outcome() (ok bool, errText string, err error) {
	msg, field := in.Message, "message"
	if in.Error != "" {
		if msg != "" && msg != in.Error {
			return false, "", meetsync.FieldErrorf("error", "error is the former name of message: send message only")
		}
		msg, field = in.Error, "error"
	}
	if utf8.RuneCountInString(msg) > maxAckMessage {
		return false, "", meetsync.FieldErrorf(field, "%s must be at most %d characters", field, maxAckMessage)
	}
	if in.OK == nil {
		if in.Code != 0 || msg != "" {
			return false, "", meetsync.FieldErrorf("ok", "ok is required with code or message: false if the device could not act on the command")
		}
		return true, "", nil
	}
	return *in.OK, ackErrorText(in.Code, msg), nil
}

// ackErrorText is the ack error stored for a code and message:
// "code 3: sdk logout failed", "code 3" without a message, the message
// alone with code 0.
func ackErrorText(code int, msg string) string {
	switch {
	case code == 0:
		return msg
	case msg == "":
		return "code " + strconv.Itoa(code)
	default:
		return "code " + strconv.Itoa(code) + ": " + msg
	}
}

// parseAckError is the inverse of ackErrorText.
func parseAckError(s string) (code int, msg string) {
	rest, ok := strings.CutPrefix(s, "code ")
	if !ok {
		return 0, s
	}
	num, msg, _ := strings.Cut(rest, ": ")
	n, err := strconv.Atoi(num)
	if err != nil || n == 0 {
		return 0, s
	}
	return n, msg
}

// failedDevice is a device of session.logged_out's devices_failed: it
// acknowledged its logout command with ok false, and the code and message
// it gave.
type failedDevice struct {
	DeviceID string `json:"device_id"`
	Code     int    `json:"code"`
	Message  string `json:"message"`
}

// logoutAnswers sorts the devices of a logging-out session by their
// answers to its logout commands: confirmed (acknowledged ok), failed
// (acknowledged with ok false) and unconfirmed (not acknowledged yet).
// A device with an ok ack is confirmed whatever else it sent; of several
// failures the last counts.
func logoutAnswers(devices []string, cmds []*meetsync.Command) (confirmed []string, failed []failedDevice, unconfirmed []string) {
	confirmed, unconfirmed = []string{}, []string{}
	for _, d := range devices {
		var ack *meetsync.Command
		for _, c := range cmds {
			if c.DeviceID == d && c.Type == meetsync.CommandLogout && c.AckedAt != nil && (ack == nil || !ack.AckOK) {
				ack = c
			}
		}
		switch {
		case ack == nil:
			unconfirmed = append(unconfirmed, d)
		case ack.AckOK:
			confirmed = append(confirmed, d)
		default:
			code, msg := parseAckError(ack.AckError)
			failed = append(failed, failedDevice{DeviceID: d, Code: code, Message: msg})
		}
	}
	return confirmed, failed, unconfirmed
}
