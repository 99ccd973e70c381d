-- Set when a device's rollback reload (`rollback_reload`, after a failed post-check on the new
-- image) is recorded, before it is sent: after a restart fleetup waits for the device and checks
-- the old image, and never sends that reload a second time (unless the device's uptime proves
-- it never reached it).
ALTER TABLE rollout_devices ADD COLUMN rollback_sent INTEGER NOT NULL DEFAULT 0;
