-- Risky: a plain CREATE INDEX blocks every write to orders (200,000 rows) while it builds.
-- Guardian suggests CREATE INDEX CONCURRENTLY instead.
CREATE INDEX orders_customer_id_idx ON orders (customer_id);
