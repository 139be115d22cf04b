package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/meetsync/meetsync"
)

var _ meetsync.InvitationStore = (*DB)(nil)

const invitationCols = "id, app_id, group_id, meeting_num, inviter, invitee, subject, password, state, reason, source, created_at, updated_at, expires_at, version"

func scanInvitation(row pgx.Row) (*meetsync.Invitation, error) {
	var v meetsync.Invitation
	if err := row.Scan(&v.ID, &v.AppID, &v.GroupID, &v.MeetingNum, &v.Inviter, &v.Invitee, &v.Subject, &v.Password, &v.State,
		&v.Reason, &v.Source, &v.CreatedAt, &v.UpdatedAt, &v.ExpiresAt, &v.Version); err != nil {
		return nil, err
	}
	return &v, nil
}

// checkInvitations verifies, before a request changes anything, that each
// invitation it writes is at the version the writer read (none stored for
// version 1). The rows were locked by prefetch, so the check holds until
// commit; an invitation another replica creates meanwhile makes the
// insert fail on its key and the transaction start again, to find it.
func (at *appendTx) checkInvitations(req *meetsync.AppendRequest) (bool, error) {
	for _, ev := range req.Events {
		if ev.Effects == nil || ev.Effects.Invitation == nil {
			continue
		}
		inv := ev.Effects.Invitation
		cur, err := at.invitationVersion(req.AppID, inv.ID)
		if err != nil {
			return false, err
		}
		if cur != inv.Version-1 {
			req.Err = meetsync.Errorf(meetsync.ECONFLICT, "invitation %s changed concurrently; try again", inv.ID)
			return false, nil
		}
	}
	return true, nil
}

// invitationVersion returns an invitation's version in this transaction
// (0: none), locking its row if prefetch did not.
func (at *appendTx) invitationVersion(appID, id string) (int64, error) {
	k := idemKey{appID, id}
	if v, ok := at.invVersions[k]; ok {
		return v, nil
	}
	var v int64
	err := at.tx.QueryRow(at.ctx, "SELECT version FROM invitations WHERE app_id = $1 AND id = $2 FOR UPDATE", appID, id).Scan(&v)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return 0, err
	}
	at.invVersions[k] = v
	return v, nil
}

// invWrite is an invitation row to write at flush.
type invWrite struct {
	inv    *meetsync.Invitation
	insert bool // no row was stored: insert it
}

// writeInvitation records an invitation change to write at flush. Several
// changes of one invitation in a transaction make one row: the first's
// creation columns, the last's state.
func (at *appendTx) writeInvitation(inv *meetsync.Invitation) {
	k := idemKey{inv.AppID, inv.ID}
	stored := at.invVersions[k]
	at.invVersions[k] = inv.Version
	if w, ok := at.invWrites[k]; ok {
		v := w.inv
		v.State, v.Reason, v.UpdatedAt, v.ExpiresAt, v.Version = inv.State, inv.Reason, inv.UpdatedAt, inv.ExpiresAt, inv.Version
		return
	}
	c := *inv
	at.invWrites[k] = &invWrite{inv: &c, insert: stored == 0}
	at.invOrder = append(at.invOrder, k)
}

// queueInvitationWrites writes the transaction's invitation changes: a
// new invitation is inserted (a plain INSERT: if another replica inserted
// it meanwhile, the unique violation makes the transaction start again and
// its compare-and-set fail), a stored one (locked) gets its new state; the
// columns set at creation stay as they were, as in the SQLite store.
func (at *appendTx) queueInvitationWrites(b *pgx.Batch) {
	n := len(at.invOrder)
	if n == 0 {
		return
	}
	var (
		id, app, group, num, inviter, invitee = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		subject, password, state, reason, src = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		created, updated, expires             = make([]time.Time, n), make([]time.Time, n), make([]time.Time, n)
		version                               = make([]int64, n)
		insert                                = make([]bool, n)
	)
	for i, k := range at.invOrder {
		w := at.invWrites[k]
		v := w.inv
		id[i], app[i], group[i], num[i], inviter[i], invitee[i] = v.ID, v.AppID, v.GroupID, v.MeetingNum, v.Inviter, v.Invitee
		subject[i], password[i], state[i], reason[i], src[i] = v.Subject, v.Password, v.State, v.Reason, v.Source
		created[i], updated[i], expires[i], version[i], insert[i] = v.CreatedAt, v.UpdatedAt, v.ExpiresAt, v.Version, w.insert
	}
	const src15 = `unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
		$10::text[], $11::text[], $12::timestamptz[], $13::timestamptz[], $14::timestamptz[], $15::bigint[], $16::bool[])
		AS v(` + invitationCols + `, ins)`
	args := []any{id, app, group, num, inviter, invitee, subject, password, state, reason, src, created, updated, expires, version, insert}
	b.Queue(`INSERT INTO invitations (`+invitationCols+`) SELECT `+invitationCols+` FROM `+src15+` WHERE v.ins`, args...)
	b.Queue(`UPDATE invitations i SET state = v.state, reason = v.reason, updated_at = v.updated_at, expires_at = v.expires_at, version = v.version
		FROM `+src15+` WHERE NOT v.ins AND i.id = v.id AND i.app_id = v.app_id`, args...)
	at.invWrites, at.invOrder = map[idemKey]*invWrite{}, nil
}

