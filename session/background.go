package session

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"time"

	"github.com/meetsync/meetsync"
)

// Start runs the background loop (deadlines, retries, reconciliation)
// until Close.
func (s *Service) Start() {
	go s.loop()
}

// Close stops the background loop and waits for it.
func (s *Service) Close() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

// Wake makes the background loop look at due users now.
func (s *Service) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Service) leader() bool { return s.cfg.Leader == nil || s.cfg.Leader() }

// loop runs the background jobs. A job that fails is logged at ERROR,
// or while the database is unavailable at WARN once per 10 s
// (storelog), and tried again at its next turn.
func (s *Service) loop() {
	defer close(s.done)
	tick := time.NewTicker(s.cfg.TickEvery)
	defer tick.Stop()
	var reconcile <-chan time.Time
	if s.cfg.ReconcileEvery > 0 {
		t := time.NewTicker(s.cfg.ReconcileEvery)
		defer t.Stop()
		reconcile = t.C
	}
	purge := time.NewTicker(s.cfg.PurgeEvery)
	defer purge.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { <-s.stop; cancel() }()
	for {
		select {
		case <-s.stop:
			return
		case <-purge.C:
			if s.leader() && s.cfg.Purger != nil {
				if _, err := s.PurgeAll(ctx); err != nil && ctx.Err() == nil {
					s.storeLog.Error("retention purge", err)
				}
			}
			continue
		case <-tick.C:
		case <-s.wake:
		case <-reconcile:
			if s.leader() {
				if err := s.ReconcileAll(ctx); err != nil && ctx.Err() == nil {
					s.storeLog.Error("reconcile", err)
				}
			}
			continue
		}
		if !s.leader() {
			continue
		}
		if _, err := s.RunDue(ctx); err != nil && ctx.Err() == nil {
			s.storeLog.Error("session deadlines", err)
		}
	}
}

// RunDue acts on every user whose due time has passed and returns how
// many it looked at.
func (s *Service) RunDue(ctx context.Context) (int, error) {
	now := s.now()
	users, err := s.cfg.Sessions.UsersDue(ctx, now, 200)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, u := range users {
		if s.throttled(userKey(u.AppID, u.UserID), now) {
			continue
		}
		n++
		if err := s.act(ctx, u, now); err != nil {
			if ctx.Err() != nil {
				return n, ctx.Err()
			}
			s.recordPlatform(userKey(u.AppID, u.UserID), err, now)
			s.log.Warn("session action failed; will retry", "app", u.AppID, "user", u.UserID, "err", meetsync.ErrorMessage(err))
		}
	}
	return n, nil
}

// act does what a due user needs.
func (s *Service) act(ctx context.Context, u *meetsync.UserState, now time.Time) error {
	if len(u.Invites) > 0 && s.cfg.Invitations != nil {
		if err := s.settleInvitations(ctx, u, now); err != nil {
			return err
		}
	}
	sess := u.Session
	switch {
	case !sess.Deadline.IsZero() && !now.Before(sess.Deadline):
		switch {
		case sess.Meeting == meetsync.SideLoggingOut:
			return s.finishLogout(ctx, u.AppID, u.UserID, sess.ID, true)
		case sess.Business == meetsync.SideLoggedIn && sess.Meeting == meetsync.SidePending:
			return s.expireLogin(ctx, u.AppID, u.UserID, sess.ID)
		case sess.RevokePending:
			return s.retryRevoke(ctx, u.AppID, u.UserID, sess.ID)
		}
	case (len(u.ContradictedDevices()) > 0 || u.UnreportedMeeting()) && !now.Before(u.Platform.CheckAt):
		return s.correctStatus(ctx, u.AppID, u.UserID)
	case sess.Business == meetsync.SideLoggedOut && !sess.CheckAt.IsZero() && !now.Before(sess.CheckAt):
		return s.forceLogoutAgain(ctx, u.AppID, u.UserID, sess.ID)
	}
	return nil
}

