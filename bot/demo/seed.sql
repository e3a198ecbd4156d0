-- Demo data: enough rows that lock times and risk levels mean something.
INSERT INTO customers (id, email, name, created_at)
SELECT g, 'Customer' || g || '@Example.com', 'Customer ' || g, now() - (g || ' minutes')::interval
FROM generate_series(1, 50000) AS g;

INSERT INTO orders (id, customer_id, total_cents, placed_at)
SELECT g, 1 + (g * 7919) % 50000, 100 + (g * 31) % 90000, now() - (g || ' seconds')::interval
FROM generate_series(1, 200000) AS g;

ANALYZE customers;
ANALYZE orders;
