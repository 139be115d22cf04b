-- Sessions: the user's session and platform presence (JSON) with a due
-- time for the session engine, app settings, meeting accounts, client
-- tokens and device commands.
ALTER TABLE users ADD COLUMN extra BLOB NOT NULL DEFAULT '{}';
ALTER TABLE users ADD COLUMN due_at INTEGER NOT NULL DEFAULT 0;
CREATE INDEX users_due ON users(due_at) WHERE due_at > 0;

CREATE TABLE app_settings (
    app_id     TEXT PRIMARY KEY REFERENCES apps(id),
    settings   BLOB NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE meeting_accounts (
    app_id     TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    provider   TEXT NOT NULL,
    app_key    TEXT NOT NULL,
    user_uuid  TEXT NOT NULL,
    user_token TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (app_id, user_id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX meeting_accounts_uuid ON meeting_accounts(app_id, provider, user_uuid);

CREATE TABLE client_tokens (
    id         TEXT PRIMARY KEY,
    app_id     TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    session_id TEXT NOT NULL,
    hash       BLOB NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX client_tokens_user ON client_tokens(app_id, user_id, session_id);

CREATE TABLE commands (
    id         TEXT PRIMARY KEY,
    app_id     TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    session_id TEXT NOT NULL,
    type       TEXT NOT NULL,
    data       BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    acked_at   INTEGER,
    ack_ok     INTEGER NOT NULL DEFAULT 0,
    ack_error  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX commands_device ON commands(app_id, user_id, device_id, created_at);
CREATE INDEX commands_session ON commands(app_id, user_id, session_id);
