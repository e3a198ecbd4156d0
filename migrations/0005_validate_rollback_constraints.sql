-- Validate the constraints added in 0004 (SHARE UPDATE EXCLUSIVE: reads and writes go on) and index
-- the new foreign key so deleting a request does not scan the table.
SET lock_timeout = '5s';
ALTER TABLE guardian_bot.requests
    VALIDATE CONSTRAINT requests_source_check,
    VALIDATE CONSTRAINT requests_parent_fk;
-- guardian: accept MG101 because the bot's own requests table is small and upgrades run in one transaction
CREATE INDEX requests_parent_idx ON guardian_bot.requests (parent_request_id) WHERE parent_request_id IS NOT NULL;
