-- Fewer index entries per queued webhook (store/intake.rs): each full index of `events` took one
-- entry (and, per group commit, a few WAL pages) for every webhook stored.
-- `events_due (state, next_attempt_at)` repeated the leading column of
-- `events_by_integration_due (state, integration, next_attempt_at)`: its readers by state (the
-- console's counts by state, the queue depth) search that one; the release of due waits gets its
-- own partial index below.
DROP INDEX events_due;
-- Retention reads finished events only as `state IN ('done', 'skipped')` (the same term, so
-- SQLite proves the partial index usable): queued, running and waiting events get no entry.
DROP INDEX events_finished;
CREATE INDEX events_finished ON events (state, finished_at) WHERE state IN ('done', 'skipped');
-- The re-check of waits (store/waiting.rs `wake_rechecks`, every heartbeat) reads the waiting
-- events that are due: `events_due` gave it a range; without it, it would walk every waiting
-- event, those waiting for a connect or an operator (due never) too. Queued webhooks get no entry.
CREATE INDEX events_waiting_due ON events (next_attempt_at) WHERE state = 'waiting';
