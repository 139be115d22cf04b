package httpapi

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/meetsync/meetsync"
)

// ingestBody is the top level of POST /v1/events: one event, or {"events":[…]}.
type ingestBody struct {
	meetsync.EventInput
	Events []json.RawMessage `json:"events"`
}

// ParseIngestBody parses the body of POST /v1/events into event inputs.
// batch is true for the {"events":[…]} form. Errors are EINVALID and name
// the field (events[3].client_seq); a batch over the limit is EINVALID on "events".
func ParseIngestBody(body []byte) (inputs []*meetsync.EventInput, batch bool, err error) {
	var b ingestBody
	if err := strictUnmarshal(body, &b); err != nil {
		return nil, false, jsonError(err, "")
	}
	if b.Events == nil {
		in := b.EventInput
		return []*meetsync.EventInput{&in}, false, nil
	}
	if b.Type != "" || b.UserID != "" || b.ID != "" || b.DeviceID != "" || b.ClientSeq != nil || b.OccurredAt != "" || b.Data != nil {
		return nil, true, meetsync.FieldErrorf("events", `a batch body holds only "events": put every field inside the events`)
	}
	if len(b.Events) == 0 {
		return nil, true, meetsync.FieldErrorf("events", "events is empty")
	}
	if len(b.Events) > meetsync.MaxBatchEvents {
		return nil, true, meetsync.FieldErrorf("events", "a batch holds at most %d events, this one has %d", meetsync.MaxBatchEvents, len(b.Events))
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

func strictUnmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
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
	join := func(f string) string {
		switch {
		case prefix == "":
			return f
		case f == "":
			return prefix
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
		switch typ.Type.Kind().String() {
		case "int64", "int", "int32":
			want = "an integer"
		case "string":
			want = "a string"
		case "struct", "map":
			want = "an object"
		case "slice":
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
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name = strings.Trim(name, `"`)
		return meetsync.FieldErrorf(join(name), "unknown field %q", name)
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
	writeJSON(w, http.StatusOK, map[string]any{"events": req.Results})
}

// prepareAppend validates an ingest body into an AppendRequest. principal
// distinguishes callers sharing an Idempotency-Key namespace.
func (s *Server) prepareAppend(appID string, body []byte, idemKey, principal string) (*meetsync.AppendRequest, error) {
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
		if in.DeviceID != "" {
			source = meetsync.SourceClient
		}
		ev, err := meetsync.PrepareEvent(in, meetsync.PrepareParams{
			AppID: appID, Source: source, ReceivedAt: now, Field: field, Types: s.cfg.Types,
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
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": events, "next": meetsync.FormatCursor(next)})
}

// handleEventStream serves the feed as Server-Sent Events. Each event's SSE
// id is its cursor; a client that reconnects with Last-Event-ID resumes
// right after it. Without a cursor the stream starts at the current end.
func (s *Server) handleEventStream(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
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
	p.Limit = 500
	rc := http.NewResponseController(w)
	if sw, ok := w.(*statusWriter); ok {
		sw.stream = true
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// Tell the client how long to wait before reconnecting, then flush the headers.
	if _, err := io.WriteString(w, "retry: 1000\n\n"); err != nil {
		return
	}
	_ = rc.Flush()
	heartbeat := time.NewTicker(s.cfg.StreamHeartbeat)
	defer heartbeat.Stop()
	var buf bytes.Buffer
	for {
		changed := s.ingest.Changes()
		events, err := s.store.EventList(ctx, p)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Error("stream: list events", "err", err)
			}
			return
		}
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
			if _, err := io.WriteString(w, ": keep-alive\n\n"); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
		case <-ctx.Done():
			return
		case <-s.closing:
			return
		}
	}
}
