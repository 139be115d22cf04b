package meetsync

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/meetsync/meetsync/internal/jsonscan"
)

// Event types built into meetsync. Their namespaces are reserved: an app
// cannot ingest an unknown type in them, nor register a custom type there.
const (
	TypeClientInitialized    = "client.initialized"
	TypeSessionLoginStarted  = "session.login_started"
	TypeSessionLoggedIn      = "session.logged_in"
	TypeSessionLoginFailed   = "session.login_failed"
	TypeSessionRolledBack    = "session.rolled_back"
	TypeSessionDegraded      = "session.degraded"
	TypeSessionLogoutStarted = "session.logout_started"
	TypeSessionLoggedOut     = "session.logged_out"
	TypeSessionKickedOut     = "session.kicked_out"
	TypeSessionAuthExpired   = "session.auth_expired"
	TypeSessionDiverged      = "session.diverged"
	TypeMeetingStatusChanged = "meeting.status_changed"
	TypeMeetingStarted       = "meeting.started"
	TypeMeetingEnded         = "meeting.ended"
	TypeMeetingMemberJoined  = "meeting.member_joined"
	TypeMeetingMemberLeft    = "meeting.member_left"
	TypeMeetingPlatformEvent = "meeting.platform_event"
	TypeInvitationCreated    = "invitation.created"
	TypeInvitationAccepted   = "invitation.accepted"
	TypeInvitationRejected   = "invitation.rejected"
	TypeInvitationCanceled   = "invitation.canceled"
	TypeInvitationExpired    = "invitation.expired"
	TypeEndpointDisabled     = "endpoint.disabled"
	// TypeEndpointTest is the type of the test webhook an endpoint is sent
	// on request (POST /v1/endpoints/{id}/test); it is not an event of the
	// feed.
	TypeEndpointTest      = "endpoint.test"
	TypeDeliveryExhausted = "delivery.exhausted"
)

// BuiltinType describes one built-in event type.
type BuiltinType struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// Ingestible types may be posted to /v1/events; the others are emitted
	// by meetsync itself (sessions, invitations, delivery).
	Ingestible bool `json:"ingestible"`
}

// BuiltinTypes lists the built-in event types.
var BuiltinTypes = []BuiltinType{
	{TypeClientInitialized, "A client initialised the business system and the meeting SDK (results of both).", true},
	{TypeSessionLoginStarted, "The business side of a user logged in; meeting credentials were issued and the meeting login is pending.", false},
	{TypeSessionLoggedIn, "Both sides of a user's session are logged in.", false},
	{TypeSessionLoginFailed, "The meeting-side login failed after its retries.", false},
	{TypeSessionRolledBack, "The session was rolled back by the app's policy.", false},
	{TypeSessionDegraded, "The meeting side did not log in by the deadline; by the app's degrade policy the business session stays and meetings are unavailable.", false},
	{TypeSessionLogoutStarted, "A logout was requested: the meeting credentials are revoked and the user's devices told to log out.", false},
	{TypeSessionLoggedOut, "Both sides of a user's session are logged out.", false},
	{TypeSessionKickedOut, "The meeting SDK reported onKickOut.", true},
	{TypeSessionAuthExpired, "The meeting SDK reported onAuthInfoExpired.", true},
	{TypeSessionDiverged, "The reconciler found the two sides of a session disagreeing.", false},
	{TypeMeetingStatusChanged, "A user's NEMeeting status changed (onMeetingStatusChanged).", true},
	{TypeMeetingStarted, "A meeting started.", true},
	{TypeMeetingEnded, "A meeting ended.", true},
	{TypeMeetingMemberJoined, "A user joined a meeting.", true},
	{TypeMeetingMemberLeft, "A user left a meeting.", true},
	{TypeMeetingPlatformEvent, "A meeting-platform callback meetsync does not interpret, with its original payload.", false},
	{TypeInvitationCreated, "An invitation was created for this user.", false},
	{TypeInvitationCalling, "An invitation reached a device of the invitee.", false},
	{TypeInvitationAccepted, "An invitation was accepted.", false},
	{TypeInvitationRejected, "An invitation was rejected.", false},
	{TypeInvitationCanceled, "An invitation was canceled.", false},
	{TypeInvitationExpired, "An invitation expired.", false},
	{TypeInvitationJoined, "The invitee joined the meeting of an invitation: it is complete.", false},
	{TypeEndpointDisabled, "A webhook endpoint was disabled.", false},
	{TypeDeliveryExhausted, "A delivery used up its retries and is now a dead letter.", false},
}

