package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/meetsync/meetsync"
)

var _ meetsync.InvitationStore = (*DB)(nil)

const invitationCols = "id, app_id, group_id, meeting_num, inviter, invitee, subject, password, state, reason, source, created_at, updated_at, expires_at, version"

func scanInvitation(sc scanner) (*meetsync.Invitation, error) {
	var v meetsync.Invitation
	var created, updated, expires int64
	if err := sc.Scan(&v.ID, &v.AppID, &v.GroupID, &v.MeetingNum, &v.Inviter, &v.Invitee, &v.Subject, &v.Password, &v.State,
		&v.Reason, &v.Source, &created, &updated, &expires, &v.Version); err != nil {
		return nil, err
	}
	v.CreatedAt, v.UpdatedAt, v.ExpiresAt = fromMicros(created), fromMicros(updated), fromMicros(expires)
	return &v, nil
}

// checkInvitations verifies, before a request changes anything, that each
// invitation it writes is at the version the writer read.
func (at *appendTx) checkInvitations(req *meetsync.AppendRequest) (bool, error) {
	for _, ev := range req.Events {
		if ev.Effects == nil || ev.Effects.Invitation == nil {
			continue
		}
		inv := ev.Effects.Invitation
		var cur int64
		err := at.tx.QueryRowContext(at.ctx, "SELECT version FROM invitations WHERE id = ? AND app_id = ?", inv.ID, req.AppID).Scan(&cur)
		if errors.Is(err, sql.ErrNoRows) {
			cur = 0
		} else if err != nil {
			return false, err
		}
		if cur != inv.Version-1 {
			req.Err = meetsync.Errorf(meetsync.ECONFLICT, "invitation %s changed concurrently; try again", inv.ID)
			return false, nil
		}
	}
	return true, nil
}

func (at *appendTx) writeInvitation(inv *meetsync.Invitation) error {
	_, err := at.tx.ExecContext(at.ctx, `INSERT INTO invitations (`+invitationCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET state = excluded.state, reason = excluded.reason, updated_at = excluded.updated_at,
		expires_at = excluded.expires_at, version = excluded.version`,
		inv.ID, inv.AppID, inv.GroupID, inv.MeetingNum, inv.Inviter, inv.Invitee, inv.Subject, inv.Password, inv.State, inv.Reason,
		inv.Source, micros(inv.CreatedAt), micros(inv.UpdatedAt), micros(inv.ExpiresAt), inv.Version)
	return err
}

// InvitationGet returns an invitation of the app. ENOTFOUND.
func (db *DB) InvitationGet(ctx context.Context, appID, id string) (*meetsync.Invitation, error) {
	v, err := scanInvitation(db.queryRow(ctx, "SELECT "+invitationCols+" FROM invitations WHERE id = ? AND app_id = ?", id, appID))
	if err != nil {
		return nil, interpretError(err, "invitation "+id)
	}
	return v, nil
}

func (db *DB) queryInvitations(ctx context.Context, q string, args ...any) ([]*meetsync.Invitation, error) {
	rows, err := db.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list invitations: %w", err)
	}
	defer rows.Close()
	var out []*meetsync.Invitation
	for rows.Next() {
		v, err := scanInvitation(rows)
		if err != nil {
			return nil, fmt.Errorf("list invitations: %w", err)
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// InvitationList returns invitations, newest first.
func (db *DB) InvitationList(ctx context.Context, p meetsync.InvitationListParams) ([]*meetsync.Invitation, error) {
	q := "SELECT " + invitationCols + " FROM invitations WHERE app_id = ?"
	args := []any{p.AppID}
	if p.UserID != "" {
		q += " AND (inviter = ? OR invitee = ?)"
		args = append(args, p.UserID, p.UserID)
	}
	if p.State != "" {
		q += " AND state = ?"
		args = append(args, p.State)
	}
	if p.After != "" {
		q += " AND id < ?"
		args = append(args, p.After)
	}
	if p.Limit <= 0 {
		p.Limit = 100
	}
	return db.queryInvitations(ctx, q+" ORDER BY id DESC LIMIT ?", append(args, p.Limit)...)
}

// InvitationsOpenFor returns the open invitations of an invitee to a meeting.
func (db *DB) InvitationsOpenFor(ctx context.Context, appID, invitee, meetingNum string) ([]*meetsync.Invitation, error) {
	return db.queryInvitations(ctx, "SELECT "+invitationCols+` FROM invitations WHERE app_id = ? AND invitee = ? AND meeting_num = ?
		AND state IN ('waiting_call', 'calling', 'accepted') ORDER BY id`, appID, invitee, meetingNum)
}

// InvitationCommandsSupersede resolves an invitation's invitation commands
// still pending on its invitee's devices: they are found among the
// invitee's pending invitation commands by the invitation_id of their data,
// and marked acknowledged (not ok, note) unless a device acknowledged them
// meanwhile.
func (db *DB) InvitationCommandsSupersede(ctx context.Context, appID, invitee, invitationID, note string, at time.Time) ([]*meetsync.Command, error) {
	tx, err := db.writer.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("supersede invitation commands: %w", err)
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, "SELECT id, data FROM commands WHERE app_id = ? AND user_id = ? AND type = ? AND acked_at IS NULL",
		appID, invitee, meetsync.CommandInvitation)
	if err != nil {
		return nil, fmt.Errorf("supersede invitation commands: %w", err)
	}
	var ids []any
	for rows.Next() {
		var id string
		var data []byte
		if err := rows.Scan(&id, &data); err != nil {
			rows.Close()
			return nil, fmt.Errorf("supersede invitation commands: %w", err)
		}
		if meetsync.CommandInvitationID(data) == invitationID {
			ids = append(ids, id)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("supersede invitation commands: %w", err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	args := append([]any{micros(at), note, appID, invitee}, ids...)
	rows, err = tx.QueryContext(ctx, `UPDATE commands SET acked_at = ?, ack_ok = 0, ack_error = ?
		WHERE app_id = ? AND user_id = ? AND acked_at IS NULL AND id IN (?`+strings.Repeat(", ?", len(ids)-1)+`) RETURNING `+commandCols, args...)
	if err != nil {
		return nil, fmt.Errorf("supersede invitation commands: %w", err)
	}
	var out []*meetsync.Command
	for rows.Next() {
		c, err := scanCommand(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("supersede invitation commands: %w", err)
		}
		out = append(out, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("supersede invitation commands: %w", err)
	}
	if err := db.commit(tx); err != nil {
		return nil, fmt.Errorf("supersede invitation commands: %w", err)
	}
	slices.SortFunc(out, func(a, b *meetsync.Command) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}
