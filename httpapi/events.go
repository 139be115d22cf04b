package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/internal/jsonscan"
	"github.com/meetsync/meetsync/session"
)

// ingestBody is the top level of POST /v1/events: one event, or {"events":[…]}.
type ingestBody struct {
	meetsync.EventInput
	Events []json.RawMessage `json:"events"`
}

// ingestBatch is ingestBody with the events decoded in the same pass.
type ingestBatch struct {
	meetsync.EventInput
	Events []meetsync.EventInput `json:"events"`
}

// ParseIngestBody parses the body of POST /v1/events into event inputs.
// batch is true for the {"events":[…]} form. Errors are EINVALID and name
// the field (events[3].client_seq); a batch over the limit is EINVALID on "events".
//
// The usual bodies are read by hand (readIngestBody); the others are
// decoded by encoding/json, the whole body at once, and only a body that
// fails that (or might repeat "events") is decoded event by event, which
// names the failing field. All three give the same result.
func ParseIngestBody(body []byte) (inputs []*meetsync.EventInput, batch bool, err error) {
	if events, batch, ok := readIngestBody(body); ok {
		if batch {
			if err := checkBatchEnvelope(&meetsync.EventInput{}, len(events)); err != nil {
				return nil, true, err
			}
		}
		inputs = make([]*meetsync.EventInput, len(events))
		for i := range events {
			inputs[i] = &events[i]
		}
		return inputs, batch, nil
	}
	return parseIngestBodyJSON(body)
}

// parseIngestBodyJSON is ParseIngestBody through encoding/json.
func parseIngestBodyJSON(body []byte) (inputs []*meetsync.EventInput, batch bool, err error) {
	// Decode the whole body in one pass. That gives the same inputs as
	// parseIngestBodyEach when it succeeds, unless "events" is repeated (a
	// repeated array is decoded over the previous one's elements): a body
	// that fails, or might repeat "events", takes parseIngestBodyEach,
	// which also words the errors (events[3].client_seq).
	var b ingestBatch
	if strictUnmarshal(body, &b) != nil || (b.Events != nil && !singleEventsKey(body)) {
		return parseIngestBodyEach(body)
	}
	if b.Events == nil {
		in := b.EventInput
		return []*meetsync.EventInput{&in}, false, nil
	}
	if err := checkBatchEnvelope(&b.EventInput, len(b.Events)); err != nil {
		return nil, true, err
	}
	inputs = make([]*meetsync.EventInput, len(b.Events))
	for i := range b.Events {
		inputs[i] = &b.Events[i]
	}
	return inputs, true, nil
}

// readIngestBody reads a body of the usual shape without reflection: one
// event object, or {"events":[objects]} alone, where every object has only
// EventInput's keys in their exact spelling, each once; the strings (or
// null) hold no escapes, control characters or invalid UTF-8; client_seq (or
// null) is an integer of at most 18 digits; and data is any JSON value
// nesting at most maxReadDepth deep with its event object. ok is false for
// any other body (every invalid one among them), which the caller decodes
// with encoding/json: that gives the same inputs for every body read here.
func readIngestBody(body []byte) (events []meetsync.EventInput, batch, ok bool) {
	r := ingestReader{b: body}
	r.ws()
	if r.i >= len(body) || body[r.i] != '{' {
		return nil, false, false
	}
	if k := jsonscan.SkipSpace(body, r.i+1); len(body)-k > 8 && string(body[k:k+8]) == `"events"` {
		// {"events":[…]} and nothing else.
		r.i = jsonscan.SkipSpace(body, k+8)
		if !r.byte(':') {
			return nil, false, false
		}
		r.ws()
		if !r.byte('[') {
			return nil, false, false
		}
		events = make([]meetsync.EventInput, 0, min(len(body)/128+1, meetsync.MaxBatchEvents+1))
		r.ws()
		for {
			events = append(events, meetsync.EventInput{})
			if !r.event(&events[len(events)-1]) {
				return nil, false, false
			}
			r.ws()
			if r.byte(']') {
				break
			}
			if !r.byte(',') {
				return nil, false, false
			}
			r.ws()
		}
		r.ws()
		if !r.byte('}') {
			return nil, false, false
		}
		batch = true
	} else {
		events = make([]meetsync.EventInput, 1)
		if !r.event(&events[0]) {
			return nil, false, false
		}
	}
	r.ws()
	if r.i != len(body) {
		return nil, false, false
	}
	return events, batch, true
}

