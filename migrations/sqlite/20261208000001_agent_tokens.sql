-- Agent tokens: a site agent's token (role agent) is bound to one site, and makes that site's
-- agent calls only. SQLite cannot change a CHECK constraint in place: the table is made again
-- with the new role and the site, and its rows copied.
CREATE TABLE api_tokens_new (
    name       TEXT    PRIMARY KEY,
    role       TEXT    NOT NULL CHECK (role IN ('viewer', 'operator', 'admin', 'agent')),
    hash       TEXT    NOT NULL UNIQUE,
    bootstrap  INTEGER NOT NULL DEFAULT 0,
    created_at TEXT    NOT NULL,
    created_by TEXT,
    revoked_at TEXT,
    site       TEXT,
    CHECK ((role = 'agent') = (site IS NOT NULL))
);
INSERT INTO api_tokens_new (name, role, hash, bootstrap, created_at, created_by, revoked_at)
    SELECT name, role, hash, bootstrap, created_at, created_by, revoked_at FROM api_tokens;
DROP TABLE api_tokens;
ALTER TABLE api_tokens_new RENAME TO api_tokens;
