-- A rollout's playbook and plan move to a table of their own (as on SQLite, which writes a
-- row whole: each job change bumps the rollout's jobs_rev). PostgreSQL keeps a large value
-- out of line, but the rollout's row is then small on both servers alike.
CREATE TABLE rollout_plans (
    rollout_id TEXT PRIMARY KEY REFERENCES rollouts(id) ON DELETE CASCADE,
    playbook   TEXT NOT NULL,
    plan       TEXT NOT NULL DEFAULT '{}'
);
INSERT INTO rollout_plans (rollout_id, playbook, plan) SELECT id, playbook, plan FROM rollouts;
ALTER TABLE rollouts DROP COLUMN playbook;
ALTER TABLE rollouts DROP COLUMN plan;