// expireLogin resolves a login whose meeting side missed its deadline by
// the session's policy.
func (s *Service) expireLogin(ctx context.Context, appID, userID, sessionID string) error {
	var rolledBack *meetsync.Session
	err := retry(ctx, func() error {
		u, err := s.user(ctx, appID, userID)
		if err != nil {
			return err
		}
		cur := u.Session
		now := s.now()
		if cur.ID != sessionID || cur.Business != meetsync.SideLoggedIn || cur.Meeting != meetsync.SidePending || now.Before(cur.Deadline) {
			return nil
		}
		next := cur
		data := map[string]any{"reason": "the meeting side did not log in by the deadline", "login_attempts": cur.LoginAttempts, "policy": cur.Policy}
		typ := meetsync.TypeSessionDegraded
		if cur.Policy == meetsync.PolicyDegrade {
			next.Meeting, next.Deadline = meetsync.SideFailed, time.Time{}
		} else {
			typ = meetsync.TypeSessionRolledBack
			next.Business, next.Meeting, next.Deadline = meetsync.SideLoggedOut, meetsync.SideLoggedOut, time.Time{}
			rolledBack = &next
		}
		return s.change(ctx, u, sessionEvent(u, typ, next, data, now))
	})
	if err != nil || rolledBack == nil {
		return err
	}
	now := s.now()
	// The commands are the rolled back session's, whatever the user's
	// session is by now (a device may have logged in again: pushCommands
	// supersedes them for the new session's devices).
	u := meetsync.NewUserState(appID, userID)
	u.Session = *rolledBack
	if err := s.pushCommands(ctx, u, sessionID, rolledBack.Devices, meetsync.CommandLogout,
		map[string]any{"session_id": sessionID, "reason": "rolled back: the meeting login did not complete"}, now); err != nil {
		return err
	}
	_, err = s.cfg.Sessions.ClientTokensRevoke(ctx, appID, userID, sessionID, now)
	return err
}

// retryRevoke tries again to revoke the meeting credentials of a logged
// out user whose revocation failed, and reports the outcome.
func (s *Service) retryRevoke(ctx context.Context, appID, userID, sessionID string) error {
	prov, _, err := s.Provider(ctx, appID)
	if err != nil {
		return err
	}
	if err := s.revoke(ctx, prov, appID, userID); err != nil {
		return err
	}
	return retry(ctx, func() error {
		u, err := s.user(ctx, appID, userID)
		if err != nil {
			return err
		}
		cur := u.Session
		if cur.ID != sessionID || !cur.RevokePending {
			return nil
		}
		next := cur
		next.RevokePending = false
		if next.Meeting != meetsync.SideLoggingOut {
			next.Deadline = time.Time{}
		}
		return s.change(ctx, u, sessionEvent(u, meetsync.TypeSessionDiverged, next, map[string]any{
			"kind": "logout_not_revoked", "action": "meeting credentials revoked at the platform after it recovered", "healed": true}, s.now()))
	})
}

// correctStatus makes the user's status agree with the platform's word
// once its grace period is over (reason "reconciled"): the devices that
// still say the user is in a meeting the platform says they left go IDLE;
// a meeting the platform says they joined that no device reports is
// reported on PlatformDeviceID, in the meeting since the platform's join
// (on the platform's clock, as its later leave will be).
func (s *Service) correctStatus(ctx context.Context, appID, userID string) error {
	return retry(ctx, func() error {
		u, err := s.user(ctx, appID, userID)
		if err != nil {
			return err
		}
		now := s.now()
		if now.Before(u.Platform.CheckAt) {
			return nil
		}
		var evs []*meetsync.Event
		for _, d := range u.ContradictedDevices() {
			evs = append(evs, meetsync.NewStatusEvent(appID, userID, d.DeviceID, meetsync.StatusIdle, meetsync.ReasonReconciled, d.MeetingNum, meetsync.SourceSystem, now))
		}
		if u.UnreportedMeeting() {
			ev := meetsync.NewStatusEvent(appID, userID, meetsync.PlatformDeviceID, meetsync.StatusInMeeting,
				meetsync.ReasonReconciled, u.Platform.MeetingNum, meetsync.SourceSystem, now)
			ev.OccurredAt = u.Platform.Since
			if d := u.Device(meetsync.PlatformDeviceID); d != nil && !ev.OccurredAt.After(d.Since) {
				ev.OccurredAt = d.Since.Add(time.Millisecond) // after its last report, or this one would be stale
			}
			evs = append(evs, ev)
		}
		if len(evs) == 0 {
			return nil
		}
		s.log.Info("reconciler corrected a meeting status", "app", appID, "user", userID, "devices", len(evs))
		return s.change(ctx, u, evs...)
	})
}

