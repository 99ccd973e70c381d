-- Site agents drive their site's devices (`fleetup agent`): the node that leads a rollout
-- hands a device's job to the agents of its site (runner_site), and one agent claims it under
-- a lease of its own (runner, until runner_until_ms by the database's clock). Every claim and
-- every take-back moves runner_epoch on; an agent's writes for the job carry the epoch it
-- claimed, and a stale one is refused.
ALTER TABLE rollout_devices ADD COLUMN runner_site TEXT;
ALTER TABLE rollout_devices ADD COLUMN runner TEXT;
ALTER TABLE rollout_devices ADD COLUMN runner_epoch BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rollout_devices ADD COLUMN runner_until_ms BIGINT;
