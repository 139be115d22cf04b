package httpapi

import (
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/session"
)

func (s *Server) appActor(r *http.Request) session.Actor {
	return session.Actor{AppID: principalOf(r.Context()).AppID}
}

func (s *Server) clientActor(r *http.Request) session.Actor {
	c := clientOf(r.Context())
	return session.Actor{AppID: c.AppID, UserID: c.UserID, DeviceID: c.DeviceID}
}

func (s *Server) handleInvite(w http.ResponseWriter, r *http.Request) {
	svc := s.sessions(w, r)
	if svc == nil {
		return
	}
	var in session.InviteInput
	if err := decodeJSON(r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	invs, err := svc.Invite(r.Context(), s.appActor(r), in)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"invitations": invs})
}

// invitationAction serves accept, reject and cancel for an actor.
func (s *Server) invitationAction(actor func(*http.Request) session.Actor) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		svc := s.sessions(w, r)
		if svc == nil {
			return
		}
		var in struct {
			Reason string `json:"reason"`
		}
		if err := decodeOptionalJSON(r, &in); err != nil {
			s.writeError(w, r, err)
			return
		}
		a, id := actor(r), r.PathValue("id")
		var inv *meetsync.Invitation
		var err error
		switch r.PathValue("action") {
		case "accept":
			inv, err = svc.Accept(r.Context(), a, id)
		case "reject":
			inv, err = svc.Reject(r.Context(), a, id, in.Reason)
		case "cancel":
			inv, err = svc.Cancel(r.Context(), a, id, in.Reason)
		default:
			err = meetsync.Errorf(meetsync.ENOTFOUND, "no such action %q (accept, reject, cancel)", r.PathValue("action"))
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, inv)
	}
}

func (s *Server) handleInvitationGet(w http.ResponseWriter, r *http.Request) {
	inv, err := s.cfg.InvitationStore.InvitationGet(r.Context(), principalOf(r.Context()).AppID, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, inv)
}

func (s *Server) listInvitations(w http.ResponseWriter, r *http.Request, appID, userID string) {
	if s.cfg.InvitationStore == nil {
		s.writeError(w, r, errNoSessions)
		return
	}
	q := r.URL.Query()
	p := meetsync.InvitationListParams{AppID: appID, UserID: userID, State: q.Get("state"), After: q.Get("cursor")}
	if p.After != "" && !meetsync.IsID(p.After, "inv") {
		s.writeError(w, r, meetsync.FieldErrorf("cursor", "invalid cursor %q: pass the \"next\" of the previous page", p.After))
		return
	}
	if p.State != "" && !meetsync.ValidInviteState(p.State) {
		s.writeError(w, r, meetsync.FieldErrorf("state", "unknown invitation state %q; accepted: %s", p.State, strings.Join(meetsync.InviteStates, ", ")))
		return
	}
	var err error
	if p.Limit, err = parseLimit(q.Get("limit")); err != nil {
		s.writeError(w, r, err)
		return
	}
	invs, err := s.cfg.InvitationStore.InvitationList(r.Context(), p)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if invs == nil {
		invs = []*meetsync.Invitation{}
	}
	resp := map[string]any{"invitations": invs}
	if len(invs) == p.Limit { // as GET /v1/users: next only while there may be more
		resp["next"] = invs[len(invs)-1].ID
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) handleInvitationList(w http.ResponseWriter, r *http.Request) {
	uid := r.URL.Query().Get("user_id")
	if uid != "" {
		if err := meetsync.CheckUserID(uid, "user_id"); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	s.listInvitations(w, r, principalOf(r.Context()).AppID, uid)
}

// clientInvitationParams are the query parameters of GET
// /v1/client/invitations besides user_id, which may only name the token's
// own user (as on the other client routes).
var clientInvitationParams = []string{"state", "limit", "cursor"}

func (s *Server) handleClientInvitationList(w http.ResponseWriter, r *http.Request) {
	c := clientOf(r.Context())
	q := r.URL.Query()
	for _, name := range slices.Sorted(maps.Keys(q)) {
		switch {
		case slices.Contains(clientInvitationParams, name):
		case name == "user_id":
			for _, v := range q[name] {
				switch {
				case v == c.UserID:
				case v == "":
					s.writeError(w, r, meetsync.FieldErrorf("user_id", "user_id is empty: leave it out (a client token lists its own user's invitations)"))
					return
				default:
					s.writeError(w, r, &meetsync.Error{Code: meetsync.EFORBIDDEN, Message: "a client token can only list its own user's invitations", Field: "user_id"})
					return
				}
			}
		default:
			if len(name) > 64 {
				name = strings.ToValidUTF8(name[:64], "")
			}
			s.writeError(w, r, meetsync.FieldErrorf(name, "unknown query parameter %q; accepted: user_id (the token's user), %s", name, strings.Join(clientInvitationParams, ", ")))
			return
		}
	}
	s.listInvitations(w, r, c.AppID, c.UserID)
}