var builtinByName = func() map[string]BuiltinType {
	m := map[string]BuiltinType{}
	for _, t := range BuiltinTypes {
		m[t.Name] = t
	}
	return m
}()

// ReservedNamespaces are the type prefixes owned by meetsync.
var ReservedNamespaces = []string{"session", "client", "meeting", "invitation", "endpoint", "delivery"}

// IsReservedType reports whether name lies in a reserved namespace.
func IsReservedType(name string) bool {
	ns, _, _ := strings.Cut(name, ".")
	for _, r := range ReservedNamespaces {
		if ns == r {
			return true
		}
	}
	return false
}

// LookupBuiltinType returns the built-in type called name.
func LookupBuiltinType(name string) (BuiltinType, bool) {
	t, ok := builtinByName[name]
	return t, ok
}

// Event sources.
const (
	SourceClient   = "client"
	SourceBusiness = "business"
	SourcePlatform = "platform"
	SourceSystem   = "system"
)

// Event is an immutable record in a user's log.
type Event struct {
	// Pos is the event's position in the app's feed (the cursor). It is
	// assigned by the store, increases in commit order and is never reused.
	Pos        int64
	ID         string
	Type       string
	AppID      string
	UserID     string
	Seq        int64 // per-user, gap-free, assigned by the store
	OccurredAt time.Time
	ReceivedAt time.Time
	Source     string
	DeviceID   string
	ClientSeq  int64 // 0 when the source gave none
	Stale      bool
	Data       json.RawMessage
	// SchemaVersion is the version of the custom type's schema the data was
	// validated against on ingest (0: a built-in type, or a custom type not
	// registered then). An event keeps it for good.
	SchemaVersion int

	// Effects, set only on events meetsync makes itself, say what the event
	// does besides its status (see UserState.Apply). Not stored.
	Effects *EventEffects

	// CallerID is true when ID was supplied by the caller (and so must be
	// checked for duplicates).
	CallerID bool
	// status holds the parsed meeting status of a meeting.status_changed event.
	status *statusData
}

// EventEffects are the state changes a server-made event carries.
type EventEffects struct {
	// Session replaces the user's session (its Version is assigned by Apply).
	Session *Session
	// Member is a change of the user's meeting membership reported by the platform.
	Member *Membership
	// Invitation is written with the event (the store checks that the
	// stored version is Version-1, or that none exists for Version 1).
	Invitation *Invitation
}

// Membership is the platform's report that a user joined or left a meeting.
type Membership struct {
	MeetingNum string
	Joined     bool
	// CheckAt is when a device still in the meeting is corrected (left only).
	CheckAt time.Time
}

// statusData is the parsed content of a meeting.status_changed event.
type statusData struct {
	Status     MeetingStatus
	Reason     Reason
	MeetingNum string
}

// EffectiveTime is the time used to order an event against a user's
// state: its occurred_at, but never later than when meetsync received it
// (a device with a clock in the future cannot pin a state).
func (e *Event) EffectiveTime() time.Time {
	if e.OccurredAt.After(e.ReceivedAt) {
		return e.ReceivedAt
	}
	return e.OccurredAt
}

