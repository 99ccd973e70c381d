-- What `checks.compare` saw on a device right before its first change (JSON, one entry per
-- comparison, in the playbook's order): the state it must be back to after the reload. Kept
-- so that a fleetup restarted while the device reloads still compares against it.
ALTER TABLE rollout_devices ADD COLUMN compare_baseline TEXT;
