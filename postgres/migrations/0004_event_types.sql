-- Custom event types (the SQLite store's 0004): one row per type with its
-- current version, one row per schema version (kept for good: events keep
-- the version they were validated against, recorded in
-- events.schema_version; 0 = none). Append transactions read the app's
-- debounced types in their own snapshot: no replica caches them.
CREATE TABLE event_types (
    app_id      text COLLATE "C" NOT NULL REFERENCES apps(id),
    name        text COLLATE "C" NOT NULL,
    description text NOT NULL DEFAULT '',
    version     integer NOT NULL,
    debounce    boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (app_id, name)
);

CREATE TABLE event_type_versions (
    app_id     text COLLATE "C" NOT NULL,
    name       text COLLATE "C" NOT NULL,
    version    integer NOT NULL,
    schema     text NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (app_id, name, version)
);

ALTER TABLE events ADD COLUMN schema_version integer NOT NULL DEFAULT 0;
