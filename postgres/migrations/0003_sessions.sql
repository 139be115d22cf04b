-- Sessions (the SQLite store's 0003): the user's session, platform
-- presence and open invitations (JSON, as the SQLite store keeps them) with
-- a due time for the session engine, app settings, meeting accounts, client
-- tokens and device commands.
--
-- due_at is NULL when the session engine has nothing to do for the user;
-- the partial index holds only the users it must look at.
ALTER TABLE users ADD COLUMN extra bytea NOT NULL DEFAULT '\x7b7d';
ALTER TABLE users ADD COLUMN due_at timestamptz;
CREATE INDEX users_due ON users(due_at) WHERE due_at IS NOT NULL;

CREATE TABLE app_settings (
    app_id     text COLLATE "C" PRIMARY KEY REFERENCES apps(id),
    settings   bytea NOT NULL,
    updated_at timestamptz
);

CREATE TABLE meeting_accounts (
    app_id     text COLLATE "C" NOT NULL,
    user_id    text COLLATE "C" NOT NULL,
    provider   text COLLATE "C" NOT NULL,
    app_key    text NOT NULL,
    user_uuid  text COLLATE "C" NOT NULL,
    user_token text NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (app_id, user_id)
);
CREATE UNIQUE INDEX meeting_accounts_uuid ON meeting_accounts(app_id, provider, user_uuid);

CREATE TABLE client_tokens (
    id         text COLLATE "C" PRIMARY KEY,
    app_id     text COLLATE "C" NOT NULL,
    user_id    text COLLATE "C" NOT NULL,
    device_id  text COLLATE "C" NOT NULL,
    session_id text COLLATE "C" NOT NULL,
    hash       bytea NOT NULL UNIQUE,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz
);
CREATE INDEX client_tokens_user ON client_tokens(app_id, user_id, session_id);

CREATE TABLE commands (
    id         text COLLATE "C" PRIMARY KEY,
    app_id     text COLLATE "C" NOT NULL,
    user_id    text COLLATE "C" NOT NULL,
    device_id  text COLLATE "C" NOT NULL,
    session_id text COLLATE "C" NOT NULL,
    type       text COLLATE "C" NOT NULL,
    data       bytea NOT NULL,
    created_at timestamptz NOT NULL,
    acked_at   timestamptz,
    ack_ok     boolean NOT NULL DEFAULT false,
    ack_error  text NOT NULL DEFAULT ''
);
CREATE INDEX commands_device ON commands(app_id, user_id, device_id, created_at);
CREATE INDEX commands_session ON commands(app_id, user_id, session_id);