// ingestReader reads an ingest body for readIngestBody.
type ingestReader struct {
	b []byte
	i int
	// Successive events mostly share these: they are allocated once.
	prevUser, prevDevice string
	seqs                 []int64 // client_seq values, allocated in blocks
	data                 []byte  // data values, allocated at once
}

// builtinTypeNames holds the names of the built-in types, to reuse.
var builtinTypeNames = func() map[string]string {
	m := map[string]string{}
	for _, t := range meetsync.BuiltinTypes {
		m[t.Name] = t.Name
	}
	return m
}()

func (r *ingestReader) ws() { r.i = jsonscan.SkipSpace(r.b, r.i) }

// byte consumes c if it is next.
func (r *ingestReader) byte(c byte) bool {
	if r.i < len(r.b) && r.b[r.i] == c {
		r.i++
		return true
	}
	return false
}

// event reads one event object into in, which is zero.
func (r *ingestReader) event(in *meetsync.EventInput) bool {
	if !r.byte('{') {
		return false
	}
	r.ws()
	if r.byte('}') {
		return true
	}
	var seen uint
	for {
		key, ok := r.plainString()
		if !ok || key == nil {
			return false
		}
		r.ws()
		if !r.byte(':') {
			return false
		}
		r.ws()
		var bit uint
		switch string(key) {
		case "id":
			bit, ok = 1, r.stringField(&in.ID, nil)
		case "type":
			bit = 2
			var v []byte
			if v, ok = r.plainString(); ok && v != nil {
				if name, builtin := builtinTypeNames[string(v)]; builtin {
					in.Type = name
				} else {
					in.Type = string(v)
				}
			}
		case "user_id":
			bit, ok = 4, r.stringField(&in.UserID, &r.prevUser)
		case "device_id":
			bit, ok = 8, r.stringField(&in.DeviceID, &r.prevDevice)
		case "occurred_at":
			bit, ok = 16, r.stringField(&in.OccurredAt, nil)
		case "client_seq":
			bit, ok = 32, r.clientSeq(in)
		case "data":
			bit, ok = 64, r.dataField(in)
		default:
			return false
		}
		if !ok || seen&bit != 0 {
			return false
		}
		seen |= bit
		r.ws()
		if r.byte('}') {
			return true
		}
		if !r.byte(',') {
			return false
		}
		r.ws()
	}
}

// stringField reads a string field (see plainString) into *dst; null
// leaves *dst as it is. last, if not nil, holds the field's value in an
// earlier event: an equal value shares its string instead of allocating one.
func (r *ingestReader) stringField(dst, last *string) bool {
	v, ok := r.plainString()
	switch {
	case !ok:
		return false
	case v == nil:
	case last == nil:
		*dst = string(v)
	default:
		if string(v) != *last {
			*last = string(v)
		}
		*dst = *last
	}
	return true
}

// dataField reads data, any JSON value, into in.Data.
func (r *ingestReader) dataField(in *meetsync.EventInput) bool {
	start := r.i
	// The event object is one level of the depth.
	if r.i = jsonscan.SkipValue(r.b, r.i, maxReadDepth-1); r.i < 0 {
		return false
	}
	if r.data == nil {
		r.data = make([]byte, 0, len(r.b))
	}
	n := len(r.data)
	r.data = append(r.data, r.b[start:r.i]...)
	in.Data = r.data[n:len(r.data):len(r.data)]
	return true
}

