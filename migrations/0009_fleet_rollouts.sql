-- Fleet rollouts (issue 18): one approved request, many targets. The rollout's state and every target's lives
-- here, so any number of workers on any machines share it: a target is claimed (waiting -> queued) in a
-- transaction that holds FLEET_CLAIM_LOCK and counts the queued and running targets, per rollout (parallel) and
-- per server across all rollouts (per_server), so the caps hold whoever claims.
SET lock_timeout = '3s';

CREATE TABLE guardian_bot.fleet_rollouts (
    request_id   bigint      PRIMARY KEY REFERENCES guardian_bot.requests (id) ON DELETE CASCADE,
    state        text        NOT NULL DEFAULT 'running'
                             CHECK (state IN ('running', 'paused', 'halted', 'succeeded', 'aborted')),
    wave         integer     NOT NULL DEFAULT 0,   -- the highest wave whose targets may start
    next_wave_at timestamptz,                      -- the pause between waves: nothing starts before it
    reason       text,                             -- why it halted, paused or was aborted
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE guardian_bot.fleet_targets (
    request_id  bigint      NOT NULL REFERENCES guardian_bot.fleet_rollouts (request_id) ON DELETE CASCADE,
    target      text        NOT NULL,               -- the schema, the query's name or the url_envs variable
    position    integer     NOT NULL,               -- rollout order
    kind        text        NOT NULL CHECK (kind IN ('schema', 'database')),
    url_env     text,                               -- database-per-tenant: the variable holding its URL
    server      text        NOT NULL,               -- host:port: the per_server cap's key
    wave        integer,                            -- NULL: not part of the rollout (see note)
    files       text[]      NOT NULL DEFAULT '{}',  -- ledger names this target gets
    state       text        NOT NULL CHECK (state IN ('waiting', 'queued', 'running', 'succeeded', 'failed',
                                                      'skipped', 'excluded')),
    note        text,                               -- one line: the error, why skipped or excluded
    attempt     integer     NOT NULL DEFAULT 0,
    outbox_id   bigint,                             -- the claim's job intent
    job_id      text,                               -- the RQ job running it
    started_at  timestamptz,
    finished_at timestamptz,
    PRIMARY KEY (request_id, target)
);
-- The claim's question: queued and running targets per server and per rollout.
CREATE INDEX fleet_targets_active_idx ON guardian_bot.fleet_targets (server, request_id)
    WHERE state IN ('queued', 'running');
CREATE INDEX fleet_targets_waiting_idx ON guardian_bot.fleet_targets (request_id, wave, position)
    WHERE state = 'waiting';
