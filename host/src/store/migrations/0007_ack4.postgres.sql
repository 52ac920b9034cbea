-- Fewer index entries per queued webhook (store/intake.rs), as on SQLite: `events_due`
-- repeated the leading column of `events_by_integration_due`, whose readers search that one by
-- state; retention reads finished events only as `state IN ('done', 'skipped')`.
DROP INDEX events_due;
DROP INDEX events_finished;
CREATE INDEX events_finished ON events (state, finished_at) WHERE state IN ('done', 'skipped');
-- The re-check of due waits keeps a range search (see the SQLite file).
CREATE INDEX events_waiting_due ON events (next_attempt_at) WHERE state = 'waiting';
