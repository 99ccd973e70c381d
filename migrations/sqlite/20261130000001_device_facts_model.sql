-- The model `show version` reports, kept apart from `devices.model` (what the inventory says,
-- used to pick an image per model), so that a re-import never loses it and an export never
-- writes a discovered value back as if an operator had typed it.
ALTER TABLE devices ADD COLUMN facts_model TEXT;
