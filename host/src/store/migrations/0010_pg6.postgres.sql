-- The `state` quota's totals (`kv_totals`) counted again from `kv`, once. Migration 9 carried
-- schema 8's totals over as they were, so a total that migration 8's `DELETE` without a totals
-- row had made wrong (a negative row that hid the rest) stayed wrong; now every connector's
-- total is the sum of its `kv` rows, in one stripe. `kv` is locked against writes meanwhile
-- (`SHARE`: it waits for transactions that wrote `kv`, and so for their totals' flush at
-- commit, and holds back new ones until this migration commits), so no commit's delta is lost
-- or counted twice even while a host of the previous version still writes. One scan of `kv`,
-- which holds connectors' lasting entries and the screening entries of unrecorded orders.
LOCK TABLE kv IN SHARE MODE;
DELETE FROM kv_totals;
INSERT INTO kv_totals (integration, connector, stripe, bytes)
SELECT integration, connector, 0,
       SUM(octet_length(key) + octet_length(value) + COALESCE(octet_length(screening), 0))
  FROM kv
 GROUP BY integration, connector;
