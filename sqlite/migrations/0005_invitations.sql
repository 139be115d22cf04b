-- Invitations: one row per invitee, written in the transaction of the
-- invitation.* event that reports each change.
CREATE TABLE invitations (
    id          TEXT PRIMARY KEY,
    app_id      TEXT NOT NULL,
    group_id    TEXT NOT NULL,
    meeting_num TEXT NOT NULL,
    inviter     TEXT NOT NULL,
    invitee     TEXT NOT NULL,
    subject     TEXT NOT NULL,
    password    TEXT NOT NULL,
    state       TEXT NOT NULL,
    reason      TEXT NOT NULL,
    source      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    version     INTEGER NOT NULL
);
CREATE INDEX invitations_app ON invitations(app_id, id);
CREATE INDEX invitations_invitee ON invitations(app_id, invitee, meeting_num);
CREATE INDEX invitations_inviter ON invitations(app_id, inviter);
