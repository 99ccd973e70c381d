-- Devices kept by a source of truth (`fleetup inventory sync`, docs/sync.md).
-- sync_source: the scope that last synced the device (kind, URL and filter, e.g.
--   `nautobot https://nautobot.example.com site=dc1`); NULL for devices given to fleetup directly.
-- sync_id: the device's id in that source (Nautobot's UUID, NetBox's integer), for write-back.
-- absent_since: when a sync of that scope no longer found the device. An absent device is kept
--   (its facts, history and rollouts stay) but never targeted; a later sync that finds it again
--   clears this.
ALTER TABLE devices ADD COLUMN sync_source TEXT;
ALTER TABLE devices ADD COLUMN sync_id TEXT;
ALTER TABLE devices ADD COLUMN absent_since TEXT;
CREATE INDEX devices_sync_source ON devices(sync_source);
