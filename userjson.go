package meetsync

import (
	"encoding/json"
	"fmt"
	"time"
)

// The stores keep a user's devices and its session, platform presence and
// open invitations as two small JSON documents in the user's row; both
// stores use these encodings, so their rows mean the same.

// deviceJSON is one device's state in the devices document (times in
// microseconds since the epoch, 0 for none).
type deviceJSON struct {
	ID            string `json:"d"`
	LastClientSeq int64  `json:"c,omitempty"`
	Status        int    `json:"s"`
	Reason        int    `json:"r,omitempty"`
	MeetingNum    string `json:"m,omitempty"`
	Since         int64  `json:"t,omitempty"`
	StatusSeq     int64  `json:"q,omitempty"`
	LastSeenAt    int64  `json:"l,omitempty"`
}

func jsonMicros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func jsonTime(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMicro(v).UTC()
}

// EncodeDevices encodes a user's devices for its row.
func EncodeDevices(ds []*DeviceState) []byte {
	out := make([]deviceJSON, len(ds))
	for i, d := range ds {
		out[i] = deviceJSON{d.DeviceID, d.LastClientSeq, int(d.Status), int(d.Reason), d.MeetingNum, jsonMicros(d.Since), d.StatusSeq, jsonMicros(d.LastSeenAt)}
	}
	b, _ := json.Marshal(out)
	return b
}

// DecodeDevices decodes what EncodeDevices wrote.
func DecodeDevices(b []byte) ([]*DeviceState, error) {
	var in []deviceJSON
	if err := json.Unmarshal(b, &in); err != nil {
		return nil, fmt.Errorf("decode devices: %w", err)
	}
	out := make([]*DeviceState, len(in))
	for i, d := range in {
		out[i] = &DeviceState{DeviceID: d.ID, LastClientSeq: d.LastClientSeq, Status: MeetingStatus(d.Status),
			Reason: Reason(d.Reason), MeetingNum: d.MeetingNum, Since: jsonTime(d.Since), StatusSeq: d.StatusSeq, LastSeenAt: jsonTime(d.LastSeenAt)}
	}
	return out, nil
}

// userExtraJSON is the extra document: the session, the platform presence
// and the open invitations.
type userExtraJSON struct {
	Session  *Session          `json:"session,omitempty"`
	Platform *PlatformPresence `json:"platform,omitempty"`
	Invites  []InviteRef       `json:"invites,omitempty"`
}

// EncodeUserExtra encodes a user's session, platform presence and open
// invitations for its row.
func EncodeUserExtra(u *UserState) []byte {
	if u.Session.Version == 0 && u.Platform == (PlatformPresence{}) && len(u.Invites) == 0 {
		return []byte("{}") // most users on the ingest path: no encoding
	}
	var x userExtraJSON
	if u.Session.Version != 0 {
		x.Session = &u.Session
	}
	if u.Platform != (PlatformPresence{}) {
		x.Platform = &u.Platform
	}
	x.Invites = u.Invites
	b, _ := json.Marshal(x)
	return b
}

// DecodeUserExtra decodes what EncodeUserExtra wrote into u. business and
// meeting are the row's session-side columns, the session of a row that
// has no session document.
func DecodeUserExtra(b []byte, business, meeting string, u *UserState) error {
	u.Session = Session{Business: business, Meeting: meeting}
	if len(b) <= 2 {
		return nil
	}
	var x userExtraJSON
	if err := json.Unmarshal(b, &x); err != nil {
		return fmt.Errorf("decode user extra: %w", err)
	}
	if x.Session != nil {
		u.Session = *x.Session
	}
	if x.Platform != nil {
		u.Platform = *x.Platform
	}
	u.Invites = x.Invites
	return nil
}