// forceLogoutAgain handles a business logout after which a device or the
// platform still shows the user in a meeting: the meeting credentials are
// revoked again and the devices told again, and it is reported.
func (s *Service) forceLogoutAgain(ctx context.Context, appID, userID, sessionID string) error {
	prov, _, err := s.Provider(ctx, appID)
	if err != nil {
		return err
	}
	u, err := s.user(ctx, appID, userID)
	if err != nil {
		return err
	}
	if u.Session.ID != sessionID || u.Session.Business != meetsync.SideLoggedOut || u.Session.CheckAt.IsZero() {
		return nil
	}
	active := u.Status.Active() || u.Platform.InMeeting
	var revokeErr error
	if active {
		revokeErr = s.revoke(ctx, prov, appID, userID)
		var devs []string
		for _, d := range u.Devices {
			if d.Status.Active() && d.DeviceID != "" {
				devs = append(devs, d.DeviceID)
			}
		}
		if err := s.pushCommands(ctx, u, sessionID+"/again", devs, meetsync.CommandLogout,
			map[string]any{"session_id": sessionID, "reason": "forced: still active after logout"}, s.now()); err != nil {
			return err
		}
	}
	return retry(ctx, func() error {
		u, err := s.user(ctx, appID, userID)
		if err != nil {
			return err
		}
		cur := u.Session
		if cur.ID != sessionID || cur.CheckAt.IsZero() {
			return nil
		}
		next := cur
		next.CheckAt = time.Time{}
		if !(u.Status.Active() || u.Platform.InMeeting) {
			// Settled by itself since: nothing to report, only the check to clear.
			return s.change(ctx, u, sessionEvent(u, meetsync.TypeSessionDiverged, next, map[string]any{
				"kind": "none", "action": "checked after logout: meeting side inactive", "healed": true}, s.now()))
		}
		data := map[string]any{"kind": "active_after_logout", "action": "logout forced again", "meeting_status": u.Status.Name(),
			"platform_in_meeting": u.Platform.InMeeting, "platform_revoked": revokeErr == nil, "healed": revokeErr == nil}
		if revokeErr != nil {
			next.RevokePending, next.Deadline = true, s.now()
		}
		return s.change(ctx, u, sessionEvent(u, meetsync.TypeSessionDiverged, next, data, s.now()))
	})
}

// PurgeAll deletes, for every app with a retention, the events and
// attempts older than it (in chunks), and returns how many events went.
func (s *Service) PurgeAll(ctx context.Context) (int, error) {
	apps, err := s.cfg.Store.AppList(ctx)
	if err != nil {
		return 0, err
	}
	total := 0
	for _, a := range apps {
		set, err := s.cfg.Sessions.AppSettingsGet(ctx, a.ID)
		if err != nil {
			return total, err
		}
		if set.Retention == 0 {
			continue
		}
		before := s.now().Add(-time.Duration(set.Retention))
		for {
			n, err := s.cfg.Purger.PurgeBefore(ctx, a.ID, before, 2000)
			total += n
			if err != nil {
				return total, err
			}
			if n < 2000 {
				break
			}
		}
	}
	if total > 0 {
		s.log.Info("retention purge", "events", total)
	}
	return total, nil
}

// ReconcileAll compares, for every app, the platform's meetings with the
// users meetsync shows in one: a user the platform does not list gets a
// platform presence "left" (and so a correction after the grace period).
func (s *Service) ReconcileAll(ctx context.Context) error {
	apps, err := s.cfg.Store.AppList(ctx)
	if err != nil {
		return err
	}
	for _, a := range apps {
		if err := s.Reconcile(ctx, a.ID); err != nil {
			if ctx.Err() != nil {
				return err
			}
			s.log.Warn("reconcile app", "app", a.ID, "err", meetsync.ErrorMessage(err))
		}
	}
	return nil
}

// Reconcile compares one app's active users with the platform.
func (s *Service) Reconcile(ctx context.Context, appID string) error {
	prov, set, err := s.Provider(ctx, appID)
	if err != nil {
		return err
	}
	meetings := map[string]*meetsync.PlatformMeeting{}
	for _, st := range meetsync.ActiveStatuses() {
		st := st
		after := ""
		for {
			users, err := s.cfg.Store.UserList(ctx, meetsync.UserListParams{AppID: appID, Status: &st, After: after, Limit: 500})
			if err != nil {
				return err
			}
			for _, u := range users {
				if err := s.reconcileUser(ctx, prov, set, u, meetings); err != nil {
					return err
				}
			}
			if len(users) < 500 {
				break
			}
			after = users[len(users)-1].UserID
		}
	}
	return nil
}

