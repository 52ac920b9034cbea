-- What several hosts on one database share (store/components.rs, store/revision.rs).
-- Uploaded connector components, stored once, by the SHA-256 of their bytes.
CREATE TABLE connector_blobs (
    hash TEXT PRIMARY KEY,
    connector TEXT NOT NULL,
    bytes BLOB NOT NULL,
    uploaded_at INTEGER NOT NULL
);
-- One counter per kind of shared state, bumped in the write that changes it: hosts poll it.
CREATE TABLE shared_revisions (
    topic TEXT PRIMARY KEY,
    revision INTEGER NOT NULL
);
-- The revision an admin edit read, checked when it writes (no lost update across hosts).
ALTER TABLE integrations ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
