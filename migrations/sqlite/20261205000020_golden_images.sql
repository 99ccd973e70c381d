-- Golden images: the image (a file name of the image store) the devices of a scope should run.
-- A scope names any of platform, model, site and role (a group or tag); an empty string stands
-- for "any", so that the four columns make one plain unique key (NULLs are never equal in a
-- UNIQUE constraint). The most specific entry that matches a device wins (docs/golden.md).
CREATE TABLE golden_images (
    platform   TEXT NOT NULL DEFAULT '',
    model      TEXT NOT NULL DEFAULT '',
    site       TEXT NOT NULL DEFAULT '',
    role       TEXT NOT NULL DEFAULT '',
    image      TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (platform, model, site, role)
);
