-- Each job row keeps the rollout's jobs_rev of its last change, so that `GET /rollouts/{id}`
-- reads again only the rows changed since it last looked, not every row of a rollout of
-- thousands each time one moved. The triggers stamp the row; a row written with its rev
-- already set (a copy by `fleetup db migrate`) keeps it and moves nothing. The rollout's row
-- lock, held from the stamp to the commit, keeps the stamps in commit order.
DROP TRIGGER rollout_devices_rev_insert ON rollout_devices;
DROP TRIGGER rollout_devices_rev_update ON rollout_devices;

ALTER TABLE rollout_devices ADD COLUMN rev BIGINT NOT NULL DEFAULT 0;
UPDATE rollout_devices d SET rev = r.jobs_rev FROM rollouts r WHERE r.id = d.rollout_id;
CREATE INDEX rollout_devices_rev ON rollout_devices(rollout_id, rev);

CREATE FUNCTION rollout_devices_stamp_rev() RETURNS trigger AS $$
BEGIN
    UPDATE rollouts SET jobs_rev = jobs_rev + 1 WHERE id = NEW.rollout_id
        RETURNING jobs_rev INTO NEW.rev;
    NEW.rev := COALESCE(NEW.rev, 0);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER rollout_devices_rev_insert BEFORE INSERT ON rollout_devices
    FOR EACH ROW WHEN (NEW.rev = 0) EXECUTE FUNCTION rollout_devices_stamp_rev();
CREATE TRIGGER rollout_devices_rev_update BEFORE UPDATE ON rollout_devices
    FOR EACH ROW WHEN (NEW.rev = OLD.rev) EXECUTE FUNCTION rollout_devices_stamp_rev();
