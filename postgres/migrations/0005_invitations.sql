-- Invitations (the SQLite store's 0005): one row per invitee, written in
-- the transaction of the invitation.* event that reports each change,
-- compare-and-set on version (the append locks the row first).
CREATE TABLE invitations (
    id          text COLLATE "C" PRIMARY KEY,
    app_id      text COLLATE "C" NOT NULL,
    group_id    text COLLATE "C" NOT NULL,
    meeting_num text COLLATE "C" NOT NULL,
    inviter     text COLLATE "C" NOT NULL,
    invitee     text COLLATE "C" NOT NULL,
    subject     text NOT NULL,
    password    text NOT NULL,
    state       text NOT NULL,
    reason      text NOT NULL,
    source      text NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    version     bigint NOT NULL
);
CREATE INDEX invitations_app ON invitations(app_id, id);
CREATE INDEX invitations_invitee ON invitations(app_id, invitee, meeting_num);
CREATE INDEX invitations_inviter ON invitations(app_id, inviter);
