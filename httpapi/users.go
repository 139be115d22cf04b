package httpapi

import (
	"net/http"
	"time"

	"github.com/meetsync/meetsync"
)

type meetingJSON struct {
	Status     string     `json:"status"`
	Code       int        `json:"code"`
	SDKName    string     `json:"sdk_name"`
	Reason     string     `json:"reason"`
	ReasonCode int        `json:"reason_code"`
	MeetingNum string     `json:"meeting_num,omitempty"`
	DeviceID   string     `json:"device_id,omitempty"`
	Since      *time.Time `json:"since,omitempty"`
}

type deviceJSON struct {
	DeviceID      string      `json:"device_id"`
	LastClientSeq int64       `json:"last_client_seq"`
	Meeting       meetingJSON `json:"meeting"`
	LastSeenAt    time.Time   `json:"last_seen_at"`
}

type userJSON struct {
	UserID    string        `json:"user_id"`
	Session   sessionJSON   `json:"session"`
	Platform  *platformJSON `json:"platform,omitempty"`
	Meeting   meetingJSON   `json:"meeting"`
	LastSeq   int64         `json:"last_seq"`
	UpdatedAt time.Time     `json:"updated_at"`
	Devices   []deviceJSON  `json:"devices,omitempty"`
}

// platformJSON is what the meeting platform last said of the user.
type platformJSON struct {
	MeetingNum string    `json:"meeting_num"`
	InMeeting  bool      `json:"in_meeting"`
	Since      time.Time `json:"since"`
}

func meetingOf(st meetsync.MeetingStatus, r meetsync.Reason, num, device string, since time.Time) meetingJSON {
	m := meetingJSON{Status: st.Name(), Code: int(st), SDKName: st.SDKName(), Reason: r.Name(), ReasonCode: int(r), MeetingNum: num, DeviceID: device}
	if !since.IsZero() {
		m.Since = &since
	}
	return m
}

func renderUser(u *meetsync.UserState) userJSON {
	j := userJSON{UserID: u.UserID, LastSeq: u.LastSeq, UpdatedAt: u.UpdatedAt,
		Meeting: meetingOf(u.Status, u.Reason, u.MeetingNum, u.DeviceID, u.Since)}
	j.Session = renderSession(u.Session)
	if u.Platform.MeetingNum != "" {
		j.Platform = &platformJSON{MeetingNum: u.Platform.MeetingNum, InMeeting: u.Platform.InMeeting, Since: u.Platform.Since}
	}
	for _, d := range u.Devices {
		j.Devices = append(j.Devices, deviceJSON{DeviceID: d.DeviceID, LastClientSeq: d.LastClientSeq, LastSeenAt: d.LastSeenAt,
			Meeting: meetingOf(d.Status, d.Reason, d.MeetingNum, "", d.Since)})
	}
	return j
}

func (s *Server) handleUserGet(w http.ResponseWriter, r *http.Request) {
	u, err := s.store.UserGet(r.Context(), principalOf(r.Context()).AppID, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, renderUser(u))
}

func (s *Server) handleUserList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p := meetsync.UserListParams{AppID: principalOf(r.Context()).AppID, After: q.Get("cursor")}
	var err error
	if p.Limit, err = parseLimit(q.Get("limit")); err != nil {
		s.writeError(w, r, err)
		return
	}
	if v := q.Get("status"); v != "" {
		st, ok := meetsync.StatusByName(v)
		if !ok {
			s.writeError(w, r, meetsync.FieldErrorf("status", "unknown meeting status %q; accepted: %s", v, meetsync.StatusNames()))
			return
		}
		p.Status = &st
	}
	users, err := s.store.UserList(r.Context(), p)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]userJSON, 0, len(users))
	for _, u := range users {
		out = append(out, renderUser(u))
	}
	resp := map[string]any{"users": out}
	if len(users) == p.Limit {
		resp["next"] = users[len(users)-1].UserID
	}
	writeJSON(w, http.StatusOK, resp)
}
