-- Inventory: one row per managed device. Credentials are stored here (the service needs them to
-- log in) but no API route ever returns them.
CREATE TABLE devices (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT    NOT NULL UNIQUE,
    host            TEXT    NOT NULL,
    port            INTEGER NOT NULL DEFAULT 22,
    platform        TEXT    NOT NULL CHECK (platform IN ('ios', 'iosxe', 'nxos')),
    site            TEXT,
    model           TEXT,
    username        TEXT,
    password        TEXT,
    password_env    TEXT,
    enable_secret   TEXT,
    enable_secret_env TEXT,
    host_key        TEXT,
    -- discovered facts, filled by `device facts` and after each upgrade
    version         TEXT,
    image           TEXT,
    serial          TEXT,
    uptime          TEXT,
    config_register TEXT,
    last_seen       TEXT,
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL
);

CREATE TABLE device_groups (
    device_id INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    name      TEXT    NOT NULL,
    PRIMARY KEY (device_id, name)
);
CREATE INDEX device_groups_name ON device_groups(name);

CREATE TABLE device_tags (
    device_id INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    name      TEXT    NOT NULL,
    PRIMARY KEY (device_id, name)
);
CREATE INDEX device_tags_name ON device_tags(name);

-- Image store: the file lives in DATA_DIR/images/<file_name>; the row is written only after the
-- file is complete and its checksums are known, so a half upload is never registered.
CREATE TABLE images (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    file_name   TEXT    NOT NULL UNIQUE,
    size        INTEGER NOT NULL,
    md5         TEXT    NOT NULL,
    sha256      TEXT    NOT NULL UNIQUE,
    platform    TEXT,
    version     TEXT,
    created_at  TEXT    NOT NULL
);