// EventInput is one event as posted to the ingest API.
type EventInput struct {
	ID         string          `json:"id,omitempty"`
	Type       string          `json:"type"`
	UserID     string          `json:"user_id"`
	DeviceID   string          `json:"device_id,omitempty"`
	ClientSeq  *int64          `json:"client_seq,omitempty"`
	OccurredAt string          `json:"occurred_at,omitempty"`
	Data       json.RawMessage `json:"data,omitempty"`
}

// Limits of the ingest API.
const (
	MaxBatchEvents = 1000
	MaxBodyBytes   = 1 << 20
	maxIDLen       = 128
)

// TypeChecker validates events of custom (non-built-in) types. A nil
// TypeChecker accepts every well-formed custom type.
type TypeChecker interface {
	// CheckCustomEvent validates the data of an event of the custom type
	// typ and returns the version of the type's schema it was validated
	// against (0 if the type is not registered). prefix is the event's
	// field prefix for errors ("events[3]", or "" for a single event): an
	// error is an EINVALID *Error naming prefix.data.<path> (a schema
	// violation) or prefix.type (a type the app requires to be registered).
	CheckCustomEvent(appID, typ string, data json.RawMessage, prefix string) (version int, err error)
}

// PrepareParams are the inputs of PrepareEvent besides the event itself.
type PrepareParams struct {
	AppID      string
	Source     string
	ReceivedAt time.Time
	Field      string // prefix for error fields, e.g. "events[3]"
	// ForceUserID/ForceDeviceID are set for client tokens: the event must
	// be for this user (and device).
	ForceUserID   string
	ForceDeviceID string
	NewID         func() string
	Types         TypeChecker
}

