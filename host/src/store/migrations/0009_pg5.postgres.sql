-- The `state` quota's totals (`kv_totals`) split into stripes: a connector's total is the sum of
-- its rows, one per `stripe`. Since migration 8 a commit that wrote a connector's state updated
-- its one totals row, and every other host's commit that wrote the same connector's state
-- queued behind it on that row's lock (0.141 ms a flush at 3 hosts against 0.031 at 1). Now the
-- flush at commit adds its delta to the first stripe no other transaction holds
-- (`FOR UPDATE SKIP LOCKED`) and makes a new stripe when every one is held, so commits rarely
-- wait on each other's totals: only two making the same new stripe, or one whose look for the
-- newest stripe came just before another made it, wait (never in a circle: key order). A
-- connector gets as many stripes as commits ever overlapped on it, a number bounded by its
-- concurrent writers (about one per host); stripes are never merged. The quota's read sums them (an index search of the key's prefix).
-- Existing totals are carried over as stripe 0.
--
-- A connector's first totals row is counted from `kv` itself (this transaction's changes
-- included) instead of starting at the transaction's delta: a `kv` DELETE with no totals row
-- made a negative one (migration 8), now it makes the true total.
ALTER TABLE kv_totals ADD COLUMN stripe INTEGER NOT NULL DEFAULT 0;
ALTER TABLE kv_totals DROP CONSTRAINT kv_totals_pkey;
ALTER TABLE kv_totals ADD PRIMARY KEY (integration, connector, stripe);

CREATE OR REPLACE FUNCTION kv_totals_flush() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    pending text := current_setting('switchyard.kv_totals_pending', true);
    d record;
    free integer;
    top integer;
BEGIN
    IF pending IS NULL OR pending IN ('', '{}') THEN
        RETURN NULL;
    END IF;
    -- Cleared first: the statements below change no `kv` row, but were one to, its delta
    -- would be noted for a later run, not lost.
    PERFORM set_config('switchyard.kv_totals_pending', '', true);
    -- In key order, as in migration 8: a wait on a new stripe's insert (two transactions making
    -- the same one) cannot turn into a deadlock.
    FOR d IN SELECT k::jsonb->>0 AS integration, k::jsonb->>1 AS connector, v::bigint AS delta
               FROM jsonb_each_text(pending::jsonb) AS p(k, v)
              WHERE v::bigint <> 0
              ORDER BY 1, 2
    LOOP
        SELECT t.stripe INTO free FROM kv_totals t
         WHERE t.integration = d.integration AND t.connector = d.connector
         ORDER BY t.stripe LIMIT 1 FOR UPDATE SKIP LOCKED;
        IF FOUND THEN
            UPDATE kv_totals SET bytes = bytes + d.delta
             WHERE integration = d.integration AND connector = d.connector AND stripe = free;
            CONTINUE;
        END IF;
        SELECT MAX(t.stripe) INTO top FROM kv_totals t
         WHERE t.integration = d.integration AND t.connector = d.connector;
        IF top IS NULL THEN
            -- No totals yet: the true count. A transaction making stripe 0 at the same time
            -- counts after it (the conflict waits for it), by its delta.
            INSERT INTO kv_totals AS t (integration, connector, stripe, bytes)
            SELECT d.integration, d.connector, 0, COALESCE(SUM(octet_length(key)
                       + octet_length(value) + COALESCE(octet_length(screening), 0)), 0)
              FROM kv WHERE integration = d.integration AND connector = d.connector
            ON CONFLICT (integration, connector, stripe)
            DO UPDATE SET bytes = t.bytes + d.delta;
        ELSE
            INSERT INTO kv_totals AS t (integration, connector, stripe, bytes)
            VALUES (d.integration, d.connector, top + 1, d.delta)
            ON CONFLICT (integration, connector, stripe)
            DO UPDATE SET bytes = t.bytes + d.delta;
        END IF;
    END LOOP;
    RETURN NULL;
END;
$$;
