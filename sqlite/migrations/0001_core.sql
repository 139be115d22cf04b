-- Apps, API keys, the event log, per-user state (with its devices), idempotency keys.
CREATE TABLE apps (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    app_id     TEXT NOT NULL REFERENCES apps(id),
    prefix     TEXT NOT NULL,
    hash       BLOB NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX api_keys_app ON api_keys(app_id);

-- pos is the feed position: AUTOINCREMENT so a position is never reused,
-- and a single writer makes position order the commit order. Few indexes,
-- because each one costs a B-tree insert per event: the feed reads by
-- (app_id, pos); a user's events, and the (device, client_seq) duplicate
-- check, read the covering (app_id, user_id, seq, device_id, client_seq)
-- index newest first. Server-made event ids are unique by construction;
-- ids supplied by callers are indexed in event_ids.
CREATE TABLE events (
    pos         INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id      TEXT NOT NULL,
    id          TEXT NOT NULL,
    type        TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    occurred_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    source      TEXT NOT NULL,
    device_id   TEXT NOT NULL DEFAULT '',
    client_seq  INTEGER NOT NULL DEFAULT 0,
    stale       INTEGER NOT NULL DEFAULT 0,
    data        BLOB NOT NULL
);
CREATE INDEX events_app_pos ON events(app_id, pos);
CREATE INDEX events_user ON events(app_id, user_id, seq, device_id, client_seq);

CREATE TABLE event_ids (
    app_id TEXT NOT NULL,
    id     TEXT NOT NULL,
    pos    INTEGER NOT NULL,
    PRIMARY KEY (app_id, id)
) WITHOUT ROWID;

-- The current state of a user, with its devices' states (a small JSON
-- array) in the same row: one row to read and write per user and transaction.
CREATE TABLE users (
    app_id        TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    last_seq      INTEGER NOT NULL,
    status        INTEGER NOT NULL,
    reason        INTEGER NOT NULL,
    meeting_num   TEXT NOT NULL,
    device_id     TEXT NOT NULL,
    since         INTEGER NOT NULL,
    status_seq    INTEGER NOT NULL,
    business_side TEXT NOT NULL,
    meeting_side  TEXT NOT NULL,
    updated_at    INTEGER NOT NULL,
    devices       BLOB NOT NULL DEFAULT '[]',
    PRIMARY KEY (app_id, user_id)
) WITHOUT ROWID;
CREATE INDEX users_status ON users(app_id, status, user_id);

CREATE TABLE idempotency_keys (
    app_id       TEXT NOT NULL,
    key          TEXT NOT NULL,
    request_hash BLOB NOT NULL,
    results      BLOB NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (app_id, key)
) WITHOUT ROWID;
