-- Retention (the SQLite store's 0006): the purge finds an app's deliveries
-- by event position and its old idempotency records by age.
CREATE INDEX deliveries_event ON deliveries(app_id, event_pos);
CREATE INDEX idempotency_keys_created ON idempotency_keys(app_id, created_at);
