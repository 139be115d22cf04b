-- The append transaction writes only what it must (see sqlite/backlog.go):
-- its events rows, at the end of the table. A user's row, the per-user
-- event index and the per-app feed index follow in bulk, a few times a
-- second, from the backlog the store keeps in memory; opening the store
-- replays from the log whatever a crash left unwritten. An index would
-- cost B-tree pages in every append transaction, so both indexes become
-- tables the store fills itself, and the events table is rebuilt without
-- its indexes and without AUTOINCREMENT (the store hands out positions;
-- store_meta's next_pos keeps one from being given twice).
CREATE TABLE events_new (
    pos            INTEGER PRIMARY KEY,
    app_id         TEXT NOT NULL,
    id             TEXT NOT NULL,
    type           TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    seq            INTEGER NOT NULL,
    occurred_at    INTEGER NOT NULL,
    received_at    INTEGER NOT NULL,
    source         TEXT NOT NULL,
    device_id      TEXT NOT NULL DEFAULT '',
    client_seq     INTEGER NOT NULL DEFAULT 0,
    stale          INTEGER NOT NULL DEFAULT 0,
    data           BLOB NOT NULL,
    schema_version INTEGER NOT NULL DEFAULT 0
);
INSERT INTO events_new (pos, app_id, id, type, user_id, seq, occurred_at, received_at, source, device_id, client_seq, stale, data, schema_version)
    SELECT pos, app_id, id, type, user_id, seq, occurred_at, received_at, source, device_id, client_seq, stale, data, schema_version FROM events;

CREATE TABLE store_meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
-- Every event up to materialized_pos is in users and user_events, every
-- event up to feed_pos in app_events; no position below next_pos is given.
INSERT INTO store_meta (key, value) SELECT 'materialized_pos', coalesce(max(pos), 0) FROM events;
INSERT INTO store_meta (key, value) SELECT 'feed_pos', coalesce(max(pos), 0) FROM events;
INSERT INTO store_meta (key, value)
    SELECT 'next_pos', max(coalesce((SELECT max(pos) FROM events), 0), coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)) + 1;

DROP TABLE events;
ALTER TABLE events_new RENAME TO events;

-- The feed of each app: (app_id, pos) for the events up to feed_pos.
CREATE TABLE app_events (
    app_id TEXT NOT NULL,
    pos    INTEGER NOT NULL,
    PRIMARY KEY (app_id, pos)
) WITHOUT ROWID;
INSERT INTO app_events (app_id, pos) SELECT app_id, pos FROM events;

-- A user's events (up to materialized_pos): its feed, and the
-- (device, client_seq) duplicate check.
CREATE TABLE user_events (
    app_id     TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    pos        INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    device_id  TEXT NOT NULL,
    client_seq INTEGER NOT NULL,
    PRIMARY KEY (app_id, user_id, pos)
) WITHOUT ROWID;
INSERT INTO user_events (app_id, user_id, pos, seq, device_id, client_seq)
    SELECT app_id, user_id, pos, seq, device_id, client_seq FROM events;

-- The position of the newest event a users row reflects.
ALTER TABLE users ADD COLUMN state_pos INTEGER NOT NULL DEFAULT 0;
