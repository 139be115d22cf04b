-- Apps, API keys, the event log, per-user state (with its devices), idempotency keys.
--
-- Identifiers and event types use the "C" collation: comparisons and ORDER BY
-- are bytewise, as in the SQLite store (user list cursors, type prefix ranges),
-- whatever the database's default collation is.
CREATE TABLE apps (
    id         text COLLATE "C" PRIMARY KEY,
    name       text COLLATE "C" NOT NULL UNIQUE,
    created_at timestamptz NOT NULL
);

-- The feed position counter of each app. An append transaction takes the
-- app's row lock (UPDATE … RETURNING) just before it writes its events and
-- holds it until it commits, so positions are handed out in commit order:
-- a transaction that gets positions after another one can only do so once
-- that one has committed (and is visible). A reader that has seen position N
-- can therefore never later find a committed event of that app below N.
-- A rolled-back transaction rolls its counter update back too: no gaps.
CREATE TABLE feeds (
    app_id text COLLATE "C" PRIMARY KEY,
    pos    bigint NOT NULL DEFAULT 0
);

CREATE TABLE api_keys (
    id         text COLLATE "C" PRIMARY KEY,
    app_id     text COLLATE "C" NOT NULL REFERENCES apps(id),
    prefix     text NOT NULL,
    hash       bytea NOT NULL UNIQUE,
    created_at timestamptz NOT NULL,
    revoked_at timestamptz
);
CREATE INDEX api_keys_app ON api_keys(app_id);

-- pos is the event's feed position in its app (see feeds). A user's events
-- (and the (device, client_seq) duplicate check, newest first) read
-- events_user. Server-made event ids are unique by construction; ids
-- supplied by callers are indexed in event_ids. data is kept byte for byte.
CREATE TABLE events (
    app_id      text COLLATE "C" NOT NULL,
    pos         bigint NOT NULL,
    id          text COLLATE "C" NOT NULL,
    type        text COLLATE "C" NOT NULL,
    user_id     text COLLATE "C" NOT NULL,
    seq         bigint NOT NULL,
    occurred_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    source      text NOT NULL,
    device_id   text COLLATE "C" NOT NULL DEFAULT '',
    client_seq  bigint NOT NULL DEFAULT 0,
    stale       boolean NOT NULL DEFAULT false,
    data        bytea NOT NULL,
    PRIMARY KEY (app_id, pos)
);
CREATE INDEX events_user ON events(app_id, user_id, pos);

CREATE TABLE event_ids (
    app_id text COLLATE "C" NOT NULL,
    id     text COLLATE "C" NOT NULL,
    pos    bigint NOT NULL,
    PRIMARY KEY (app_id, id)
);

-- The current state of a user, with its devices' states (a small JSON
-- array) in the same row. Append transactions lock the rows of their users
-- (SELECT … FOR UPDATE, in key order), so replicas appending for the same
-- user take turns and seqs stay gap-free.
CREATE TABLE users (
    app_id        text COLLATE "C" NOT NULL,
    user_id       text COLLATE "C" NOT NULL,
    last_seq      bigint NOT NULL,
    status        integer NOT NULL,
    reason        integer NOT NULL,
    meeting_num   text NOT NULL,
    device_id     text COLLATE "C" NOT NULL,
    since         timestamptz,
    status_seq    bigint NOT NULL,
    business_side text NOT NULL,
    meeting_side  text NOT NULL,
    updated_at    timestamptz NOT NULL,
    devices       bytea NOT NULL,
    PRIMARY KEY (app_id, user_id)
);
CREATE INDEX users_status ON users(app_id, status, user_id);

-- key is bytea: an Idempotency-Key header may hold any bytes.
CREATE TABLE idempotency_keys (
    app_id       text COLLATE "C" NOT NULL,
    key          bytea NOT NULL,
    request_hash bytea NOT NULL,
    results      bytea NOT NULL,
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (app_id, key)
);
