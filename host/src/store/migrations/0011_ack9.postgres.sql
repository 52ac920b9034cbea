-- The oldest pending event read by one seek, as on SQLite (see its file): `MIN(received_at)`
-- of the queued and running events walked every one of them.
CREATE INDEX IF NOT EXISTS events_pending_received ON events (received_at) WHERE state IN ('queued', 'running');
-- `IF NOT EXISTS`: an operator may build it beforehand with `CREATE INDEX CONCURRENTLY` (no
-- lock on writes; README, "Upgrading to schema version 11").
