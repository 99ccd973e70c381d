-- The kickstart image a job installs with its system image (NX-OS devices that boot both),
-- from the plan: a site agent caches it for the site's devices like the system image.
ALTER TABLE rollout_devices ADD COLUMN kickstart TEXT;