// plainString reads a string literal holding no escapes, control
// characters or invalid UTF-8 (encoding/json decodes it as is), and
// returns its content. null reads as a nil content.
func (r *ingestReader) plainString() (_ []byte, ok bool) {
	b := r.b
	if r.i < len(b) && b[r.i] == 'n' {
		if r.i = jsonscan.SkipLiteral(b, r.i, "null"); r.i < 0 {
			return nil, false
		}
		return nil, true
	}
	if r.i >= len(b) || b[r.i] != '"' {
		return nil, false
	}
	start, ascii := r.i+1, true
	for j := start; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			s := b[start:j:j]
			if !ascii && !utf8.Valid(s) {
				return nil, false
			}
			r.i = j + 1
			return s, true
		case c < 0x20 || c == '\\':
			return nil, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, false
}

// clientSeq reads client_seq: null, or an integer of at most 18 digits
// (anything else takes encoding/json's path).
func (r *ingestReader) clientSeq(in *meetsync.EventInput) bool {
	b := r.b
	if r.i < len(b) && b[r.i] == 'n' {
		r.i = jsonscan.SkipLiteral(b, r.i, "null")
		return r.i >= 0
	}
	j := r.i
	if j < len(b) && b[j] == '-' {
		j++
	}
	digits := j
	for j < len(b) && jsonscan.IsDigit(b[j]) {
		j++
	}
	n := j - digits
	if n == 0 || n > 18 || (b[digits] == '0' && n > 1) {
		return false
	}
	if j < len(b) && (b[j] == '.' || b[j] == 'e' || b[j] == 'E') {
		return false
	}
	var v int64
	for _, c := range b[digits:j] {
		v = v*10 + int64(c-'0')
	}
	if digits > r.i {
		v = -v
	}
	if len(r.seqs) == cap(r.seqs) {
		r.seqs = make([]int64, 0, 64)
	}
	r.seqs = append(r.seqs, v)
	in.ClientSeq = &r.seqs[len(r.seqs)-1]
	r.i = j
	return true
}

// maxReadDepth bounds the nesting of data that readIngestBody reads,
// counting the event object that holds it: data itself nests at most
// maxReadDepth-1 deep.
const maxReadDepth = 64

// parseIngestBodyEach is ParseIngestBody decoding the top level, then each event.
func parseIngestBodyEach(body []byte) (inputs []*meetsync.EventInput, batch bool, err error) {
	var b ingestBody
	if err := strictUnmarshal(body, &b); err != nil {
		return nil, false, jsonError(err, "")
	}
	if b.Events == nil {
		in := b.EventInput
		return []*meetsync.EventInput{&in}, false, nil
	}
	if err := checkBatchEnvelope(&b.EventInput, len(b.Events)); err != nil {
		return nil, true, err
	}
	inputs = make([]*meetsync.EventInput, len(b.Events))
	for i, raw := range b.Events {
		in := new(meetsync.EventInput)
		if err := strictUnmarshal(raw, in); err != nil {
			return nil, true, jsonError(err, fmt.Sprintf("events[%d]", i))
		}
		inputs[i] = in
	}
	return inputs, true, nil
}

// checkBatchEnvelope checks the top level of a batch body holding n events.
func checkBatchEnvelope(b *meetsync.EventInput, n int) error {
	if b.Type != "" || b.UserID != "" || b.ID != "" || b.DeviceID != "" || b.ClientSeq != nil || b.OccurredAt != "" || b.Data != nil {
		return meetsync.FieldErrorf("events", `a batch body holds only "events": put every field inside the events`)
	}
	if n == 0 {
		return meetsync.FieldErrorf("events", "events is empty")
	}
	if n > meetsync.MaxBatchEvents {
		return meetsync.FieldErrorf("events", "a batch holds at most %d events, this one has %d", meetsync.MaxBatchEvents, n)
	}
	return nil
}

