-- The append transaction writes only what it must (see sqlite/backlog.go):
-- its events rows, at the end of the table. A user's row, the per-user
-- event index and the per-app feed index follow in bulk, a few times a
-- second, from the backlog the store keeps in memory; opening the store
-- replays from the log whatever a crash left unwritten. Indexes on events
-- would cost B-tree pages in every append transaction, so both become
-- tables the store fills itself, a row per run of events rather than per
-- event; 0008 fills them from the old indexes, which 0009 drops.

-- Every event up to materialized_pos is in users and user_chunks, every
-- event up to feed_pos in feed_runs; no position below next_pos is given
-- again.
CREATE TABLE store_meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO store_meta (key, value) SELECT 'materialized_pos', coalesce(max(pos), 0) FROM events;
INSERT INTO store_meta (key, value) SELECT 'feed_pos', coalesce(max(pos), 0) FROM events;
INSERT INTO store_meta (key, value)
    SELECT 'next_pos', max(coalesce((SELECT max(pos) FROM events), 0), coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)) + 1;

-- A user's events, a run at a time: positions first_pos..last_pos, their
-- seqs, devices and client_seqs packed in entries (sqlite/chunk.go).
CREATE TABLE user_chunks (
    app_id    TEXT NOT NULL,
    user_id   TEXT NOT NULL,
    last_pos  INTEGER NOT NULL,
    first_pos INTEGER NOT NULL,
    entries   BLOB NOT NULL,
    PRIMARY KEY (app_id, user_id, last_pos)
) WITHOUT ROWID;
CREATE INDEX user_chunks_pos ON user_chunks(app_id, last_pos);

-- An app's feed: every event from first_pos to last_pos is the app's
-- (no other app's event lies between them).
CREATE TABLE feed_runs (
    app_id    TEXT NOT NULL,
    first_pos INTEGER NOT NULL,
    last_pos  INTEGER NOT NULL,
    PRIMARY KEY (app_id, first_pos)
) WITHOUT ROWID;

-- The position of the newest event a users row reflects.
ALTER TABLE users ADD COLUMN state_pos INTEGER NOT NULL DEFAULT 0;