func fieldName(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// PrepareEvent validates an ingest input and turns it into an Event ready
// to append (no seq yet). Every error is an EINVALID *Error naming the field.
func PrepareEvent(in *EventInput, p PrepareParams) (*Event, error) {
	// Field names are built only for an error.
	f := func(name string) string { return fieldName(p.Field, name) }
	if !validTypeName(in.Type) {
		return nil, checkTypeName(in.Type, f("type"))
	}
	if p.ForceUserID != "" {
		if in.UserID != "" && in.UserID != p.ForceUserID {
			return nil, &Error{Code: EFORBIDDEN, Message: "a client token can only post events of its own user", Field: f("user_id")}
		}
		in.UserID = p.ForceUserID
	}
	if p.ForceDeviceID != "" {
		if in.DeviceID != "" && in.DeviceID != p.ForceDeviceID {
			return nil, &Error{Code: EFORBIDDEN, Message: "a client token can only post events of its own device", Field: f("device_id")}
		}
		in.DeviceID = p.ForceDeviceID
	}
	if !validIdent(in.UserID, true) {
		return nil, checkIdent(in.UserID, f("user_id"), true)
	}
	if strings.HasPrefix(in.UserID, "@") {
		return nil, FieldErrorf(f("user_id"), "user ids starting with '@' are reserved for meetsync")
	}
	if !validIdent(in.DeviceID, false) {
		return nil, checkIdent(in.DeviceID, f("device_id"), false)
	}
	var ev *Event
	var sd *statusData
	if in.Type == TypeMeetingStatusChanged {
		// One allocation for the event and its status.
		es := new(struct {
			ev Event
			sd statusData
		})
		ev, sd = &es.ev, &es.sd
	} else {
		ev = new(Event)
	}
	*ev = Event{
		Type:       in.Type,
		AppID:      p.AppID,
		UserID:     in.UserID,
		DeviceID:   in.DeviceID,
		ReceivedAt: p.ReceivedAt,
		OccurredAt: p.ReceivedAt,
		Source:     p.Source,
	}
	if in.ClientSeq != nil {
		if *in.ClientSeq < 1 {
			return nil, FieldErrorf(f("client_seq"), "client_seq must be a positive integer")
		}
		if in.DeviceID == "" {
			return nil, FieldErrorf(f("device_id"), "device_id is required with client_seq")
		}
		ev.ClientSeq = *in.ClientSeq
	}
	if in.OccurredAt != "" {
		t, err := time.Parse(time.RFC3339Nano, in.OccurredAt)
		if err != nil {
			return nil, FieldErrorf(f("occurred_at"), "occurred_at must be an RFC 3339 time such as 2026-01-02T15:04:05.123Z")
		}
		if t.Year() < 2000 || t.Year() > 9999 {
			return nil, FieldErrorf(f("occurred_at"), "occurred_at is out of range")
		}
		ev.OccurredAt = t.UTC()
	}
	if in.ID != "" {
		if !validIdent(in.ID, true) {
			return nil, checkIdent(in.ID, f("id"), true)
		}
		if strings.HasPrefix(in.ID, "evt_") {
			// meetsync's own ids are unique by construction and not indexed:
			// a caller cannot reuse one (post the event without "id" instead).
			return nil, FieldErrorf(f("id"), "ids starting with \"evt_\" are meetsync's own; choose another id")
		}
		ev.ID, ev.CallerID = in.ID, true
	} else {
		ev.ID = p.NewID()
	}
	data := bytes.TrimSpace(in.Data)
	if len(data) == 0 || bytes.Equal(data, []byte("null")) {
		data = []byte("{}")
	}
	if data[0] != '{' {
		return nil, FieldErrorf(f("data"), "data must be a JSON object")
	}
	if bt, ok := builtinByName[in.Type]; ok {
		if !bt.Ingestible {
			return nil, FieldErrorf(f("type"), "%s events are emitted by meetsync itself and cannot be posted", in.Type)
		}
		if in.Type == TypeMeetingStatusChanged {
			norm, err := parseStatusData(sd, data, p.Field, ev.DeviceID)
			if err != nil {
				return nil, err
			}
			ev.status, data = sd, norm
		}
	} else if IsReservedType(in.Type) {
		return nil, FieldErrorf(f("type"), "unknown event type %q in a reserved namespace (%s.*); see GET /v1/event-types", in.Type, strings.SplitN(in.Type, ".", 2)[0])
	} else if p.Types != nil {
		v, err := p.Types.CheckCustomEvent(p.AppID, in.Type, data, p.Field)
		if err != nil {
			return nil, err
		}
		ev.SchemaVersion = v
	}
	ev.Data = data
	return ev, nil
}

// validTypeName reports whether checkTypeName accepts t, without building
// an error (nor splitting t).
func validTypeName(t string) bool {
	if t == "" || len(t) > 128 {
		return false
	}
	seg, j := 0, 0 // index of the segment, and of the byte in it
	for k := 0; k < len(t); k++ {
		c := t[k]
		if c == '.' {
			if j == 0 {
				return false
			}
			seg, j = seg+1, 0
			continue
		}
		if !((c >= 'a' && c <= 'z') || c == '_' || (c >= '0' && c <= '9' && (seg > 0 || j > 0)) || (c == '-' && j > 0)) {
			return false
		}
		j++
	}
	return j > 0
}

func checkTypeName(t, field string) error {
	if t == "" {
		return FieldErrorf(field, "type is required")
	}
	if len(t) > 128 {
		return FieldErrorf(field, "type is longer than 128 characters")
	}
	for i, part := range strings.Split(t, ".") {
		if part == "" {
			return FieldErrorf(field, "type %q has an empty segment", t)
		}
		for j, c := range part {
			ok := (c >= 'a' && c <= 'z') || c == '_' || (c >= '0' && c <= '9' && (i > 0 || j > 0)) || (c == '-' && j > 0)
			if !ok {
				return FieldErrorf(field, "type %q may contain only lowercase letters, digits, '_' and '-' in dot-separated segments", t)
			}
		}
	}
	return nil
}

// validIdent reports whether checkIdent accepts v, without building an error.
func validIdent(v string, required bool) bool {
	if v == "" {
		return !required
	}
	if len(v) > maxIDLen {
		return false
	}
	ascii := true
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < 0x20 || c == 0x7f {
			return false
		}
		if c >= utf8.RuneSelf {
			ascii = false
		}
	}
	// In valid UTF-8 the control characters are the bytes checked above.
	return ascii || utf8.ValidString(v)
}

