-- The events table without its indexes (replaced by user_chunks and
-- feed_runs, filled by 0008) and without AUTOINCREMENT: the store hands
-- out positions itself (store_meta.next_pos).
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
DROP TABLE events;
ALTER TABLE events_new RENAME TO events;
