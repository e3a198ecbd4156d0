-- Safe: a nullable column without a default is a catalogue-only change.
ALTER TABLE customers ADD COLUMN nickname text;
