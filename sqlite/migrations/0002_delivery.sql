-- Webhook endpoints, the delivery outbox and the attempts log.
CREATE TABLE endpoints (
    id              TEXT PRIMARY KEY,
    app_id          TEXT NOT NULL REFERENCES apps(id),
    url             TEXT NOT NULL,
    description     TEXT NOT NULL DEFAULT '',
    event_types     TEXT NOT NULL DEFAULT '[]',
    debounce_ms     INTEGER NOT NULL,
    rate_limit      INTEGER NOT NULL DEFAULT 0,
    secrets         TEXT NOT NULL,
    disabled        INTEGER NOT NULL DEFAULT 0,
    disabled_reason TEXT NOT NULL DEFAULT '',
    disabled_at     INTEGER,
    failing_since   INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX endpoints_app ON endpoints(app_id, created_at);

-- One row per (event, endpoint). A user's active (pending/failed)
-- deliveries to an endpoint form a FIFO queue by seq; exactly one of them,
-- the lowest seq, has head = 1 and only heads are claimed. A claim sets
-- claim_owner and a fresh claim_id and moves next_at to the end of the
-- lease, so an expired claim is simply due again; outcomes are fenced by
-- claim_id, so the completion of a claim that expired and was taken again
-- changes nothing (and promotes nothing).
CREATE TABLE deliveries (
    pos           INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id        TEXT NOT NULL,
    endpoint_id   TEXT NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE,
    event_pos     INTEGER NOT NULL,
    event_id      TEXT NOT NULL,
    event_type    TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    status        TEXT NOT NULL,
    head          INTEGER NOT NULL DEFAULT 0,
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_at       INTEGER NOT NULL,
    claim_owner   TEXT NOT NULL DEFAULT '',
    claim_id      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT NOT NULL DEFAULT '',
    last_code     INTEGER NOT NULL DEFAULT 0,
    superseded_by TEXT NOT NULL DEFAULT '',
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    delivered_at  INTEGER
);
CREATE INDEX deliveries_queue ON deliveries(endpoint_id, user_id, seq) WHERE status IN ('pending', 'failed');
CREATE INDEX deliveries_due ON deliveries(next_at) WHERE head = 1;
CREATE INDEX deliveries_endpoint ON deliveries(endpoint_id, pos);

CREATE TABLE delivery_attempts (
    delivery_pos  INTEGER NOT NULL REFERENCES deliveries(pos) ON DELETE CASCADE,
    n             INTEGER NOT NULL,
    at            INTEGER NOT NULL,
    status_code   INTEGER NOT NULL,
    latency_us    INTEGER NOT NULL,
    error         TEXT NOT NULL,
    response_body TEXT NOT NULL,
    PRIMARY KEY (delivery_pos, n)
) WITHOUT ROWID;
