-- A rollout whose devices all finished, some failed within max_failures, is
-- `completed_with_failures` (it was `failed`); its closing event is renamed with it.
UPDATE rollouts SET state = 'completed_with_failures' WHERE state = 'failed';
UPDATE rollout_events SET kind = 'completed_with_failures' WHERE kind = 'failed' AND device IS NULL;

-- A staged device held for its maintenance window: when the window opens, in the window's
-- zone and in UTC. Cleared when the device's next step is recorded.
ALTER TABLE rollout_devices ADD COLUMN waits_for_window TEXT;