func checkIdent(v, field string, required bool) error {
	if v == "" {
		if required {
			return FieldErrorf(field, "%s is required", lastSegment(field))
		}
		return nil
	}
	if len(v) > maxIDLen {
		return FieldErrorf(field, "%s is longer than %d bytes", lastSegment(field), maxIDLen)
	}
	if !utf8.ValidString(v) {
		return FieldErrorf(field, "%s is not valid UTF-8", lastSegment(field))
	}
	for _, c := range v {
		if c < 0x20 || c == 0x7f {
			return FieldErrorf(field, "%s contains a control character", lastSegment(field))
		}
	}
	return nil
}

func lastSegment(field string) string {
	if i := strings.LastIndexByte(field, '.'); i >= 0 {
		return field[i+1:]
	}
	return field
}

// parseStatusData validates the data of a meeting.status_changed event into
// sd and returns it normalised: status and reason as names and codes, the
// device, and any other fields the client sent kept as they were. prefix is
// the event's field prefix: errors name prefix.data.status and so on.
//
// The result is, byte for byte, what parseStatusDataMap gives (the
// encoding/json encoding of the normalised map: keys sorted, values
// compacted and HTML-escaped). Data of the usual shape (valid JSON, plain
// ASCII keys, none repeated, little nesting) is read by a small scanner and
// written by hand; anything else goes through the map.
func parseStatusData(sd *statusData, data json.RawMessage, prefix, deviceID string) (json.RawMessage, error) {
	var buf [16]objMember
	members, ok := scanObjectMembers(data, buf[:0])
	if !ok || !sortMembers(members) {
		return parseStatusDataMap(sd, data, fieldName(prefix, "data"), deviceID)
	}
	var rawStatus, rawArg, rawReason, rawNum []byte // nil when absent (a value is never empty)
	for _, m := range members {
		switch string(m.key) {
		case "status":
			rawStatus = m.val
		case "arg":
			rawArg = m.val
		case "reason":
			rawReason = m.val
		case "meeting_num":
			rawNum = m.val
		}
	}
	if rawStatus == nil {
		return nil, FieldErrorf(fieldName(prefix, "data")+".status", "status is required; accepted: %s", statusNames)
	}
	st, ok := meetingStatusOf(rawStatus)
	if !ok {
		return nil, statusError(rawStatus, fieldName(prefix, "data")+".status")
	}
	*sd = statusData{Status: st}
	rawR, name := rawArg, "arg"
	if rawR == nil {
		rawR, name = rawReason, "reason"
	}
	if rawR != nil && string(rawR) != "null" {
		if sd.Reason, ok = reasonOf(rawR); !ok {
			return nil, reasonError(rawR, fieldName(prefix, "data")+"."+name)
		}
	}
	if rawNum != nil && string(rawNum) != "null" {
		v, _, ok := scalarBytes(rawNum)
		if !ok || len(v) > 64 {
			return nil, FieldErrorf(fieldName(prefix, "data")+".meeting_num", "meeting_num must be a string or number of at most 64 characters")
		}
		sd.MeetingNum = string(v)
	}

	// Merge the client's other members (sorted) with the normalised ones
	// (statusKeys, sorted), skipping those the normalisation replaces or drops.
	out := make([]byte, 0, len(data)+len(deviceID)+len(sd.MeetingNum)+112)
	out = append(out, '{')
	i, k := 0, 0
	for {
		for i < len(members) && !keepMember(string(members[i].key), deviceID) {
			i++
		}
		for k < len(statusKeys) && ((k == 0 && deviceID == "") || (k == 1 && sd.MeetingNum == "")) {
			k++
		}
		if i == len(members) && k == len(statusKeys) {
			break
		}
		if len(out) > 1 {
			out = append(out, ',')
		}
		if k == len(statusKeys) || (i < len(members) && string(members[i].key) < statusKeys[k]) {
			m := members[i]
			out = append(out, '"')
			out = append(out, m.key...)
			out = append(out, '"', ':')
			if m.plain {
				out = append(out, m.val...)
			} else {
				out = jsonscan.AppendCompactHTML(out, m.val)
			}
			i++
			continue
		}
		out = append(out, '"')
		out = append(out, statusKeys[k]...)
		out = append(out, '"', ':')
		switch k {
		case 0:
			out = jsonscan.AppendString(out, deviceID)
		case 1:
			out = jsonscan.AppendString(out, sd.MeetingNum)
		case 2:
			out = jsonscan.AppendString(out, sd.Reason.Name())
		case 3:
			out = strconv.AppendInt(out, int64(sd.Reason), 10)
		case 4:
			out = jsonscan.AppendString(out, st.Name())
		case 5:
			out = strconv.AppendInt(out, int64(st), 10)
		}
		k++
	}
	return append(out, '}'), nil
}

