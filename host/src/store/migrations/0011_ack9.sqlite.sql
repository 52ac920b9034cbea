-- The oldest pending event (store/stats.rs `queue_now`: the console's numbers and the admin
-- API's stats) read by one seek: `MIN(received_at)` of the queued and running events walked
-- every one of them through `events_by_integration_due` and read its row (about 25 ms of CPU
-- per console refresh with 50,000 queued). A webhook's entry goes to the index's last leaf
-- (`received_at` grows with each insert), which a batch's webhooks share; finished, waiting and
-- dead events have none.
CREATE INDEX IF NOT EXISTS events_pending_received ON events (received_at) WHERE state IN ('queued', 'running');
