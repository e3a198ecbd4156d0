-- Undo: drop the index without blocking writes.
DROP INDEX CONCURRENTLY IF EXISTS orders_customer_id_idx;
