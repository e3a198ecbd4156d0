-- Undo: drop the nickname column (its data is lost).
ALTER TABLE customers DROP COLUMN nickname;