// statusKeys are the keys parseStatusData writes, sorted (as
// encoding/json sorts a map's keys): device_id (when the event has a
// device), meeting_num (when not empty) and the others always.
var statusKeys = [...]string{"device_id", "meeting_num", "reason", "reason_code", "status", "status_code"}

// keepMember reports whether the client's member key stays in normalised
// status data as sent.
func keepMember(key, deviceID string) bool {
	switch key {
	case "arg", "status", "status_code", "reason", "reason_code", "meeting_num", "from", "from_code":
		return false
	case "device_id":
		return deviceID == ""
	}
	return true
}

// parseStatusDataMap is the general form of parseStatusData, through a map
// (field is the data's field name).
func parseStatusDataMap(sd *statusData, data json.RawMessage, field, deviceID string) (json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, FieldErrorf(field, "data must be a JSON object")
	}
	rawStatus, ok := m["status"]
	if !ok {
		return nil, FieldErrorf(field+".status", "status is required; accepted: %s", statusNames)
	}
	st, err := ParseMeetingStatus(rawStatus, field+".status")
	if err != nil {
		return nil, err
	}
	*sd = statusData{Status: st}
	rawReason, ok := m["arg"]
	if !ok {
		rawReason, ok = m["reason"]
	}
	if ok && string(rawReason) != "null" {
		name := "arg"
		if _, has := m["arg"]; !has {
			name = "reason"
		}
		if sd.Reason, err = ParseReason(rawReason, field+"."+name); err != nil {
			return nil, err
		}
	}
	if raw, ok := m["meeting_num"]; ok && string(raw) != "null" {
		v, isNum, ok := scalar(raw)
		if !ok || len(v) > 64 {
			return nil, FieldErrorf(field+".meeting_num", "meeting_num must be a string or number of at most 64 characters")
		}
		_ = isNum
		sd.MeetingNum = v
	}
	delete(m, "arg")
	m["status"] = mustJSON(st.Name())
	m["status_code"] = mustJSON(int(st))
	m["reason"] = mustJSON(sd.Reason.Name())
	m["reason_code"] = mustJSON(int(sd.Reason))
	if sd.MeetingNum != "" {
		m["meeting_num"] = mustJSON(sd.MeetingNum)
	} else {
		delete(m, "meeting_num")
	}
	if deviceID != "" {
		m["device_id"] = mustJSON(deviceID)
	}
	delete(m, "from")
	delete(m, "from_code")
	out, err := json.Marshal(m)
	if err != nil {
		return nil, FieldErrorf(field, "data is not valid JSON")
	}
	return out, nil
}

