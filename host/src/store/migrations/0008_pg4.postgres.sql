-- The `state` quota's totals (`kv_totals`) get one update per (integration, connector) per
-- transaction, in key order, at commit. Migration 6 deferred the per-row trigger to the commit,
-- where it still updated a totals row once per `kv` row written: a group-commit batch made tens
-- of versions of one row (the quota check's index scan then walked them until pruned, 0.19 ms
-- a read in the bench against 0.02), and two hosts' batches taking two totals rows in opposite
-- order could deadlock at COMMIT. Now each `kv` change adds its delta to a transaction-local
-- setting (rolled back with its savepoint, like the row), and the first run of the deferred
-- trigger at commit applies the summed deltas sorted by key, then clears them; its other runs
-- find nothing left. Every transaction takes totals rows in one order: no deadlock among them.
CREATE FUNCTION kv_totals_note() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    pending jsonb := COALESCE(NULLIF(current_setting('switchyard.kv_totals_pending', true), ''),
                              '{}')::jsonb;
    k text;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        k := jsonb_build_array(OLD.integration, OLD.connector)::text;
        pending := jsonb_set(pending, ARRAY[k], to_jsonb(COALESCE((pending->>k)::bigint, 0)
            - octet_length(OLD.key) - octet_length(OLD.value)
            - COALESCE(octet_length(OLD.screening), 0)));
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        k := jsonb_build_array(NEW.integration, NEW.connector)::text;
        pending := jsonb_set(pending, ARRAY[k], to_jsonb(COALESCE((pending->>k)::bigint, 0)
            + octet_length(NEW.key) + octet_length(NEW.value)
            + COALESCE(octet_length(NEW.screening), 0)));
    END IF;
    PERFORM set_config('switchyard.kv_totals_pending', pending::text, true);
    RETURN NULL;
END;
$$;

CREATE FUNCTION kv_totals_flush() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    pending text := current_setting('switchyard.kv_totals_pending', true);
BEGIN
    IF pending IS NULL OR pending IN ('', '{}') THEN
        RETURN NULL;
    END IF;
    INSERT INTO kv_totals AS t (integration, connector, bytes)
    SELECT k::jsonb->>0, k::jsonb->>1, v::bigint
      FROM jsonb_each_text(pending::jsonb) AS d(k, v)
     WHERE v::bigint <> 0
     ORDER BY 1, 2
    ON CONFLICT (integration, connector) DO UPDATE SET bytes = t.bytes + EXCLUDED.bytes;
    PERFORM set_config('switchyard.kv_totals_pending', '', true);
    RETURN NULL;
END;
$$;

DROP TRIGGER kv_totals_change ON kv;
-- Named to sort before `kv_totals_change`: a row's AFTER triggers fire in name order, so were
-- the constraint ever made IMMEDIATE, each row's delta is noted before the flush runs.
CREATE TRIGGER kv_totals_add AFTER INSERT OR UPDATE OR DELETE ON kv
    FOR EACH ROW EXECUTE FUNCTION kv_totals_note();
CREATE CONSTRAINT TRIGGER kv_totals_change AFTER INSERT OR UPDATE OR DELETE ON kv
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION kv_totals_flush();
DROP FUNCTION kv_totals_apply();
