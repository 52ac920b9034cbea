-- The `state` quota's totals (`kv_totals`, one row per integration and connector) are updated
-- when the transaction commits instead of at each `kv` write: a deferred constraint trigger,
-- same function. Every host's group-commit transaction that writes a connector's state updates
-- that one row, and the row stays locked until the transaction ends; updated at the write, it
-- was locked through the rest of the batch (the webhooks and claims after it, their round
-- trips), and the other hosts' batches that touch the same connector waited that long
-- (`Lock:transactionid` waits on `INSERT INTO kv` with 3 hosts). The totals are read only from
-- other connections (committed rows), so nothing sees the difference; a job's savepoint rolled
-- back drops its queued trigger events with it.
DROP TRIGGER kv_totals_change ON kv;
CREATE CONSTRAINT TRIGGER kv_totals_change AFTER INSERT OR UPDATE OR DELETE ON kv
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION kv_totals_apply();