// singleEventsKey reports whether the top-level object of body (valid
// JSON) has at most one key that encoding/json could match to the
// "events" field. Keys with escapes or non-ASCII bytes (which could fold to
// "events") count as such a key.
func singleEventsKey(body []byte) bool {
	depth, n := 0, 0
	key := false // the next string at depth 1 is a key
	for i := 0; i < len(body); i++ {
		switch c := body[i]; c {
		case '"':
			j, plain := i+1, true
			for ; j < len(body) && body[j] != '"'; j++ {
				if body[j] == '\\' {
					j++
					plain = false
				} else if body[j] >= utf8.RuneSelf {
					plain = false
				}
			}
			if depth == 1 && key {
				if k := body[i+1 : min(j, len(body))]; !plain || isEventsKey(k) {
					if n++; n > 1 {
						return false
					}
				}
				key = false
			}
			i = j
		case '{', '[':
			depth++
			key = depth == 1
		case '}', ']':
			depth--
		case ',':
			key = depth == 1
		}
	}
	return true
}

// isEventsKey reports whether the ASCII key k is "events" in any case.
func isEventsKey(k []byte) bool {
	const name = "events"
	if len(k) != len(name) {
		return false
	}
	for i := range k {
		if k[i]|0x20 != name[i] {
			return false
		}
	}
	return true
}

func strictUnmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return asUnknownField(err, b, reflect.TypeOf(v))
	}
	if dec.More() {
		return errTrailing
	}
	if _, err := dec.Token(); err != io.EOF {
		return errTrailing
	}
	return nil
}

var errTrailing = errors.New("trailing data after the JSON value")

// jsonError turns a decoding error into an EINVALID error naming the field.
func jsonError(err error, prefix string) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var maxErr *http.MaxBytesError
	var unknown *unknownFieldError
	join := func(f string) string {
		switch {
		case prefix == "":
			return f
		case f == "":
			return prefix
		case f[0] == '[':
			return prefix + f
		}
		return prefix + "." + f
	}
	switch {
	case errors.As(err, &maxErr):
		return meetsync.Errorf(meetsync.ETOOLARGE, "request body is larger than %d bytes", maxErr.Limit)
	case errors.Is(err, io.EOF):
		return meetsync.FieldErrorf(prefix, "the body is empty: send a JSON object")
	case errors.As(err, &syn), errors.Is(err, io.ErrUnexpectedEOF):
		return meetsync.FieldErrorf(prefix, "malformed JSON: %v", err)
	case errors.As(err, &typ):
		want := typ.Type.String()
		switch kind := typ.Type.Kind().String(); {
		case typ.Type == reflect.TypeFor[meetsync.Duration]():
			want = `a duration such as "30s", "5m" or "24h" (not negative)`
		case kind == "int64", kind == "int", kind == "int32":
			want = "an integer"
		case kind == "string":
			want = "a string"
		case kind == "struct", kind == "map":
			want = "an object"
		case kind == "slice":
			want = "an array"
		}
		// A field of the single-event form is reported through the
		// embedded struct ("EventInput.client_seq"): name it as sent.
		field := strings.TrimPrefix(typ.Field, "EventInput.")
		f := join(field)
		if field == "" {
			return meetsync.FieldErrorf(prefix, "expected a JSON object, got %s", typ.Value)
		}
		return meetsync.FieldErrorf(f, "%s must be %s, got %s", lastPart(f), want, typ.Value)
	case errors.Is(err, errTrailing):
		return meetsync.FieldErrorf(prefix, "unexpected data after the JSON value")
	case errors.As(err, &unknown):
		// Named by its whole path: "unknown field provider.bogus",
		// "unknown field events[2].bogus".
		f := join(unknown.Path)
		if q := strconv.Quote(f); q[1:len(q)-1] != f || f == "" || strings.ContainsRune(f, ' ') {
			return meetsync.FieldErrorf(f, "unknown field %s", q)
		}
		return meetsync.FieldErrorf(f, "unknown field %s", f)
	}
	return meetsync.FieldErrorf(prefix, "invalid JSON: %v", err)
}

