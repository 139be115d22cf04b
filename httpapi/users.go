package httpapi

import (
	"context"
	"net/http"
	"slices"
	"strings"
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
	var sts []meetsync.MeetingStatus
	for _, vs := range q["status"] {
		for _, v := range strings.Split(vs, ",") {
			if v = strings.TrimSpace(v); v == "" {
				continue
			}
			st, ok := meetsync.StatusByName(v)
			if !ok {
				s.writeError(w, r, meetsync.FieldErrorf("status", "unknown meeting status %q; accepted: %s (several: comma separated)", v, meetsync.StatusNames()))
				return
			}
			if !slices.Contains(sts, st) {
				sts = append(sts, st)
			}
		}
	}
	users, err := s.listUsers(r.Context(), p, sts)
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

// listUsers lists a page of users with any of the statuses sts (every
// user when sts is empty), ordered by user id. Several statuses are read
// as one page of each from the store's status index and merged: the
// first p.Limit of the union are the page.
func (s *Server) listUsers(ctx context.Context, p meetsync.UserListParams, sts []meetsync.MeetingStatus) ([]*meetsync.UserState, error) {
	if len(sts) <= 1 {
		if len(sts) == 1 {
			p.Status = &sts[0]
		}
		return s.store.UserList(ctx, p)
	}
	var all []*meetsync.UserState
	for i := range sts {
		p.Status = &sts[i]
		users, err := s.store.UserList(ctx, p)
		if err != nil {
			return nil, err
		}
		all = append(all, users...)
	}
	slices.SortFunc(all, func(a, b *meetsync.UserState) int { return strings.Compare(a.UserID, b.UserID) })
	if len(all) > p.Limit {
		all = all[:p.Limit]
	}
	return all, nil
}
