-- The members of a stack (number, role, state, model, serial, version) as the device last
-- reported them, a JSON array; NULL for a single unit. An upgrade of a stack checks that the
-- same members are back, and a stack whose members run different versions is never taken for
-- one that already runs the target.
ALTER TABLE devices ADD COLUMN members TEXT;
