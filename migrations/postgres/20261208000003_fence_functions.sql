-- The fence's check of a write made in one round trip (`store::Db::write_in_one_trip`), as
-- functions: the statement the write sends is then a call with constants, which PostgreSQL
-- plans at once, and the read inside is planned once per connection, not once per write (it
-- was 1.4 ms of planning per device at 2,000 devices, more than its execution). Each returns
-- no row while the epoch holds, and otherwise fails the transaction, which the server then
-- rolls back whole, with SQLSTATE FL001 and the message given, `{now}` in it replaced by the
-- epoch the database holds. `fleetup_fenced` stays, for a node of the version before.

-- A device job's writes: its epoch must be the job's (a job that is gone fails too).
CREATE FUNCTION fleetup_fence_job(p_rollout TEXT, p_device TEXT, p_epoch BIGINT, p_message TEXT)
RETURNS SETOF BIGINT LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    held BIGINT;
BEGIN
    SELECT runner_epoch INTO held FROM rollout_devices
     WHERE rollout_id = p_rollout AND device = p_device;
    IF held IS DISTINCT FROM p_epoch THEN
        RAISE EXCEPTION USING
            ERRCODE = 'FL001',
            MESSAGE = replace(p_message, '{now}', coalesce(held::text, 'none'));
    END IF;
    RETURN;
END
$$;

-- A rollout's writes: its lease epoch must be the rollout's, while the rollout is there.
CREATE FUNCTION fleetup_fence_rollout(p_rollout TEXT, p_epoch BIGINT, p_message TEXT)
RETURNS SETOF BIGINT LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    held BIGINT;
BEGIN
    SELECT lease_epoch INTO held FROM rollouts WHERE id = p_rollout;
    IF held <> p_epoch THEN
        RAISE EXCEPTION USING
            ERRCODE = 'FL001',
            MESSAGE = replace(p_message, '{now}', held::text);
    END IF;
    RETURN;
END
$$;