// objMember is a member of a JSON object, as scanObjectMembers reads it.
type objMember struct {
	key []byte // without quotes; plain (see scanObjectMembers)
	val []byte // the raw value
	// plain is true when val is compact and has nothing to HTML-escape:
	// encoding/json would write it as is.
	plain bool
}

// maxScanDepth bounds the nesting scanObjectMembers reads (deeper data
// takes the general path).
const maxScanDepth = 32

// scanObjectMembers appends the members of the JSON object data (with
// optional surrounding whitespace) to dst. ok is true only if data is valid
// JSON (as encoding/json checks it), nests at most maxScanDepth deep and
// all its keys are plain: printable ASCII without escapes or the characters
// encoding/json escapes (", \, <, >, &), so that a key reads and writes as is.
func scanObjectMembers(data []byte, dst []objMember) (_ []objMember, ok bool) {
	i := jsonscan.SkipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return dst, false
	}
	i = jsonscan.SkipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		i++
	} else {
		for {
			if i >= len(data) || data[i] != '"' {
				return dst, false
			}
			j := i + 1
			for j < len(data) && data[j] != '"' {
				if c := data[j]; c < 0x20 || c > 0x7e || c == '\\' || c == '<' || c == '>' || c == '&' {
					return dst, false
				}
				j++
			}
			if j >= len(data) {
				return dst, false
			}
			key := data[i+1 : j]
			i = jsonscan.SkipSpace(data, j+1)
			if i >= len(data) || data[i] != ':' {
				return dst, false
			}
			i = jsonscan.SkipSpace(data, i+1)
			// The object itself is one level of the depth.
			end, plain := jsonscan.SkipValueCompact(data, i, maxScanDepth-1)
			if end < 0 {
				return dst, false
			}
			dst = append(dst, objMember{key: key, val: data[i:end], plain: plain})
			i = jsonscan.SkipSpace(data, end)
			if i >= len(data) {
				return dst, false
			}
			if data[i] == '}' {
				i++
				break
			}
			if data[i] != ',' {
				return dst, false
			}
			i = jsonscan.SkipSpace(data, i+1)
		}
	}
	return dst, jsonscan.SkipSpace(data, i) == len(data)
}

// sortMembers sorts members by key, as encoding/json orders a map. It
// returns false if a key is repeated.
func sortMembers(members []objMember) bool {
	for i := 1; i < len(members); i++ {
		for j := i; j > 0; j-- {
			c := bytes.Compare(members[j-1].key, members[j].key)
			if c == 0 {
				return false
			}
			if c < 0 {
				break
			}
			members[j-1], members[j] = members[j], members[j-1]
		}
	}
	return true
}

