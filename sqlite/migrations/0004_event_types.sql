-- Custom event types: one row per type with its current version, one row
-- per schema version (kept for good: events keep the version they were
-- validated against, recorded in events.schema_version; 0 = none).
CREATE TABLE event_types (
    app_id      TEXT NOT NULL REFERENCES apps(id),
    name        TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    version     INTEGER NOT NULL,
    debounce    INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (app_id, name)
);

CREATE TABLE event_type_versions (
    app_id     TEXT NOT NULL,
    name       TEXT NOT NULL,
    version    INTEGER NOT NULL,
    schema     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (app_id, name, version)
);

ALTER TABLE events ADD COLUMN schema_version INTEGER NOT NULL DEFAULT 0;
