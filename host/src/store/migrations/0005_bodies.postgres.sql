-- Event bodies apart from the hot queue table (store/mod.rs, store/queue.rs): claims, leases,
-- heartbeats and outcomes rewrite `events` rows, which stay narrow without the body; a body is
-- written once with its event and read only where it is needed.
CREATE TABLE event_bodies (
    event_id BIGINT PRIMARY KEY,
    body TEXT NOT NULL
);
INSERT INTO event_bodies (event_id, body) SELECT id, payload FROM events;
ALTER TABLE events DROP COLUMN payload;

-- The claim fence: bumped by every claim and never decreased (`attempts` is handed back by a
-- wait, a release or an unclaim, and reset by a retry), so an outcome of an older claim never
-- matches the current one.
ALTER TABLE events ADD COLUMN claim_seq BIGINT NOT NULL DEFAULT 0;
