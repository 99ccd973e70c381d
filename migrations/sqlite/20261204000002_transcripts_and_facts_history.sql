-- What fleetup sent to a device during a rollout and what the device answered, per step,
-- already redacted and bounded by the driver. `attempt` is the job's attempt (a retried
-- device starts a new one).
CREATE TABLE job_transcripts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    rollout_id  TEXT    NOT NULL REFERENCES rollouts(id) ON DELETE CASCADE,
    device      TEXT    NOT NULL,
    attempt     INTEGER NOT NULL DEFAULT 1,
    step        TEXT,
    -- command | answer | note
    kind        TEXT    NOT NULL,
    command     TEXT    NOT NULL,
    output      TEXT    NOT NULL DEFAULT '',
    at          TEXT    NOT NULL
);
CREATE INDEX job_transcripts_job ON job_transcripts(rollout_id, device, id);

-- Every set of facts read from a device, newest last; the store keeps the last 100 per device.
CREATE TABLE device_facts_history (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id   INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    version     TEXT,
    image       TEXT,
    model       TEXT,
    serial      TEXT,
    uptime      TEXT,
    at          TEXT    NOT NULL
);
CREATE INDEX device_facts_history_device ON device_facts_history(device_id, id);
CREATE INDEX rollout_devices_device ON rollout_devices(device);