func (s *Service) reconcileUser(ctx context.Context, prov meetsync.Provider, set *meetsync.AppSettings, u *meetsync.UserState, meetings map[string]*meetsync.PlatformMeeting) error {
	now := s.now()
	if u.MeetingNum == "" || u.Platform.InMeeting && u.Platform.MeetingNum == u.MeetingNum ||
		!u.Platform.InMeeting && u.Platform.MeetingNum == u.MeetingNum && u.Platform.CheckAt.After(now) {
		return nil // the platform's word is recent, or a correction is already pending
	}
	a, err := s.cfg.Sessions.AccountGet(ctx, u.AppID, u.UserID)
	if meetsync.ErrorCode(err) == meetsync.ENOTFOUND {
		return nil
	} else if err != nil {
		return err
	}
	m, ok := meetings[u.MeetingNum]
	if !ok {
		m, err = prov.Meeting(ctx, u.MeetingNum)
		if meetsync.ErrorCode(err) == meetsync.ENOTFOUND {
			m, err = &meetsync.PlatformMeeting{MeetingNum: u.MeetingNum, State: meetsync.MeetingStateEnded}, nil
		}
		if err != nil {
			return err
		}
		meetings[u.MeetingNum] = m
	}
	member := m.State == meetsync.MeetingStateStarted && containsString(m.Members, a.UserUUID)
	if member {
		return nil
	}
	return retry(ctx, func() error {
		cur, err := s.user(ctx, u.AppID, u.UserID)
		if err != nil {
			return err
		}
		if !cur.Status.Active() || cur.MeetingNum != u.MeetingNum || cur.Platform.Since.After(now) {
			return nil
		}
		ev := meetsync.NewServerEvent(u.AppID, u.UserID, meetsync.TypeSessionDiverged, meetsync.SourceSystem, map[string]any{
			"kind": "not_in_platform_meeting", "meeting_num": u.MeetingNum, "platform_meeting_state": m.State,
			"meeting_status": cur.Status.Name(), "action": "status corrected after the grace period unless the device reports again",
			"correct_at": now.Add(time.Duration(set.ReconcileGrace))}, now)
		ev.Effects = &meetsync.EventEffects{Member: &meetsync.Membership{MeetingNum: u.MeetingNum, Joined: false, CheckAt: now.Add(time.Duration(set.ReconcileGrace))}}
		req := &meetsync.AppendRequest{AppID: u.AppID, Events: []*meetsync.Event{ev},
			ExpectSession: &meetsync.SessionExpectation{UserID: u.UserID, Version: cur.Session.Version}}
		return appendChange(ctx, s.cfg.Appender, req)
	})
}

