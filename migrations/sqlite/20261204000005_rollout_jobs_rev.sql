-- A counter of changes to a rollout's device jobs, kept by the database itself: any write to
-- rollout_devices, whatever code path or service makes it, moves it on. `GET /rollouts/{id}`
-- keeps the rollout's view in memory and reads the jobs again only when this has moved.
ALTER TABLE rollouts ADD COLUMN jobs_rev INTEGER NOT NULL DEFAULT 0;

CREATE TRIGGER rollout_devices_rev_insert AFTER INSERT ON rollout_devices
BEGIN
    UPDATE rollouts SET jobs_rev = jobs_rev + 1 WHERE id = NEW.rollout_id;
END;

CREATE TRIGGER rollout_devices_rev_update AFTER UPDATE ON rollout_devices
BEGIN
    UPDATE rollouts SET jobs_rev = jobs_rev + 1 WHERE id = NEW.rollout_id;
END;

CREATE TRIGGER rollout_devices_rev_delete AFTER DELETE ON rollout_devices
BEGIN
    UPDATE rollouts SET jobs_rev = jobs_rev + 1 WHERE id = OLD.rollout_id;
END;
