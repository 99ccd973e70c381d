-- Each job row keeps the rollout's jobs_rev of its last change, so that `GET /rollouts/{id}`
-- reads again only the rows changed since it last looked, not every row of a rollout of
-- thousands each time one moved. The triggers stamp the row; a row written with its rev
-- already set (a copy by `fleetup db migrate`) keeps it and moves nothing.
DROP TRIGGER rollout_devices_rev_insert;
DROP TRIGGER rollout_devices_rev_update;

ALTER TABLE rollout_devices ADD COLUMN rev INTEGER NOT NULL DEFAULT 0;
UPDATE rollout_devices
   SET rev = (SELECT jobs_rev FROM rollouts WHERE rollouts.id = rollout_devices.rollout_id);
CREATE INDEX rollout_devices_rev ON rollout_devices(rollout_id, rev);

-- The stamp's own UPDATE changes rev, so it fires neither trigger again.
CREATE TRIGGER rollout_devices_rev_insert AFTER INSERT ON rollout_devices WHEN NEW.rev = 0
BEGIN
    UPDATE rollouts SET jobs_rev = jobs_rev + 1 WHERE id = NEW.rollout_id;
    UPDATE rollout_devices
       SET rev = (SELECT jobs_rev FROM rollouts WHERE id = NEW.rollout_id)
     WHERE rollout_id = NEW.rollout_id AND device = NEW.device;
END;

CREATE TRIGGER rollout_devices_rev_update AFTER UPDATE ON rollout_devices WHEN NEW.rev = OLD.rev
BEGIN
    UPDATE rollouts SET jobs_rev = jobs_rev + 1 WHERE id = NEW.rollout_id;
    UPDATE rollout_devices
       SET rev = (SELECT jobs_rev FROM rollouts WHERE id = NEW.rollout_id)
     WHERE rollout_id = NEW.rollout_id AND device = NEW.device;
END;
