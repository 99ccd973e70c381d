-- Configuration backups: what a rollout read from a device before its first change and once it
-- was back. The text is in a file of its own (DATA_DIR/configs/DEVICE/FILE, mode 0600): it holds
-- secrets, and only the configs endpoints read it. No foreign keys: a backup outlives the
-- device's removal from the inventory.
CREATE TABLE config_backups (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    rollout_id  TEXT    NOT NULL,
    device      TEXT    NOT NULL,
    kind        TEXT    NOT NULL CHECK (kind IN ('running', 'startup')),
    moment      TEXT    NOT NULL CHECK (moment IN ('before', 'after')),
    taken_at    TEXT    NOT NULL,
    sha256      TEXT    NOT NULL,
    size        INTEGER NOT NULL,
    file        TEXT    NOT NULL
);
CREATE INDEX config_backups_by_device ON config_backups (device, rollout_id, id);