// InvitationGet returns an invitation of the app. ENOTFOUND.
func (db *DB) InvitationGet(ctx context.Context, appID, id string) (*meetsync.Invitation, error) {
	v, err := scanInvitation(db.pool.QueryRow(ctx, "SELECT "+invitationCols+" FROM invitations WHERE id = $1 AND app_id = $2", id, appID))
	if err != nil {
		return nil, interpretError(err, "invitation "+id)
	}
	return v, nil
}

func (db *DB) queryInvitations(ctx context.Context, q string, args ...any) ([]*meetsync.Invitation, error) {
	rows, err := db.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list invitations: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*meetsync.Invitation, error) { return scanInvitation(r) })
	if err != nil {
		return nil, fmt.Errorf("list invitations: %w", err)
	}
	return out, nil
}

// InvitationList returns invitations, newest first (ids sort by creation
// time; bytewise, as in the SQLite store).
func (db *DB) InvitationList(ctx context.Context, p meetsync.InvitationListParams) ([]*meetsync.Invitation, error) {
	q := "SELECT " + invitationCols + " FROM invitations WHERE app_id = $1"
	args := []any{p.AppID}
	if p.UserID != "" {
		args = append(args, p.UserID)
		q += fmt.Sprintf(" AND (inviter = $%d OR invitee = $%d)", len(args), len(args))
	}
	if p.State != "" {
		args = append(args, p.State)
		q += fmt.Sprintf(" AND state = $%d", len(args))
	}
	if p.After != "" {
		args = append(args, p.After)
		q += fmt.Sprintf(" AND id < $%d", len(args))
	}
	if p.Limit <= 0 {
		p.Limit = 100
	}
	args = append(args, p.Limit)
	return db.queryInvitations(ctx, q+fmt.Sprintf(" ORDER BY id DESC LIMIT $%d", len(args)), args...)
}

// InvitationsOpenFor returns the open invitations of an invitee to a meeting.
func (db *DB) InvitationsOpenFor(ctx context.Context, appID, invitee, meetingNum string) ([]*meetsync.Invitation, error) {
	return db.queryInvitations(ctx, "SELECT "+invitationCols+` FROM invitations WHERE app_id = $1 AND invitee = $2 AND meeting_num = $3
		AND state IN ('waiting_call', 'calling', 'accepted') ORDER BY id`, appID, invitee, meetingNum)
}

// InvitationCommandsSupersede resolves an invitation's invitation commands
// still pending on its invitee's devices: they are found among the
// invitee's pending invitation commands by the invitation_id of their data,
// and marked acknowledged (not ok, note) unless a device acknowledged them
// meanwhile (the update's condition, row by row).
func (db *DB) InvitationCommandsSupersede(ctx context.Context, appID, invitee, invitationID, note string, at time.Time) ([]*meetsync.Command, error) {
	rows, err := db.pool.Query(ctx, "SELECT id, data FROM commands WHERE app_id = $1 AND user_id = $2 AND type = $3 AND acked_at IS NULL",
		appID, invitee, meetsync.CommandInvitation)
	if err != nil {
		return nil, fmt.Errorf("supersede invitation commands: %w", err)
	}
	var ids []string
	var id string
	var data []byte
	if _, err := pgx.ForEachRow(rows, []any{&id, &data}, func() error {
		if meetsync.CommandInvitationID(data) == invitationID {
			ids = append(ids, id)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("supersede invitation commands: %w", err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err = db.pool.Query(ctx, `WITH done AS (UPDATE commands SET acked_at = $1, ack_ok = false, ack_error = $2
			WHERE app_id = $3 AND user_id = $4 AND acked_at IS NULL AND id = ANY($5::text[]) RETURNING `+commandCols+`)
		SELECT `+commandCols+` FROM done ORDER BY created_at, id`, at, cleanText(note), appID, invitee, ids)
	if err != nil {
		return nil, fmt.Errorf("supersede invitation commands: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*meetsync.Command, error) { return scanCommand(r) })
	if err != nil {
		return nil, fmt.Errorf("supersede invitation commands: %w", err)
	}
	return out, nil
}
