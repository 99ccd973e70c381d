-- API tokens with a role (viewer, operator, admin). Only the SHA-256 of a token is kept; the
-- token itself is shown once, when it is created. The service's first token
-- (FLEETUP_API_TOKEN or DATA_DIR/api-token) is the row marked bootstrap, named admin.
CREATE TABLE api_tokens (
    name       TEXT    PRIMARY KEY,
    role       TEXT    NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    hash       TEXT    NOT NULL UNIQUE,
    bootstrap  INTEGER NOT NULL DEFAULT 0,
    created_at TEXT    NOT NULL,
    created_by TEXT,
    revoked_at TEXT
);

-- Every mutating API call that a token made (who, what, when, the answer's status), and those
-- its role refused. Never a request body.
CREATE TABLE audit_log (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at     TEXT    NOT NULL,
    token  TEXT    NOT NULL,
    role   TEXT    NOT NULL,
    method TEXT    NOT NULL,
    path   TEXT    NOT NULL,
    status INTEGER NOT NULL
);
CREATE INDEX audit_log_by_token ON audit_log (token, id);

-- Who submitted a rollout, and its approval: a rollout submitted with `approval: required`
-- waits in awaiting_approval until another operator or admin token approves it.
ALTER TABLE rollouts ADD COLUMN submitted_by TEXT;
ALTER TABLE rollouts ADD COLUMN approval_required INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rollouts ADD COLUMN approved_by TEXT;
ALTER TABLE rollouts ADD COLUMN approved_at TEXT;
