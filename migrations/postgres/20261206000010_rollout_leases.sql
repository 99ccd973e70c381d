-- Several fleetup nodes on one database: each rollout is driven by the node that holds its
-- lease (until lease_until_ms, the database's clock in milliseconds since 1970). Every claim
-- moves lease_epoch on, and a node's writes for the rollout carry the epoch it claimed: a
-- stale one is refused. The nodes table is each node's heartbeat, for the operators.
ALTER TABLE rollouts ADD COLUMN lease_node TEXT;
ALTER TABLE rollouts ADD COLUMN lease_epoch BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rollouts ADD COLUMN lease_until_ms BIGINT;

CREATE TABLE nodes (
    name         TEXT    PRIMARY KEY,
    instance     TEXT    NOT NULL,
    version      TEXT    NOT NULL,
    started_at   TEXT    NOT NULL,
    heartbeat_ms BIGINT NOT NULL
);
