-- Why a device job failed (`never_came_back`, `corrupt_image`, ...): a retry of a device that
-- never came back after its reload waits for it and verifies it, instead of reloading again.
ALTER TABLE rollout_devices ADD COLUMN failure_reason TEXT;
