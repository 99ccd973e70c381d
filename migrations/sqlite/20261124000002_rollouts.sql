-- A rollout: one playbook applied to a set of devices. The engine adds its job and event tables
-- in later migrations; `images` lists the image file names the rollout may push, so that the
-- image store refuses to delete them while the rollout has not ended.
CREATE TABLE rollouts (
    id          TEXT    PRIMARY KEY,
    name        TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    playbook    TEXT    NOT NULL,
    images      TEXT    NOT NULL DEFAULT '[]',
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL,
    finished_at TEXT
);
CREATE INDEX rollouts_state ON rollouts(state);