func lastPart(f string) string {
	if i := strings.LastIndexByte(f, '.'); i >= 0 {
		return f[i+1:]
	}
	return f
}

func (s *Server) handleIngest(w http.ResponseWriter, r *http.Request) {
	p := principalOf(r.Context())
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, meetsync.MaxBodyBytes))
	if err != nil {
		s.writeError(w, r, jsonError(err, ""))
		return
	}
	req, err := s.prepareAppend(p.AppID, body, r.Header.Get("Idempotency-Key"), "")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.ingest.Append(r.Context(), req); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeIngestResponse(w, req.Results)
}

// writeIngestResponse writes {"events":[…]} with the results of an append:
// what writeJSON(w, http.StatusOK, map[string]any{"events": results})
// writes, encoded by hand.
func writeIngestResponse(w http.ResponseWriter, results []meetsync.EventResult) {
	n := 16 // {"events":[]} and a newline
	for _, r := range results {
		n += len(r.ID) + 70 // the rest of a result, at most 69 bytes with its comma
	}
	b := appendIngestResponse(make([]byte, 0, n), results)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(append(b, '\n'))
}

// appendIngestResponse appends the JSON of {"events": results} as
// encoding/json writes it.
func appendIngestResponse(b []byte, results []meetsync.EventResult) []byte {
	if results == nil {
		return append(b, `{"events":null}`...)
	}
	b = append(b, `{"events":[`...)
	for i, r := range results {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"id":`...)
		b = jsonscan.AppendString(b, r.ID)
		b = append(b, `,"seq":`...)
		b = strconv.AppendInt(b, r.Seq, 10)
		b = append(b, `,"duplicate":`...)
		b = strconv.AppendBool(b, r.Duplicate)
		b = append(b, `,"stale":`...)
		b = strconv.AppendBool(b, r.Stale)
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

// prepareClientAppend is prepareAppend for a client token: every event is
// the token's user's and device's.
func (s *Server) prepareClientAppend(c session.ClientAuth, body []byte, idemKey string) (*meetsync.AppendRequest, error) {
	return s.prepareAppendAs(c.AppID, body, idemKey, "client\x00"+c.UserID+"\x00"+c.DeviceID, c.UserID, c.DeviceID)
}

// prepareAppend validates an ingest body into an AppendRequest. principal
// distinguishes callers sharing an Idempotency-Key namespace.
func (s *Server) prepareAppend(appID string, body []byte, idemKey, principal string) (*meetsync.AppendRequest, error) {
	return s.prepareAppendAs(appID, body, idemKey, principal, "", "")
}

func (s *Server) prepareAppendAs(appID string, body []byte, idemKey, principal, forceUser, forceDevice string) (*meetsync.AppendRequest, error) {
	inputs, batch, err := ParseIngestBody(body)
	if err != nil {
		return nil, err
	}
	now := s.now().UTC()
	req := &meetsync.AppendRequest{AppID: appID, Events: make([]*meetsync.Event, len(inputs))}
	for i, in := range inputs {
		field := ""
		if batch {
			field = "events[" + strconv.Itoa(i) + "]"
		}
		source := meetsync.SourceBusiness
		if in.DeviceID != "" || forceDevice != "" {
			source = meetsync.SourceClient
		}
		ev, err := meetsync.PrepareEvent(in, meetsync.PrepareParams{
			AppID: appID, Source: source, ReceivedAt: now, Field: field, Types: s.cfg.Types,
			ForceUserID: forceUser, ForceDeviceID: forceDevice,
			NewID: func() string { return meetsync.NewID("evt") },
		})
		if err != nil {
			return nil, err
		}
		req.Events[i] = ev
	}
	if idemKey != "" {
		if len(idemKey) > 255 {
			return nil, meetsync.FieldErrorf("Idempotency-Key", "Idempotency-Key is longer than 255 characters")
		}
		h := sha256.New()
		h.Write([]byte(principal))
		h.Write([]byte{0})
		h.Write(body)
		req.IdempotencyKey, req.RequestHash = idemKey, h.Sum(nil)
	}
	return req, nil
}

const (
	defaultLimit = 100
	maxLimit     = 1000
)

func parseLimit(q string) (int, error) {
	if q == "" {
		return defaultLimit, nil
	}
	n, err := strconv.Atoi(q)
	if err != nil || n < 1 || n > maxLimit {
		return 0, meetsync.FieldErrorf("limit", "limit must be an integer from 1 to %d", maxLimit)
	}
	return n, nil
}

// feedParams reads the filters shared by the feed and the stream.
func feedParams(r *http.Request, appID string) (meetsync.EventListParams, error) {
	q := r.URL.Query()
	p := meetsync.EventListParams{AppID: appID, UserID: q.Get("user_id")}
	var err error
	if p.After, err = meetsync.ParseCursor(q.Get("after"), "after"); err != nil {
		return p, err
	}
	if p.Limit, err = parseLimit(q.Get("limit")); err != nil {
		return p, err
	}
	var types []string
	for _, t := range q["type"] {
		types = append(types, strings.Split(t, ",")...)
	}
	if p.Types, err = meetsync.ParseTypeFilter(types, "type"); err != nil {
		return p, err
	}
	return p, nil
}

func (s *Server) handleEventList(w http.ResponseWriter, r *http.Request) {
	p, err := feedParams(r, principalOf(r.Context()).AppID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	events, err := s.store.EventList(r.Context(), p)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	next := p.After
	if len(events) > 0 {
		next = events[len(events)-1].Pos
	} else {
		events = []*meetsync.Event{} // an empty page is [], as the OpenAPI document says
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": events, "next": meetsync.FormatCursor(next)})
}

// startSSE sends the headers of a Server-Sent Events stream, the retry
// delay and preamble, and flushes them.
func startSSE(w http.ResponseWriter, preamble string) (*http.ResponseController, error) {
	rc := http.NewResponseController(w)
	if sw, ok := w.(*statusWriter); ok {
		sw.stream = true
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if _, err := io.WriteString(w, "retry: 1000\n"+preamble+"\n"); err != nil {
		return nil, err
	}
	_ = rc.Flush()
	return rc, nil
}

// keepAlive writes an SSE comment so proxies and clients see the stream alive.
func keepAlive(w io.Writer, rc *http.ResponseController) error {
	if _, err := io.WriteString(w, ": keep-alive\n\n"); err != nil {
		return err
	}
	return rc.Flush()
}

// handleEventStream serves the feed as Server-Sent Events. Each event's SSE
// id is its cursor; a client that reconnects with Last-Event-ID resumes
// right after it. Without a cursor the stream starts at the current end.
// It takes the feed's filters but not its limit, which it refuses rather
// than ignores: the stream sends every event. While the store is
// unavailable (the database out of reach) an open stream stays open: it
// keeps its heartbeats, reads again with growing pauses and goes on from
// its cursor once the store is back; any other store error ends it.
func (s *Server) handleEventStream(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if r.URL.Query().Has("limit") {
		s.writeError(w, r, meetsync.FieldErrorf("limit", "the stream takes no limit: it sends every event after the cursor as it commits (GET /v1/events pages the feed with limit)"))
		return
	}
	p, err := feedParams(r, principalOf(ctx).AppID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if last := r.Header.Get("Last-Event-ID"); last != "" {
		if p.After, err = meetsync.ParseCursor(last, "Last-Event-ID"); err != nil {
			s.writeError(w, r, err)
			return
		}
	} else if !r.URL.Query().Has("after") {
		if p.After, err = s.store.EventFeedHead(ctx, p.AppID); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	p.Limit = 500 // the size of each read, not of the stream
	// Tell the client where the stream starts: an id with no data sets its
	// Last-Event-ID, so a reconnect before the first event misses nothing.
	rc, err := startSSE(w, "id: "+meetsync.FormatCursor(p.After)+"\n")
	if err != nil {
		return
	}
	heartbeat := time.NewTicker(s.cfg.StreamHeartbeat)
	defer heartbeat.Stop()
	var buf bytes.Buffer
	var retry time.Duration // the pause before the next read while the store is unavailable; 0: it is not
	for {
		changed := s.ingest.Changes()
		events, err := s.store.EventList(ctx, p)
		if err != nil {
			if !s.streamReadFailed(r, w, rc, heartbeat.C, changed, &retry, "stream: list events", err) {
				return
			}
			continue // from the same cursor
		}
		retry = 0
		if len(events) > 0 {
			buf.Reset()
			for _, e := range events {
				b, err := json.Marshal(e)
				if err != nil {
					s.log.Error("stream: encode event", "err", err)
					return
				}
				buf.WriteString("id: ")
				buf.WriteString(meetsync.FormatCursor(e.Pos))
				buf.WriteString("\ndata: ")
				buf.Write(b)
				buf.WriteString("\n\n")
				p.After = e.Pos
			}
			if _, err := w.Write(buf.Bytes()); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
			if len(events) == p.Limit {
				continue
			}
		}
		select {
		case <-changed:
		case <-heartbeat.C:
			if keepAlive(w, rc) != nil {
				return
			}
		case <-ctx.Done():
			return
		case <-s.closing:
			return
		}
	}
}

// The pauses of a stream between reads while the store is unavailable:
// from streamRetryMin, doubling, up to streamRetryMax (or the heartbeat
// interval, when that is shorter).
const (
	streamRetryMin = 100 * time.Millisecond
	streamRetryMax = 2 * time.Second
)

// streamRetryDelay returns the pause after prev (0 for the first).
func streamRetryDelay(prev, heartbeat time.Duration) time.Duration {
	limit := min(streamRetryMax, heartbeat)
	if prev <= 0 {
		return min(streamRetryMin, limit)
	}
	return min(2*prev, limit)
}

// streamReadFailed handles a stream's read of the store that failed with
// err, and reports whether the stream reads again. While the store is out
// of reach (EUNAVAILABLE: the database down, refusing connections, or not
// answering within the store timeout) the stream stays open: it pauses
// (streamRetryDelay, from *retry, which it updates), sending heartbeats
// meanwhile, and the outage is logged once, as the 503s of other requests
// are. Any other error is logged as what and ends the stream, as does the
// client leaving.
func (s *Server) streamReadFailed(r *http.Request, w io.Writer, rc *http.ResponseController, heartbeat <-chan time.Time, changed <-chan struct{}, retry *time.Duration, what string, err error) bool {
	ctx := r.Context()
	if ctx.Err() != nil {
		return false
	}
	if meetsync.ErrorCode(err) != meetsync.EUNAVAILABLE {
		s.log.Error(what, "err", err)
		return false
	}
	if *retry == 0 {
		s.logUnavailable(r, err)
	}
	*retry = streamRetryDelay(*retry, s.cfg.StreamHeartbeat)
	return s.streamPause(ctx, w, rc, heartbeat, changed, *retry)
}

// streamPause waits d before a stream reads the store again, sending a
// heartbeat at each tick meanwhile; a commit (changed: the store is back)
// ends the pause early. It returns false when the stream should end: the
// client left, the server is shutting down, or a heartbeat failed.
func (s *Server) streamPause(ctx context.Context, w io.Writer, rc *http.ResponseController, heartbeat <-chan time.Time, changed <-chan struct{}, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case <-timer.C:
			return true
		case <-changed:
			return true
		case <-heartbeat:
			if keepAlive(w, rc) != nil {
				return false
			}
		case <-ctx.Done():
			return false
		case <-s.closing:
			return false
		}
	}
}
