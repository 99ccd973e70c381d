-- A site agent's claim looks for the jobs handed to its site that are still open: without this
-- index the claim, asked every second by every driving agent, read every job of every rollout.
CREATE INDEX rollout_devices_runner_site ON rollout_devices(runner_site, state);
