-- Where each node answers (its API's URL, which other nodes fetch missing images from by
-- SHA-256), and which heartbeats come from site agents rather than serve nodes: an agent's
-- site, and what it reports with each heartbeat (its file servers, the images it holds
-- checked, its transfers) as a JSON document.
ALTER TABLE nodes ADD COLUMN url TEXT;
ALTER TABLE nodes ADD COLUMN kind TEXT NOT NULL DEFAULT 'node';
ALTER TABLE nodes ADD COLUMN site TEXT;
ALTER TABLE nodes ADD COLUMN detail TEXT;
