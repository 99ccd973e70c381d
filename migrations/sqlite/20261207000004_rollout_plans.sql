-- A rollout's playbook and plan move to a table of their own. SQLite writes a row whole: the
-- plan lists every device (345 KB for 2,000), and each job change bumps the rollout's
-- jobs_rev, so every step rewrote the plan's overflow pages; and every read of a column
-- stored after it (paused, abort_requested, jobs_rev, the lease) walked them.
CREATE TABLE rollout_plans (
    rollout_id TEXT PRIMARY KEY REFERENCES rollouts(id) ON DELETE CASCADE,
    playbook   TEXT NOT NULL,
    plan       TEXT NOT NULL DEFAULT '{}'
);
INSERT INTO rollout_plans (rollout_id, playbook, plan) SELECT id, playbook, plan FROM rollouts;
ALTER TABLE rollouts DROP COLUMN playbook;
ALTER TABLE rollouts DROP COLUMN plan;
