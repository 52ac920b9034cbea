-- Several hosts on one database (store/leader.rs, store/queue.rs); on SQLite the one process
-- leads without this table, kept so that both backends have the same schema.

-- The claim's indexes hold only what is queued: they stay small however long the history grows.
CREATE INDEX events_queued_due ON events (integration, next_attempt_at, id) WHERE state = 'queued';
CREATE INDEX events_queued_next ON events (next_attempt_at) WHERE state = 'queued';

CREATE TABLE leaders (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
