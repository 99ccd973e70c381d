-- Rollout engine state. The engine writes a device's step here before the step starts and
-- after it ends, so that a restarted service resumes every device where it was and never
-- sends a second reload to a device whose reload was already sent.
ALTER TABLE rollouts ADD COLUMN plan TEXT NOT NULL DEFAULT '{}';
ALTER TABLE rollouts ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rollouts ADD COLUMN abort_requested INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rollouts ADD COLUMN halt_reason TEXT;
ALTER TABLE rollouts ADD COLUMN started_at TEXT;

CREATE TABLE rollout_devices (
    rollout_id     TEXT    NOT NULL REFERENCES rollouts(id) ON DELETE CASCADE,
    device         TEXT    NOT NULL,
    wave           INTEGER NOT NULL,
    position       INTEGER NOT NULL,
    image          TEXT    NOT NULL,
    target_version TEXT,
    -- pending | running | succeeded | failed | skipped | aborted
    state          TEXT    NOT NULL DEFAULT 'pending',
    -- the step in progress or last finished, and whether it is 'started' or 'done'
    step           TEXT,
    step_state     TEXT,
    old_version    TEXT,
    old_image      TEXT,
    new_version    TEXT,
    error          TEXT,
    reload_sent    INTEGER NOT NULL DEFAULT 0,
    attempts       INTEGER NOT NULL DEFAULT 0,
    started_at     TEXT,
    finished_at    TEXT,
    PRIMARY KEY (rollout_id, device)
);
CREATE INDEX rollout_devices_state ON rollout_devices(rollout_id, state);

CREATE TABLE rollout_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    rollout_id  TEXT    NOT NULL REFERENCES rollouts(id) ON DELETE CASCADE,
    at          TEXT    NOT NULL,
    device      TEXT,
    kind        TEXT    NOT NULL,
    step        TEXT,
    message     TEXT    NOT NULL DEFAULT '',
    data        TEXT
);
CREATE INDEX rollout_events_rollout ON rollout_events(rollout_id, id);
