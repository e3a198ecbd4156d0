-- PostgreSQL is the truth, Redis only carries work: every "run this step" intent is written here in
-- the same transaction as the state change that causes it; the worker's pump moves rows to RQ (with
-- the step's deterministic job id) and marks them sent. A Redis outage delays work, never loses it.
-- The foreign key briefly locks guardian_bot.requests (SHARE ROW EXCLUSIVE): wait at most 3 s for it.
SET lock_timeout = '3s';

CREATE TABLE guardian_bot.job_outbox (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id  bigint      REFERENCES guardian_bot.requests (id) ON DELETE CASCADE,  -- NULL: not a request's step
    step        text        NOT NULL,                 -- a job name of workers/enqueue.py (never a function)
    attempt     bigint      NOT NULL DEFAULT 1,
    args        jsonb       NOT NULL DEFAULT '[]',    -- for jobs that are not a request's step
    run_at      timestamptz,                          -- held back until then (freezes, maintenance windows)
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz,
    sent_job_id text
);
-- The pump's question: unsent rows, oldest first.
CREATE INDEX job_outbox_unsent_idx ON guardian_bot.job_outbox (id) WHERE sent_at IS NULL;
-- The reconciler's question: the latest intent for a request's step.
CREATE INDEX job_outbox_request_step_idx ON guardian_bot.job_outbox (request_id, step, id DESC);
-- One unsent intent per request step and attempt: writing the same intent twice queues it once.
CREATE UNIQUE INDEX job_outbox_unsent_once_idx ON guardian_bot.job_outbox (request_id, step, attempt)
    WHERE sent_at IS NULL;
