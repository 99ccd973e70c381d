-- A configuration backup's text, in its row: every node that shares the database reads it (a
-- backup kept by one node is shown and compared by any other, and outlives the node's disk).
-- NULL for a backup kept before, whose text is only in its file under DATA_DIR/configs.
ALTER TABLE config_backups ADD COLUMN text TEXT;
