-- Apps, API keys, the event log, per-user and per-device state, idempotency keys.
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
-- and a single writer makes position order the commit order.
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
CREATE UNIQUE INDEX events_app_id ON events(app_id, id);
CREATE UNIQUE INDEX events_user_seq ON events(app_id, user_id, seq);
CREATE UNIQUE INDEX events_device_seq ON events(app_id, user_id, device_id, client_seq) WHERE client_seq > 0;
CREATE INDEX events_app_pos ON events(app_id, pos);

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
    PRIMARY KEY (app_id, user_id)
) WITHOUT ROWID;
CREATE INDEX users_status ON users(app_id, status, user_id);

CREATE TABLE devices (
    app_id          TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    device_id       TEXT NOT NULL,
    last_client_seq INTEGER NOT NULL,
    status          INTEGER NOT NULL,
    reason          INTEGER NOT NULL,
    meeting_num     TEXT NOT NULL,
    since           INTEGER NOT NULL,
    status_seq      INTEGER NOT NULL,
    last_seen_at    INTEGER NOT NULL,
    PRIMARY KEY (app_id, user_id, device_id)
) WITHOUT ROWID;

CREATE TABLE idempotency_keys (
    app_id       TEXT NOT NULL,
    key          TEXT NOT NULL,
    request_hash BLOB NOT NULL,
    results      BLOB NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (app_id, key)
) WITHOUT ROWID;
