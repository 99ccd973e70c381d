-- Webhook deliveries: one row per notification and target, kept for the API's history and
-- bounded by the service (the oldest rows go first). The target's URL is stored redacted (no
-- user, password, query, nor the path past its first segment); the signing secret never is.
CREATE TABLE webhook_deliveries (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    rollout_id  TEXT    NOT NULL,
    event_id    INTEGER NOT NULL,
    target      TEXT    NOT NULL,
    format      TEXT    NOT NULL CHECK (format IN ('json', 'slack', 'teams')),
    kind        TEXT    NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_status INTEGER,
    last_error  TEXT,
    state       TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL
);
CREATE INDEX webhook_deliveries_by_rollout ON webhook_deliveries (rollout_id, id);
