-- Undo: drop the half-filled column.
ALTER TABLE customers DROP COLUMN email_normalized;
