-- A site agent's heartbeat moves only `runner_until_ms` of the jobs it holds: hundreds of rows
-- a call, and no answer of the API shows that column. Stamping each of them moved the
-- rollout's `jobs_rev` once per row, and every kept rollout view then read those rows again.
-- The update trigger now fires only for an UPDATE that writes some other column. Every column
-- of `rollout_devices` but `runner_until_ms` and `rev` must be in its list: a test writes
-- each one and checks the stamp. The stamp's own UPDATE writes only `rev`, so it fires nothing.
DROP TRIGGER rollout_devices_rev_update;
CREATE TRIGGER rollout_devices_rev_update
    AFTER UPDATE OF rollout_id, device, wave, position, image, target_version, state, step,
        step_state, old_version, old_image, new_version, error, reload_sent, attempts,
        started_at, finished_at, waits_for_window, failure_reason, rollback_sent,
        compare_baseline, runner_site, runner, runner_epoch, kickstart
    ON rollout_devices WHEN NEW.rev = OLD.rev
BEGIN
    UPDATE rollouts SET jobs_rev = jobs_rev + 1 WHERE id = NEW.rollout_id;
    UPDATE rollout_devices
       SET rev = (SELECT jobs_rev FROM rollouts WHERE id = NEW.rollout_id)
     WHERE rollout_id = NEW.rollout_id AND device = NEW.device;
END;
