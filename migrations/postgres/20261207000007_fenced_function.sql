-- A write made in one round trip (`store::Db::write_in_one_trip`) checks its fence with a
-- statement that calls this only when the epoch is stale: it fails the transaction, which the
-- server then rolls back whole, with SQLSTATE FL001 and the message given, `{now}` in it
-- replaced by the epoch the database holds. VOLATILE (the default), so that the planner
-- never calls it ahead of the check.
CREATE FUNCTION fleetup_fenced(message TEXT, now BIGINT) RETURNS BIGINT
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RAISE EXCEPTION USING
        ERRCODE = 'FL001',
        MESSAGE = replace(message, '{now}', coalesce(now::text, 'none'));
END
$$;
