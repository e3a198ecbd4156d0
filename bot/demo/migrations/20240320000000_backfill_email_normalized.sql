-- Fails verification: the backfill forgets half of the customers, and the check below notices.
ALTER TABLE customers ADD COLUMN email_normalized text;
UPDATE customers SET email_normalized = lower(email) WHERE id % 2 = 0;

-- verify: SELECT count(*) = 0 FROM customers WHERE email_normalized IS NULL
