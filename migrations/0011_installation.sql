-- One row naming this installation of Guardian (its bot database). Rehearsal copies carry it in their database
-- names and advisory-lock keys, so two installations on one PostgreSQL server (a staging Guardian and a
-- production one, two test runs) never wait for, take over or sweep each other's copies of request #N.
CREATE TABLE guardian_bot.installation (
    singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),   -- exactly one row
    id         text        NOT NULL CHECK (id ~ '^[0-9a-f]{8}$'),
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO guardian_bot.installation (id) VALUES (substr(md5(random()::text || clock_timestamp()::text), 1, 8));
