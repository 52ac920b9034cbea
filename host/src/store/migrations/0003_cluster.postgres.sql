-- Several hosts on one database (store/leader.rs, store/queue.rs).

-- The claim's indexes hold only what is queued: they stay small however long the history grows.
CREATE INDEX events_queued_due ON events (integration, next_attempt_at, id) WHERE state = 'queued';
CREATE INDEX events_queued_next ON events (next_attempt_at) WHERE state = 'queued';

-- Leadership of a housekeeping duty: one holder (a run) until `expires_at`, renewed by it.
CREATE TABLE leaders (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
