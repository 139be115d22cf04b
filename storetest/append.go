package storetest

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/meetsync/meetsync"
)

// testSecretKeyCheck: a store has no check value until one is stored, then
// keeps the first one stored, durably: a later init returns it unchanged.
func testSecretKeyCheck(t *testing.T, su *suite) {
	e := su.setup(t)
	if v, err := e.s.SecretKeyCheck(e.ctx); err != nil || v != "" {
		t.Fatalf("SecretKeyCheck of a new store = %q, %v; want none", v, err)
	}
	if v, err := e.s.SecretKeyCheckInit(e.ctx, "enc:v1:first"); err != nil || v != "enc:v1:first" {
		t.Fatalf("SecretKeyCheckInit(first) = %q, %v", v, err)
	}
	if v, err := e.s.SecretKeyCheckInit(e.ctx, "enc:v1:second"); err != nil || v != "enc:v1:first" {
		t.Errorf("SecretKeyCheckInit(second) = %q, %v; want the first kept", v, err)
	}
	if v, err := e.s.SecretKeyCheck(e.ctx); err != nil || v != "enc:v1:first" {
		t.Errorf("SecretKeyCheck = %q, %v; want the first", v, err)
	}
}

func testApps(t *testing.T, su *suite) {
	e := su.setup(t)
	first, err := e.s.AppGet(e.ctx, e.app)
	if err != nil {
		t.Fatal(err)
	}
	if first.Name != "app" || !sameTime(first.CreatedAt, t0) {
		t.Errorf("AppGet: %+v", first)
	}
	e.tick(time.Second)
	b := e.newApp("b")
	e.tick(time.Second)
	a := e.newApp("a")
	got, err := e.s.AppGetByName(e.ctx, "b")
	if err != nil || got.ID != b || got.Name != "b" || !sameTime(got.CreatedAt, t0.Add(time.Second)) {
		t.Errorf("AppGetByName(b) = %+v, %v", got, err)
	}
	list, err := e.s.AppList(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, x := range list {
		ids = append(ids, x.ID)
	}
	if !slices.Equal(ids, []string{e.app, b, a}) {
		t.Errorf("AppList = %v, want oldest first %v", ids, []string{e.app, b, a})
	}

	_, err = e.s.AppGet(e.ctx, "app_missing")
	wantCode(t, "AppGet(unknown)", err, meetsync.ENOTFOUND)
	_, err = e.s.AppGetByName(e.ctx, "missing")
	wantCode(t, "AppGetByName(unknown)", err, meetsync.ENOTFOUND)

	// A taken name: nothing of the app or its key is stored.
	dup := &meetsync.App{ID: meetsync.NewID("app"), Name: "b", CreatedAt: e.now}
	key, _ := meetsync.NewAPIKey(dup.ID, e.now)
	wantCode(t, "AppCreate(taken name)", e.s.AppCreate(e.ctx, dup, key), meetsync.ECONFLICT)
	if _, err := e.s.AppGet(e.ctx, dup.ID); meetsync.ErrorCode(err) != meetsync.ENOTFOUND {
		t.Errorf("the refused app was stored: %v", err)
	}
	if _, err := e.s.APIKeyGetByHash(e.ctx, key.Hash); meetsync.ErrorCode(err) != meetsync.ENOTFOUND {
		t.Errorf("the refused app's key was stored: %v", err)
	}

	// Names are unique regardless of case, Unicode's included.
	for _, name := range []string{"B", "APP", "Ärzte"} {
		if name == "Ärzte" {
			e.newApp("ärzte")
		}
		dup := &meetsync.App{ID: meetsync.NewID("app"), Name: name, CreatedAt: e.now}
		key, _ := meetsync.NewAPIKey(dup.ID, e.now)
		wantCode(t, "AppCreate("+name+")", e.s.AppCreate(e.ctx, dup, key), meetsync.ECONFLICT)
	}
}

func testAPIKeys(t *testing.T, su *suite) {
	e := su.setup(t)
	app := &meetsync.App{ID: meetsync.NewID("app"), Name: "keys", CreatedAt: e.now}
	k1, _ := meetsync.NewAPIKey(app.ID, e.now)
	if err := e.s.AppCreate(e.ctx, app, k1); err != nil {
		t.Fatal(err)
	}
	k2, _ := meetsync.NewAPIKey(app.ID, e.tick(time.Second))
	if err := e.s.APIKeyCreate(e.ctx, k2); err != nil {
		t.Fatal(err)
	}
	got, err := e.s.APIKeyGetByHash(e.ctx, k2.Hash)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != k2.ID || got.AppID != app.ID || got.Prefix != k2.Prefix || !bytes.Equal(got.Hash, k2.Hash) ||
		!sameTime(got.CreatedAt, k2.CreatedAt) || got.RevokedAt != nil {
		t.Errorf("APIKeyGetByHash = %+v, want %+v", got, k2)
	}
	list, err := e.s.APIKeyList(e.ctx, app.ID)
	if err != nil || len(list) != 2 || list[0].ID != k1.ID || list[1].ID != k2.ID {
		t.Fatalf("APIKeyList = %v, %v; want k1, k2", list, err)
	}
	if other, err := e.s.APIKeyList(e.ctx, e.app); err != nil || len(other) != 1 {
		t.Errorf("APIKeyList(other app) = %v, %v; want its one key", other, err)
	}

	at1, at2 := e.tick(time.Second), e.tick(time.Second)
	if err := e.s.APIKeyRevoke(e.ctx, app.ID, k1.ID, at1); err != nil {
		t.Fatal(err)
	}
	if err := e.s.APIKeyRevoke(e.ctx, app.ID, k1.ID, at2); err != nil {
		t.Fatalf("revoking twice: %v", err)
	}
	got, err = e.s.APIKeyGetByHash(e.ctx, k1.Hash)
	if err != nil || got.RevokedAt == nil || !got.RevokedAt.Equal(at1) {
		t.Errorf("revoked key = %+v, %v; want revoked at %v (the first revocation)", got, err, at1)
	}
	wantCode(t, "APIKeyRevoke(unknown key)", e.s.APIKeyRevoke(e.ctx, app.ID, "key_missing", at1), meetsync.ENOTFOUND)
	wantCode(t, "APIKeyRevoke(another app's key)", e.s.APIKeyRevoke(e.ctx, e.app, k2.ID, at1), meetsync.ENOTFOUND)
	k3, _ := meetsync.NewAPIKey("app_missing", e.now)
	wantCode(t, "APIKeyCreate(unknown app)", e.s.APIKeyCreate(e.ctx, k3), meetsync.ENOTFOUND)
	_, err = e.s.APIKeyGetByHash(e.ctx, meetsync.HashSecret("msk_nothing"))
	wantCode(t, "APIKeyGetByHash(unknown)", err, meetsync.ENOTFOUND)
}

func testAppendSeqAndState(t *testing.T, su *suite) {
	e := su.setup(t)
	_, err := e.s.UserGet(e.ctx, e.app, "u1")
	wantCode(t, "UserGet before any event", err, meetsync.ENOTFOUND)

	r1 := req(e.note("u1"), e.note("u2"), e.status("u1", "d1", 1, "in_meeting"), e.note("u2"))
	r2 := req(e.note("u1"))
	e.append(r1, r2)
	seqs := func(rs []meetsync.EventResult) (out []int64) {
		for _, r := range rs {
			out = append(out, r.Seq)
		}
		return out
	}
	if got := seqs(r1.Results); !slices.Equal(got, []int64{1, 1, 2, 2}) {
		t.Errorf("seqs of the first request = %v, want [1 1 2 2] (per user, gap-free)", got)
	}
	if got := seqs(r2.Results); !slices.Equal(got, []int64{3}) {
		t.Errorf("seq of the second request = %v, want [3]", got)
	}
	var pos []int64
	for _, r := range append(r1.Results, r2.Results...) {
		if r.Duplicate || r.Stale || r.ID == "" {
			t.Errorf("result %+v: want a new, fresh event", r)
		}
		pos = append(pos, r.Pos)
	}
	if !slices.IsSorted(pos) || len(slices.Compact(slices.Clone(pos))) != len(pos) {
		t.Errorf("feed positions %v: want increasing in request order", pos)
	}
	e.tick(time.Second)
	if rs := e.appendOne(e.note("u1"), e.note("u2")); rs[0].Seq != 4 || rs[1].Seq != 3 || rs[0].Pos <= pos[len(pos)-1] {
		t.Errorf("a later transaction: %s; want seqs 4 and 3 after the earlier positions", fmtResults(rs))
	}

	u := e.user("u1")
	if u.LastSeq != 4 || u.Status != meetsync.StatusInMeeting || u.DeviceID != "d1" || u.StatusSeq != 2 || !u.Since.Equal(t0) ||
		!u.UpdatedAt.Equal(t0.Add(time.Second)) || u.Session.Business != meetsync.SideLoggedOut || u.Session.Meeting != meetsync.SideLoggedOut {
		t.Errorf("user u1 = %+v", u)
	}
	if len(u.Devices) != 1 || u.Devices[0].DeviceID != "d1" || u.Devices[0].LastClientSeq != 1 || u.Devices[0].Status != meetsync.StatusInMeeting ||
		u.Devices[0].StatusSeq != 2 || !u.Devices[0].Since.Equal(t0) || !u.Devices[0].LastSeenAt.Equal(t0) {
		t.Errorf("user u1's devices = %+v", u.Devices)
	}
	if u2 := e.user("u2"); u2.LastSeq != 3 || u2.Status != meetsync.StatusIdle || len(u2.Devices) != 0 || !u2.Since.IsZero() {
		t.Errorf("user u2 = %+v", u2)
	}
}

func testAppendRoundTrip(t *testing.T, su *suite) {
	e := su.setup(t)
	received := t0.Add(987654321) // nanoseconds: stores keep microseconds
	occurred := t0.Add(-time.Minute).Add(1234567)
	data := `{ "z" : [1, 2.50, "x\u00e9\n", {"b":null}], "a":"\u2028<>&" ,"big":12345678901234567890 }`
	ev := e.event(in{id: "caller-1", typ: "app.custom_thing", user: "ü-user 1", device: "dev/1", clientSeq: 42, occurredAt: occurred,
		data: data, received: received})
	st := e.event(in{typ: meetsync.TypeMeetingStatusChanged, user: "ü-user 1", device: "dev/1", clientSeq: 43,
		data: `{"status":"MEETING_STATUS_INMEETING","arg":3,"meeting_num":123456,"extra":{"k":"v"}}`, received: received})
	rs := e.appendOne(ev, st)
	feed := e.feed(e.app, 0, 10)
	if len(feed) != 2 {
		t.Fatalf("feed has %d events, want 2", len(feed))
	}
	for i, want := range []*meetsync.Event{ev, st} {
		got := feed[i]
		if got.ID != want.ID || got.Type != want.Type || got.AppID != e.app || got.UserID != want.UserID || got.Seq != int64(i+1) ||
			got.Pos != rs[i].Pos || got.Source != meetsync.SourceClient || got.DeviceID != want.DeviceID || got.ClientSeq != want.ClientSeq || got.Stale {
			t.Errorf("event %d read back as %+v, appended %+v", i, got, want)
		}
		if !bytes.Equal(got.Data, want.Data) {
			t.Errorf("event %d data read back as\n%s\nwant byte for byte\n%s", i, got.Data, want.Data)
		}
		if !got.ReceivedAt.Equal(received.Truncate(time.Microsecond)) {
			t.Errorf("event %d received_at %v, want %v (microseconds)", i, got.ReceivedAt, received.Truncate(time.Microsecond))
		}
	}
	if !feed[0].OccurredAt.Equal(occurred.Truncate(time.Microsecond)) {
		t.Errorf("occurred_at %v, want %v", feed[0].OccurredAt, occurred.Truncate(time.Microsecond))
	}
	if !bytes.Contains(feed[1].Data, []byte(`"from":"idle","from_code":0`)) {
		t.Errorf("status data %s lacks the previous status", feed[1].Data)
	}
	u := e.user("ü-user 1")
	if u.Status != meetsync.StatusInMeeting || u.Reason != meetsync.Reason(3) || u.MeetingNum != "123456" || u.DeviceID != "dev/1" {
		t.Errorf("user = %+v", u)
	}
}

func testDuplicateClientSeq(t *testing.T, su *suite) {
	e := su.setup(t)
	first := e.appendOne(e.status("u", "d1", 1, "connecting"), e.status("u", "d1", 2, "in_meeting"))
	e.tick(time.Second)
	// A retry with other content is still the same (device, client_seq).
	again := e.appendOne(e.status("u", "d1", 1, "idle"))
	if r := again[0]; !r.Duplicate || r.ID != first[0].ID || r.Seq != 1 || r.Pos != first[0].Pos {
		t.Errorf("repeat of client_seq 1: %+v, want a duplicate of %+v", r, first[0])
	}
	// In one request, and across requests of one transaction.
	in1 := e.appendOne(e.status("u", "d1", 3, "idle"), e.status("u", "d1", 3, "idle"))
	if !in1[1].Duplicate || in1[1].ID != in1[0].ID || in1[1].Seq != 3 {
		t.Errorf("same client_seq twice in a request: %s", fmtResults(in1))
	}
	rb := req(e.event(in{user: "u", device: "d2", clientSeq: 1}))
	rc := req(e.event(in{user: "u", device: "d2", clientSeq: 1}))
	e.append(req(e.note("u")), rb, rc)
	if r := rc.Results[0]; !r.Duplicate || r.ID != rb.Results[0].ID || r.Seq != rb.Results[0].Seq {
		t.Errorf("same client_seq in two requests of a transaction: %+v then %+v", rb.Results[0], r)
	}
	// A stale event is stored; its retry is a duplicate of it.
	e.appendOne(e.status("u", "d1", 9, "in_meeting"))
	stale := e.appendOne(e.status("u", "d1", 5, "idle"))
	if !stale[0].Stale || stale[0].Duplicate {
		t.Fatalf("client_seq 5 after 9: %+v, want stored stale", stale[0])
	}
	dupStale := e.appendOne(e.status("u", "d1", 5, "idle"))
	if r := dupStale[0]; !r.Duplicate || r.ID != stale[0].ID || !r.Stale {
		t.Errorf("repeat of the stale client_seq 5: %+v, want a duplicate of %+v", r, stale[0])
	}
	// Another device's client_seq is its own.
	if r := e.appendOne(e.status("u", "d3", 1, "idle"))[0]; r.Duplicate {
		t.Errorf("client_seq 1 of another device: %+v, want new", r)
	}
	u := e.user("u")
	feed := e.feed(e.app, 0, 100)
	if int64(len(feed)) != u.LastSeq {
		t.Errorf("the feed has %d events, the user's last seq is %d", len(feed), u.LastSeq)
	}
	for i, ev := range feed {
		if ev.Seq != int64(i+1) {
			t.Errorf("feed event %d has seq %d", i, ev.Seq)
		}
	}
}

func testDuplicateCallerID(t *testing.T, su *suite) {
	e := su.setup(t)
	first := e.appendOne(e.event(in{id: "ext-1", user: "u1", data: `{"a":1}`}))
	// The same id for another user, with other data: a duplicate, and it
	// creates no user.
	dup := e.appendOne(e.event(in{id: "ext-1", user: "u2", data: `{"a":2}`}))
	if r := dup[0]; !r.Duplicate || r.ID != "ext-1" || r.Seq != first[0].Seq || r.Pos != first[0].Pos {
		t.Errorf("repeat of caller id: %+v, want a duplicate of %+v", r, first[0])
	}
	_, err := e.s.UserGet(e.ctx, e.app, "u2")
	wantCode(t, "UserGet of a user whose only event was a duplicate", err, meetsync.ENOTFOUND)
	// Twice in one request.
	rs := e.appendOne(e.event(in{id: "ext-2", user: "u1"}), e.event(in{id: "ext-2", user: "u1"}), e.event(in{id: "ext-3", user: "u1"}))
	if rs[0].Duplicate || !rs[1].Duplicate || rs[1].Seq != rs[0].Seq || rs[2].Duplicate || rs[2].Seq != rs[0].Seq+1 {
		t.Errorf("caller id twice in a request: %s", fmtResults(rs))
	}
	// Ids are per app.
	other := e.newApp("other")
	if r := e.appendOne(e.event(in{app: other, id: "ext-1", user: "u1"}))[0]; r.Duplicate || r.Seq != 1 {
		t.Errorf("caller id of another app: %+v, want new", r)
	}
	if n := len(e.feed(e.app, 0, 100)); n != 3 {
		t.Errorf("feed has %d events, want 3", n)
	}
}

func testIdempotencyKey(t *testing.T, su *suite) {
	e := su.setup(t)
	r1 := &meetsync.AppendRequest{AppID: e.app, IdempotencyKey: "k1", RequestHash: []byte("h1"), Events: []*meetsync.Event{e.note("u"), e.note("v")}}
	e.append(r1)
	e.tick(time.Second)
	head, err := e.s.EventFeedHead(e.ctx, e.app)
	if err != nil {
		t.Fatal(err)
	}
	// The same key and hash: the first results, all marked duplicate,
	// whatever the events are now.
	r2 := &meetsync.AppendRequest{AppID: e.app, IdempotencyKey: "k1", RequestHash: []byte("h1"), Events: []*meetsync.Event{e.note("w"), e.note("w")}}
	// Another key's conflict in the same transaction fails alone.
	r3 := &meetsync.AppendRequest{AppID: e.app, IdempotencyKey: "k1", RequestHash: []byte("other"), Events: []*meetsync.Event{e.note("x")}}
	r4 := req(e.note("u"))
	if err := e.s.EventsAppend(e.ctx, []*meetsync.AppendRequest{r2, r3, r4}); err != nil {
		t.Fatal(err)
	}
	if r2.Err != nil || len(r2.Results) != 2 {
		t.Fatalf("repeat: %v %v", r2.Err, r2.Results)
	}
	for i, r := range r2.Results {
		w := r1.Results[i]
		if !r.Duplicate || r.ID != w.ID || r.Seq != w.Seq || r.Stale != w.Stale || r.Pos != w.Pos {
			t.Errorf("repeat result %d = %+v, want %+v as a duplicate", i, r, w)
		}
	}
	wantCode(t, "same key, other body", r3.Err, meetsync.ECONFLICT)
	if r3.Results != nil {
		t.Errorf("the refused request has results %v", r3.Results)
	}
	if r4.Err != nil || len(r4.Results) != 1 || r4.Results[0].Seq != 2 {
		t.Errorf("a request beside the refused one: %v %v", r4.Err, r4.Results)
	}
	if feed := e.feed(e.app, head, 100); len(feed) != 1 {
		t.Errorf("%d events appended after the first request, want 1 (the other request's)", len(feed))
	}
	if _, err := e.s.UserGet(e.ctx, e.app, "w"); meetsync.ErrorCode(err) != meetsync.ENOTFOUND {
		t.Errorf("a repeated request's events were applied: %v", err)
	}

	// Twice in one transaction, and a conflicting third.
	ra := &meetsync.AppendRequest{AppID: e.app, IdempotencyKey: "k2", RequestHash: []byte("h"), Events: []*meetsync.Event{e.note("u"), e.status("u", "d", 1, "idle")}}
	rb := &meetsync.AppendRequest{AppID: e.app, IdempotencyKey: "k2", RequestHash: []byte("h"), Events: []*meetsync.Event{e.note("u"), e.note("u")}}
	rc := &meetsync.AppendRequest{AppID: e.app, IdempotencyKey: "k2", RequestHash: []byte("x"), Events: []*meetsync.Event{e.note("u")}}
	if err := e.s.EventsAppend(e.ctx, []*meetsync.AppendRequest{ra, rb, rc}); err != nil {
		t.Fatal(err)
	}
	if ra.Err != nil || rb.Err != nil || len(rb.Results) != 2 {
		t.Fatalf("same key twice in a transaction: %v %v %v", ra.Err, rb.Err, rb.Results)
	}
	for i := range ra.Results {
		if a, b := ra.Results[i], rb.Results[i]; a.Duplicate || !b.Duplicate || a.ID != b.ID || a.Seq != b.Seq || a.Pos != b.Pos {
			t.Errorf("result %d: first %+v, repeat %+v", i, a, b)
		}
	}
	wantCode(t, "same key, other body, same transaction", rc.Err, meetsync.ECONFLICT)

	// Any bytes, and per app.
	odd := "\xff\xfe key \x01"
	ro := &meetsync.AppendRequest{AppID: e.app, IdempotencyKey: odd, RequestHash: []byte("h"), Events: []*meetsync.Event{e.note("u")}}
	e.append(ro)
	ro2 := &meetsync.AppendRequest{AppID: e.app, IdempotencyKey: odd, RequestHash: []byte("h"), Events: []*meetsync.Event{e.note("u")}}
	e.append(ro2)
	if !ro2.Results[0].Duplicate || ro2.Results[0].ID != ro.Results[0].ID {
		t.Errorf("a key of odd bytes was not recognised: %+v then %+v", ro.Results[0], ro2.Results[0])
	}
	other := e.newApp("other")
	rx := &meetsync.AppendRequest{AppID: other, IdempotencyKey: "k1", RequestHash: []byte("zzz"), Events: []*meetsync.Event{e.event(in{app: other, user: "u"})}}
	e.append(rx)
	if rx.Results[0].Duplicate {
		t.Errorf("a key of another app: %+v, want new", rx.Results[0])
	}
}

func testStaleRules(t *testing.T, su *suite) {
	e := su.setup(t)
	// A lower client_seq is stale: stored, in the feed, the state unmoved.
	e.appendOne(e.status("u", "d1", 3, "in_meeting"))
	e.tick(time.Second)
	rs := e.appendOne(e.status("u", "d1", 1, "idle"), e.event(in{user: "u", device: "d1", clientSeq: 2, typ: "app.ping"}))
	if !rs[0].Stale || !rs[1].Stale || rs[0].Seq != 2 || rs[1].Seq != 3 {
		t.Errorf("lower client_seqs: %s; want stale with seqs 2 and 3", fmtResults(rs))
	}
	u := e.user("u")
	if u.Status != meetsync.StatusInMeeting || u.LastSeq != 3 || u.Devices[0].LastClientSeq != 3 {
		t.Errorf("after stale events: %+v", u)
	}
	feed := e.feed(e.app, 0, 10)
	if len(feed) != 3 || !feed[1].Stale || !feed[2].Stale || feed[0].Stale {
		t.Errorf("the feed keeps stale events, marked: %v", feed)
	}
	if !bytes.Contains(feed[1].Data, []byte(`"from":"in_meeting"`)) {
		t.Errorf("a stale status still records its 'from': %s", feed[1].Data)
	}

	// A status older (by occurred_at) than the device's current one is stale.
	base := e.tick(time.Minute)
	a := e.event(in{typ: meetsync.TypeMeetingStatusChanged, user: "v", device: "d", occurredAt: base.Add(-time.Second), data: `{"status":"connecting"}`})
	b := e.event(in{typ: meetsync.TypeMeetingStatusChanged, user: "v", device: "d", occurredAt: base.Add(-5 * time.Second), data: `{"status":"idle"}`})
	rs = e.appendOne(a, b)
	if rs[0].Stale || !rs[1].Stale {
		t.Errorf("an older status: %s; want the second stale", fmtResults(rs))
	}
	// A device clock in the future counts as the receive time.
	e.tick(time.Second)
	c := e.event(in{typ: meetsync.TypeMeetingStatusChanged, user: "v", device: "d", occurredAt: e.now.Add(time.Hour), data: `{"status":"in_meeting"}`})
	d := e.event(in{typ: meetsync.TypeMeetingStatusChanged, user: "v", device: "d", occurredAt: e.now.Add(-time.Millisecond), data: `{"status":"idle"}`})
	rs = e.appendOne(c, d)
	if rs[0].Stale || !rs[1].Stale {
		t.Errorf("future occurred_at: %s; want the first fresh, the one before its receive time stale", fmtResults(rs))
	}
	if v := e.user("v"); v.Status != meetsync.StatusInMeeting || !v.Since.Equal(e.now) {
		t.Errorf("user v = %+v; want in_meeting since %v (the receive time)", v, e.now)
	}
}

func testDeviceCombination(t *testing.T, su *suite) {
	e := su.setup(t)
	e.appendOne(e.status("u", "phone", 1, "in_meeting"))
	e.tick(time.Second)
	e.appendOne(e.status("u", "laptop", 1, "idle"))
	u := e.user("u")
	if u.Status != meetsync.StatusInMeeting || u.DeviceID != "phone" || u.StatusSeq != 1 || len(u.Devices) != 2 {
		t.Errorf("one device in a meeting, one idle: %+v; want in_meeting from the phone", u)
	}
	e.tick(time.Second)
	e.appendOne(e.status("u", "phone", 2, "idle"))
	u = e.user("u")
	if u.Status != meetsync.StatusIdle || u.DeviceID != "phone" || u.StatusSeq != 3 || u.LastSeq != 3 {
		t.Errorf("both idle: %+v; want idle from the newest report (the phone, seq 3)", u)
	}
	var phone *meetsync.DeviceState
	for _, d := range u.Devices {
		if d.DeviceID == "phone" {
			phone = d
		}
	}
	if phone == nil || phone.LastClientSeq != 2 || phone.Status != meetsync.StatusIdle || phone.StatusSeq != 3 {
		t.Errorf("phone = %+v", phone)
	}
}

func testUnstorableBytes(t *testing.T, su *suite) {
	e := su.setup(t)
	// JSON escapes of NUL in event data are bytes like any other.
	ok := e.event(in{user: "u", data: `{"s":"a\u0000b"}`})
	// A NUL in a meeting number reaches a text column of the user's state:
	// a store that cannot keep it refuses that request alone (EINVALID).
	odd := e.event(in{typ: meetsync.TypeMeetingStatusChanged, user: "odd", device: "d", data: `{"status":"in_meeting","meeting_num":"1\u00002"}`})
	r1, r2 := req(ok), req(odd)
	if err := e.s.EventsAppend(e.ctx, []*meetsync.AppendRequest{r1, r2}); err != nil {
		t.Fatalf("EventsAppend: %v (one request's bytes must not fail the others)", err)
	}
	if r1.Err != nil || len(r1.Results) != 1 {
		t.Fatalf("the ordinary request: %v", r1.Err)
	}
	feed := e.feed(e.app, 0, 10)
	if len(feed) == 0 || !bytes.Equal(feed[0].Data, ok.Data) {
		t.Errorf("data with an escaped NUL read back as %v", feed)
	}
	switch {
	case r2.Err == nil:
		if u := e.user("odd"); u.MeetingNum != "1\x002" {
			t.Errorf("meeting number read back as %q", u.MeetingNum)
		}
	case meetsync.ErrorCode(r2.Err) == meetsync.EINVALID:
		if _, err := e.s.UserGet(e.ctx, e.app, "odd"); meetsync.ErrorCode(err) != meetsync.ENOTFOUND {
			t.Errorf("the refused request left a user: %v", err)
		}
		if len(feed) != 1 {
			t.Errorf("the refused request left events: %d in the feed", len(feed))
		}
	default:
		t.Errorf("the request with a NUL meeting number: %v; want stored or EINVALID", r2.Err)
	}
}

func testUsers(t *testing.T, su *suite) {
	e := su.setup(t)
	statuses := map[string]string{"B": "in_meeting", "a": "idle", "ä": "in_meeting", "Z": "connecting", "b1": "in_meeting", "a-": "idle"}
	var reqs []*meetsync.AppendRequest
	for id, st := range statuses {
		reqs = append(reqs, req(e.status(id, "d", 1, st)))
	}
	e.append(reqs...)
	other := e.newApp("other")
	e.appendOne(e.event(in{app: other, user: "B"}))

	list := func(p meetsync.UserListParams) []string {
		t.Helper()
		p.AppID = e.app
		us, err := e.s.UserList(e.ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, u := range us {
			ids = append(ids, u.UserID)
			if want := statuses[u.UserID]; u.Status.Name() != want {
				t.Errorf("user %s: status %s, want %s", u.UserID, u.Status.Name(), want)
			}
		}
		return ids
	}
	all := []string{"B", "Z", "a", "a-", "b1", "ä"} // byte order
	if got := list(meetsync.UserListParams{Limit: 100}); !slices.Equal(got, all) {
		t.Errorf("UserList = %q, want %q (bytewise)", got, all)
	}
	var paged []string
	after := ""
	for range 10 {
		page := list(meetsync.UserListParams{After: after, Limit: 4})
		paged = append(paged, page...)
		if len(page) < 4 {
			break
		}
		after = page[len(page)-1]
	}
	if !slices.Equal(paged, all) {
		t.Errorf("UserList by pages of 4 = %q, want %q", paged, all)
	}
	in := meetsync.StatusInMeeting
	if got := list(meetsync.UserListParams{Status: &in, Limit: 100}); !slices.Equal(got, []string{"B", "b1", "ä"}) {
		t.Errorf("UserList(in_meeting) = %q", got)
	}
	if got := list(meetsync.UserListParams{Status: &in, After: "B", Limit: 1}); !slices.Equal(got, []string{"b1"}) {
		t.Errorf("UserList(in_meeting, after B, limit 1) = %q", got)
	}

	// Statuses change: the lists follow, the one that changed back too.
	statuses["B"], statuses["a"], statuses["Z"] = "idle", "in_meeting", "in_meeting"
	e.append(req(e.status("B", "d", 2, "idle")), req(e.status("a", "d", 2, "in_meeting")), req(e.status("Z", "d", 2, "in_meeting")))
	statuses["Z"] = "connecting"
	e.append(req(e.status("Z", "d", 3, "connecting")))
	if got := list(meetsync.UserListParams{Status: &in, Limit: 100}); !slices.Equal(got, []string{"a", "b1", "ä"}) {
		t.Errorf("UserList(in_meeting) after the changes = %q", got)
	}
	idle := meetsync.StatusIdle
	if got := list(meetsync.UserListParams{Status: &idle, Limit: 100}); !slices.Equal(got, []string{"B", "a-"}) {
		t.Errorf("UserList(idle) after the changes = %q", got)
	}
	connecting := meetsync.StatusConnecting
	if got := list(meetsync.UserListParams{Status: &connecting, Limit: 100}); !slices.Equal(got, []string{"Z"}) {
		t.Errorf("UserList(connecting) after the changes = %q", got)
	}
}

func testFeed(t *testing.T, su *suite) {
	e := su.setup(t)
	other := e.newApp("other")
	if h, err := e.s.EventFeedHead(e.ctx, e.app); err != nil || h != 0 {
		t.Errorf("EventFeedHead of an empty app = %d, %v; want 0", h, err)
	}
	types := []string{"app.note", "app.other", "apps.x", meetsync.TypeMeetingStatusChanged, "meetingx.custom", "meeting_y.z"}
	var mine []meetsync.EventResult
	for i := range 24 {
		typ := types[i%len(types)]
		user := []string{"u1", "u2", "u3"}[i%3]
		x := in{typ: typ, user: user}
		if typ == meetsync.TypeMeetingStatusChanged {
			x.data = `{"status":"idle"}`
		}
		mine = append(mine, e.appendOne(e.event(x))...)
		e.appendOne(e.event(in{app: other, user: user}))
		e.tick(time.Millisecond)
	}
	feed := e.feed(e.app, 0, 5)
	if len(feed) != len(mine) {
		t.Fatalf("feed has %d events, %d appended", len(feed), len(mine))
	}
	for i, ev := range feed {
		if ev.ID != mine[i].ID || ev.Pos != mine[i].Pos || ev.AppID != e.app {
			t.Fatalf("feed event %d = %s at %d, want %s at %d", i, ev.ID, ev.Pos, mine[i].ID, mine[i].Pos)
		}
		if i > 0 && ev.Pos <= feed[i-1].Pos {
			t.Errorf("positions do not increase: %d after %d", ev.Pos, feed[i-1].Pos)
		}
	}
	if h, err := e.s.EventFeedHead(e.ctx, e.app); err != nil || h != feed[len(feed)-1].Pos {
		t.Errorf("EventFeedHead = %d, %v; want %d", h, err, feed[len(feed)-1].Pos)
	}
	filtered := func(p meetsync.EventListParams) []string {
		t.Helper()
		p.AppID, p.Limit = e.app, 100
		evs, err := e.s.EventList(e.ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, ev := range evs {
			out = append(out, ev.Type+"/"+ev.UserID)
		}
		return out
	}
	want := func(match func(*meetsync.Event) bool, after int64) []string {
		var out []string
		for _, ev := range feed {
			if ev.Pos > after && match(ev) {
				out = append(out, ev.Type+"/"+ev.UserID)
			}
		}
		return out
	}
	checks := []struct {
		name  string
		p     meetsync.EventListParams
		match func(*meetsync.Event) bool
	}{
		{"exact type", meetsync.EventListParams{Types: meetsync.TypeFilter{"app.note"}}, func(ev *meetsync.Event) bool { return ev.Type == "app.note" }},
		{"prefix", meetsync.EventListParams{Types: meetsync.TypeFilter{"app.*"}}, func(ev *meetsync.Event) bool { return ev.Type == "app.note" || ev.Type == "app.other" }},
		{"prefix meeting.*", meetsync.EventListParams{Types: meetsync.TypeFilter{"meeting.*"}}, func(ev *meetsync.Event) bool { return ev.Type == meetsync.TypeMeetingStatusChanged }},
		{"union", meetsync.EventListParams{Types: meetsync.TypeFilter{"apps.x", "meeting_y.*"}}, func(ev *meetsync.Event) bool { return ev.Type == "apps.x" || ev.Type == "meeting_y.z" }},
		{"user", meetsync.EventListParams{UserID: "u2"}, func(ev *meetsync.Event) bool { return ev.UserID == "u2" }},
		{"user and type after", meetsync.EventListParams{UserID: "u1", Types: meetsync.TypeFilter{"app.*"}, After: feed[6].Pos},
			func(ev *meetsync.Event) bool {
				return ev.UserID == "u1" && (ev.Type == "app.note" || ev.Type == "app.other")
			}},
	}
	for _, c := range checks {
		if got, w := filtered(c.p), want(c.match, c.p.After); !slices.Equal(got, w) {
			t.Errorf("%s: %v, want %v", c.name, got, w)
		}
	}
	page, err := e.s.EventList(e.ctx, meetsync.EventListParams{AppID: e.app, After: feed[3].Pos, Limit: 2})
	if err != nil || len(page) != 2 || page[0].ID != feed[4].ID || page[1].ID != feed[5].ID {
		t.Errorf("after feed[3], limit 2: %v, %v", page, err)
	}
	if page, err := e.s.EventList(e.ctx, meetsync.EventListParams{AppID: e.app, After: feed[len(feed)-1].Pos, Limit: 10}); err != nil || len(page) != 0 {
		t.Errorf("after the head: %v, %v", page, err)
	}
	if o := e.feed(other, 0, 100); len(o) != 24 {
		t.Errorf("the other app's feed has %d events, want 24", len(o))
	}
}

// testLargeTransaction appends a transaction of a thousand events (a store
// may load big ones differently) with every kind of duplicate inside it,
// and checks the results, the feed, the users and the outbox.
func testLargeTransaction(t *testing.T, su *suite) {
	e := su.setup(t)
	ep := e.endpoint([]string{"meeting.*"}, 0)
	var evs []*meetsync.Event
	for i := range 1000 {
		u := fmt.Sprintf("u%02d", i%40)
		switch i % 4 {
		case 0:
			evs = append(evs, e.status(u, "d", int64(i/40+1), []string{"idle", "in_meeting", "connecting"}[i%3]))
		case 1:
			evs = append(evs, e.event(in{id: fmt.Sprintf("ext-%d", i), user: u}))
		default:
			evs = append(evs, e.note(u))
		}
	}
	// Repeats inside the transaction: a caller id and a (device, client_seq).
	evs = append(evs, e.event(in{id: "ext-1", user: "u01"}), e.status("u00", "d", 1, "idle"))
	big := req(evs...)
	small := req(e.note("other"))
	e.append(big, small)
	perUser := map[string]int64{}
	for i, r := range big.Results[:1000] {
		perUser[evs[i].UserID]++
		if r.Duplicate || r.Seq != perUser[evs[i].UserID] {
			t.Fatalf("event %d: %+v, want new with seq %d", i, r, perUser[evs[i].UserID])
		}
	}
	if r := big.Results[1000]; !r.Duplicate || r.ID != "ext-1" || r.Seq != big.Results[1].Seq {
		t.Errorf("repeated caller id: %+v, want a duplicate of %+v", r, big.Results[1])
	}
	if r := big.Results[1001]; !r.Duplicate || r.ID != big.Results[0].ID {
		t.Errorf("repeated client_seq: %+v, want a duplicate of %+v", r, big.Results[0])
	}
	feed := e.feed(e.app, 0, 300)
	if len(feed) != 1001 {
		t.Fatalf("the feed has %d events, want 1001", len(feed))
	}
	for i, ev := range feed[:1000] {
		if ev.ID != evs[i].ID || ev.Pos != big.Results[i].Pos || !bytes.Equal(ev.Data, evs[i].Data) {
			t.Fatalf("feed event %d: %s at %d, want %s at %d", i, ev.ID, ev.Pos, evs[i].ID, big.Results[i].Pos)
		}
	}
	if feed[1000].UserID != "other" || small.Results[0].Pos != feed[1000].Pos {
		t.Errorf("the other request's event: %+v / %+v", feed[1000], small.Results[0])
	}
	if u := e.user("u07"); u.LastSeq != 25 {
		t.Errorf("user u07: last seq %d, want 25", u.LastSeq)
	}
	if ds := e.deliveries(ep, ""); len(ds) != 250 {
		t.Errorf("%d deliveries of the status events, want 250", len(ds))
	}
	// The caller ids of the big transaction are known to the next one.
	if r := e.appendOne(e.event(in{id: "ext-997", user: "u37"}))[0]; !r.Duplicate {
		t.Errorf("a caller id of the big transaction: %+v, want a duplicate", r)
	}
}