// StatusChange returns the status carried by a meeting.status_changed
// event, parsing its data if needed (events read back from a store).
func (e *Event) StatusChange() (st MeetingStatus, r Reason, meetingNum string, ok bool) {
	if e.Type != TypeMeetingStatusChanged {
		return 0, 0, "", false
	}
	if e.status == nil {
		var d struct {
			Code       int    `json:"status_code"`
			ReasonCode int    `json:"reason_code"`
			MeetingNum string `json:"meeting_num"`
		}
		if json.Unmarshal(e.Data, &d) != nil {
			return 0, 0, "", false
		}
		e.status = &statusData{Status: MeetingStatus(d.Code), Reason: Reason(d.ReasonCode), MeetingNum: d.MeetingNum}
	}
	return e.status.Status, e.status.Reason, e.status.MeetingNum, true
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// appendFrom adds the previous status ("from") to normalised status data.
func appendFrom(data json.RawMessage, from MeetingStatus) json.RawMessage {
	d := bytes.TrimRight(data, " \n\t")
	if len(d) == 0 || d[len(d)-1] != '}' {
		return data
	}
	out := make([]byte, 0, len(d)+48)
	out = append(out, d[:len(d)-1]...)
	if len(d) > 2 {
		out = append(out, ',')
	}
	out = append(out, `"from":"`...)
	out = append(out, from.Name()...)
	out = append(out, `","from_code":`...)
	out = strconv.AppendInt(out, int64(from), 10)
	out = append(out, '}')
	return out
}

// TypeFilter matches event types against a list of exact names and
// "prefix.*" patterns. An empty filter matches everything.
type TypeFilter []string

// ParseTypeFilter validates a list of type patterns.
func ParseTypeFilter(patterns []string, field string) (TypeFilter, error) {
	var f TypeFilter
	for _, p := range patterns {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if p == "*" {
			return nil, nil
		}
		name := strings.TrimSuffix(p, ".*")
		if err := checkTypeName(name, field); err != nil {
			return nil, err
		}
		f = append(f, p)
	}
	return f, nil
}

// Match reports whether typ matches the filter.
func (f TypeFilter) Match(typ string) bool {
	if len(f) == 0 {
		return true
	}
	for _, p := range f {
		if prefix, ok := strings.CutSuffix(p, ".*"); ok {
			if len(typ) > len(prefix) && typ[len(prefix)] == '.' && strings.HasPrefix(typ, prefix) {
				return true
			}
		} else if p == typ {
			return true
		}
	}
	return false
}

// eventJSON is the public JSON form of an event, shared by the feed, the
// stream and (inside the webhook body) deliveries.
type eventJSON struct {
	ID         string          `json:"id"`
	Type       string          `json:"type"`
	UserID     string          `json:"user_id"`
	Seq        int64           `json:"seq"`
	OccurredAt time.Time       `json:"occurred_at"`
	ReceivedAt time.Time       `json:"received_at"`
	Source     string          `json:"source"`
	DeviceID   string          `json:"device_id,omitempty"`
	ClientSeq  int64           `json:"client_seq,omitempty"`
	Stale      bool            `json:"stale"`
	Data       json.RawMessage `json:"data"`
	// SchemaVersion is omitted for built-in and unregistered types.
	SchemaVersion int    `json:"schema_version,omitempty"`
	Cursor        string `json:"cursor,omitempty"`
}

// MarshalJSON renders the public form of an event.
func (e *Event) MarshalJSON() ([]byte, error) {
	j := eventJSON{ID: e.ID, Type: e.Type, UserID: e.UserID, Seq: e.Seq, OccurredAt: e.OccurredAt, ReceivedAt: e.ReceivedAt,
		Source: e.Source, DeviceID: e.DeviceID, ClientSeq: e.ClientSeq, Stale: e.Stale, Data: e.Data, SchemaVersion: e.SchemaVersion}
	if e.Pos > 0 {
		j.Cursor = FormatCursor(e.Pos)
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads the public form of an event (used by clients).
func (e *Event) UnmarshalJSON(b []byte) error {
	var j eventJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*e = Event{ID: j.ID, Type: j.Type, UserID: j.UserID, Seq: j.Seq, OccurredAt: j.OccurredAt, ReceivedAt: j.ReceivedAt,
		Source: j.Source, DeviceID: j.DeviceID, ClientSeq: j.ClientSeq, Stale: j.Stale, Data: j.Data, SchemaVersion: j.SchemaVersion}
	if j.Cursor != "" {
		pos, err := ParseCursor(j.Cursor, "cursor")
		if err != nil {
			return err
		}
		e.Pos = pos
	}
	return nil
}

// FormatCursor renders a feed position as the API's opaque cursor.
func FormatCursor(pos int64) string { return strconv.FormatInt(pos, 10) }

// ParseCursor parses a cursor given by a client. "" and "0" are the
// beginning of the feed.
func ParseCursor(s, field string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, FieldErrorf(field, "invalid cursor %q: use a cursor returned by meetsync (or 0 for the beginning)", shorten(json.RawMessage(s)))
	}
	return n, nil
}
