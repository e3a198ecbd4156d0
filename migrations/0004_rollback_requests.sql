-- Rollback requests: the down SQL of a failed request, run through the same approvals and pipeline.
-- Constraints are added NOT VALID here and validated in the next file (its own transaction).
SET lock_timeout = '5s';
-- guardian: accept MG210 because the same statement adds the wider replacement check
-- guardian: accept MG214 because 0005 adds the index
ALTER TABLE guardian_bot.requests
    ADD COLUMN parent_request_id bigint,
    DROP CONSTRAINT requests_source_check,
    ADD CONSTRAINT requests_source_check CHECK (source IN ('repo', 'adhoc', 'rollback')) NOT VALID,
    ADD CONSTRAINT requests_parent_fk FOREIGN KEY (parent_request_id) REFERENCES guardian_bot.requests (id) NOT VALID;