func containsString(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// CallbackResult is what a platform callback became.
type CallbackResult struct {
	Events    int  // the events it was stored as
	Duplicate bool // its requestId was processed before: nothing new was stored
}

// HandleCallback verifies a meeting-platform callback for an app and
// stores what it reports, once per platform requestId: member joins and
// leaves update the user's platform presence (a leave starts the grace
// period after which a device still in the meeting is corrected); invites
// and their cancellations drive the invitations (platformInvitation): the
// devices of an invitee the platform invited get the invitation command
// (pushInvitation, as after POST /v1/invitations), those of an invitee
// whose invitation the platform canceled are told (tellClosed).
// A repeat of a requestId already processed (the platform sends a callback
// again when it missed the answer) stores nothing and is answered as the
// first time, with Duplicate set. EUNAUTHORIZED for a bad signature,
// ENOTFOUND for an app without that provider.
func (s *Service) HandleCallback(ctx context.Context, kind, appID string, header http.Header, body []byte) (CallbackResult, error) {
	if _, err := s.cfg.Store.AppGet(ctx, appID); err != nil {
		return CallbackResult{}, err
	}
	prov, set, err := s.Provider(ctx, appID)
	if err != nil {
		return CallbackResult{}, err
	}
	if prov.Kind() != kind {
		return CallbackResult{}, meetsync.Errorf(meetsync.ENOTFOUND, "app %s does not use the %s provider", appID, kind)
	}
	now := s.now()
	cb, err := prov.VerifyCallback(header, body, now)
	if err != nil {
		return CallbackResult{}, err
	}
	if len(cb.Events) == 0 {
		return CallbackResult{}, nil
	}
	h := sha256.Sum256([]byte(kind + "\x00" + cb.RequestID))
	base := "cb_" + hex.EncodeToString(h[:16])
	// The events are made from what the store holds (accounts, open
	// invitations); an invitation that changes before they are stored
	// (ECONFLICT: its compare-and-set failed) makes them again.
	var evs []*meetsync.Event
	var req *meetsync.AppendRequest
	err = retry(ctx, func() error {
		evs = make([]*meetsync.Event, 0, len(cb.Events))
		for i, pe := range cb.Events {
			userID := meetsync.SystemUserID
			if pe.UserUUID != "" {
				a, err := s.cfg.Sessions.AccountByUUID(ctx, appID, kind, pe.UserUUID)
				if err == nil {
					userID = a.UserID
				} else if meetsync.ErrorCode(err) != meetsync.ENOTFOUND {
					return err
				}
			}
			occurred := pe.OccurredAt
			if occurred.IsZero() {
				occurred = now
			}
			if (pe.Type == meetsync.TypeInvitationCreated || pe.Type == meetsync.TypeInvitationCanceled) && s.cfg.Invitations != nil {
				invEvs, ok, err := s.platformInvitation(ctx, appID, kind, pe, userID, now)
				if err != nil {
					return err
				}
				if ok {
					for j, ev := range invEvs {
						// The first keeps the id a plain platform event would
						// have had, so any replay of this callback is caught.
						ev.ID, ev.CallerID = base+"_"+strconv.Itoa(i), true
						if j > 0 {
							ev.ID += "_" + strconv.Itoa(j)
						}
						ev.OccurredAt = occurred.UTC()
					}
					evs = append(evs, invEvs...)
					continue
				}
				pe.Type = meetsync.TypeMeetingPlatformEvent
			}
			ev := meetsync.NewServerEvent(appID, userID, pe.Type, meetsync.SourcePlatform, pe.Data, now)
			ev.OccurredAt = occurred.UTC()
			ev.ID, ev.CallerID = base+"_"+strconv.Itoa(i), true
			if userID != meetsync.SystemUserID && pe.MeetingNum != "" {
				switch pe.Type {
				case meetsync.TypeMeetingMemberJoined:
					ev.Effects = &meetsync.EventEffects{Member: &meetsync.Membership{MeetingNum: pe.MeetingNum, Joined: true,
						CheckAt: now.Add(time.Duration(set.ReconcileGrace))}}
				case meetsync.TypeMeetingMemberLeft:
					ev.Effects = &meetsync.EventEffects{Member: &meetsync.Membership{MeetingNum: pe.MeetingNum, Joined: false,
						CheckAt: now.Add(time.Duration(set.ReconcileGrace))}}
				}
			}
			evs = append(evs, ev)
		}
		req = &meetsync.AppendRequest{AppID: appID, Events: evs}
		err := s.cfg.Appender.Append(ctx, req)
		if meetsync.ErrorCode(err) == meetsync.ECONFLICT {
			return staleVersion{err}
		}
		return err
	})
	if err != nil {
		return CallbackResult{}, err
	}
	if req.Results[0].Duplicate {
		s.log.Info("meeting platform callback repeated: already stored", "app", appID, "provider", kind, "request_id", cb.RequestID)
		return CallbackResult{Events: len(evs), Duplicate: true}, nil
	}
	// The invitations the platform created ring on the invitee's devices
	// as those created through the API do; those it canceled are closed:
	// the invitee's devices are told as after a cancel through the API.
	for i, ev := range evs {
		if ev.Effects == nil || ev.Effects.Invitation == nil || i >= len(req.Results) || req.Results[i].Duplicate {
			continue
		}
		inv := ev.Effects.Invitation
		switch ev.Type {
		case meetsync.TypeInvitationCreated:
			u, err := s.user(ctx, appID, inv.Invitee)
			if err == nil {
				err = s.pushInvitation(ctx, u, inv, now)
			}
			if err != nil {
				s.log.Warn("invitation command not pushed", "app", appID, "invitation", inv.ID, "err", err)
			}
		case meetsync.TypeInvitationCanceled:
			s.tellClosed(ctx, inv)
		}
	}
	s.Wake()
	return CallbackResult{Events: len(evs)}, nil
}
