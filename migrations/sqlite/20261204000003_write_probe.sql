-- One row the service rewrites to prove that writes work again after the disk was full.
CREATE TABLE write_probe (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL
);
INSERT INTO write_probe (id, at) VALUES (1, '');
