-- Migration Guardian's own state (never a migration under review).
-- Applied by `guardian db upgrade`, one transaction per file, under an advisory lock.
-- Every table is new in this file, so the locks taken here block nobody.

CREATE TABLE guardian_bot.requests (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    environment        text        NOT NULL,
    requester          text        NOT NULL,            -- Slack user id
    source             text        NOT NULL DEFAULT 'repo' CHECK (source IN ('repo', 'adhoc')),
    status             text        NOT NULL DEFAULT 'analyzing',
    risk               text        CHECK (risk IN ('low', 'medium', 'high', 'critical')),
    risk_reasons       jsonb       NOT NULL DEFAULT '[]',
    git_ref            text,
    git_commit         text,
    target_fingerprint text,
    policy_version     text,
    channel            text,
    message_ts         text,                            -- the status card (root message)
    thread_ts          text,
    run_after          timestamptz,                     -- maintenance window start, when waiting
    failed_step        text,
    db_state           text CHECK (db_state IN ('untouched', 'rolled_back', 'partially_applied',
                                                'applied_unverified', 'applied')),
    error              text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT requests_status_known CHECK (status IN (
        'analyzing', 'awaiting_approval', 'approved', 'queued', 'backing_up', 'applying',
        'verifying', 'succeeded', 'rejected', 'cancelled', 'expired', 'failed'))
);
CREATE INDEX requests_environment_created_idx ON guardian_bot.requests (environment, created_at DESC);
CREATE INDEX requests_open_idx ON guardian_bot.requests (status)
    WHERE status NOT IN ('succeeded', 'rejected', 'cancelled', 'expired', 'failed');

CREATE TABLE guardian_bot.request_migrations (
    request_id  bigint  NOT NULL REFERENCES guardian_bot.requests (id) ON DELETE CASCADE,
    position    integer NOT NULL,
    name        text    NOT NULL,
    path        text,                                  -- NULL for pasted ad-hoc SQL
    sha256      text    NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    sql         text    NOT NULL,
    down_sql    text,
    verify_sql  text,
    risk        text    CHECK (risk IN ('low', 'medium', 'high', 'critical')),
    report      jsonb,
    PRIMARY KEY (request_id, position)
);

CREATE TABLE guardian_bot.decisions (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id         bigint      NOT NULL REFERENCES guardian_bot.requests (id) ON DELETE CASCADE,
    user_id            text        NOT NULL,
    decision           text        NOT NULL CHECK (decision IN ('approve', 'reject')),
    reason             text,
    -- what the decision is bound to; any change voids it
    sha256s            jsonb       NOT NULL,
    git_commit         text,
    environment        text        NOT NULL,
    target_fingerprint text,
    policy_version     text,
    voided_at          timestamptz,
    void_reason        text,
    created_at         timestamptz NOT NULL DEFAULT now()
);
-- One live decision per person per request: 50 concurrent clicks record one.
CREATE UNIQUE INDEX decisions_one_live_per_user ON guardian_bot.decisions (request_id, user_id)
    WHERE voided_at IS NULL;

CREATE TABLE guardian_bot.steps (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id  bigint      NOT NULL REFERENCES guardian_bot.requests (id) ON DELETE CASCADE,
    step        text        NOT NULL,        -- analyze | backup | apply | verify | report | rollback | restore
    attempt     integer     NOT NULL DEFAULT 1,
    status      text        NOT NULL DEFAULT 'running'
                CHECK (status IN ('running', 'succeeded', 'failed', 'skipped')),
    job_id      text,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    duration_ms integer,
    outcome     jsonb       NOT NULL DEFAULT '{}',
    error       text
);
CREATE INDEX steps_request_idx ON guardian_bot.steps (request_id, id);

CREATE TABLE guardian_bot.incidents (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id  bigint      NOT NULL REFERENCES guardian_bot.requests (id),
    status      text        NOT NULL DEFAULT 'open'
                CHECK (status IN ('open', 'mitigating', 'mitigated', 'resolved')),
    channel     text,
    thread_ts   text,
    summary     text        NOT NULL DEFAULT '',
    postmortem  text,
    opened_by   text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz
);
-- At most one open incident per request.
CREATE UNIQUE INDEX incidents_one_open_per_request ON guardian_bot.incidents (request_id)
    WHERE status <> 'resolved';

CREATE TABLE guardian_bot.incident_notes (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id bigint      NOT NULL REFERENCES guardian_bot.incidents (id) ON DELETE CASCADE,
    author      text        NOT NULL,
    text        text        NOT NULL,
    source      text        NOT NULL CHECK (source IN ('command', 'thread', 'pin')),
    slack_ts    text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
-- A Slack message becomes a note once, however often Slack redelivers it.
CREATE UNIQUE INDEX incident_notes_slack_ts ON guardian_bot.incident_notes (incident_id, slack_ts, source)
    WHERE slack_ts IS NOT NULL;

CREATE TABLE guardian_bot.backups (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id   bigint REFERENCES guardian_bot.requests (id),
    environment  text        NOT NULL,
    path         text        NOT NULL,     -- never contains a password or a URL
    scope        text        NOT NULL DEFAULT 'full',
    format       text        NOT NULL DEFAULT 'custom',
    sha256       text,
    size_bytes   bigint,
    duration_ms  integer,
    verified     boolean     NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    deleted_at   timestamptz
);

CREATE TABLE guardian_bot.freezes (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    environment text        NOT NULL,
    reason      text        NOT NULL,
    created_by  text        NOT NULL,
    starts_at   timestamptz NOT NULL DEFAULT now(),
    ends_at     timestamptz NOT NULL,
    lifted_at   timestamptz,
    lifted_by   text,
    CHECK (ends_at > starts_at)
);
CREATE INDEX freezes_environment_idx ON guardian_bot.freezes (environment, ends_at DESC);

-- Append-only, hash-chained audit log: hash = sha256(prev_hash || canonical row).
CREATE TABLE guardian_bot.events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id  bigint REFERENCES guardian_bot.requests (id),
    incident_id bigint REFERENCES guardian_bot.incidents (id),
    actor       text        NOT NULL,        -- Slack user id, or 'guardian' for the bot itself
    kind        text        NOT NULL,
    detail      jsonb       NOT NULL DEFAULT '{}',
    permalink   text,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    prev_hash   text        NOT NULL,
    hash        text        NOT NULL UNIQUE
);
CREATE INDEX events_request_idx ON guardian_bot.events (request_id, id);
CREATE INDEX events_incident_idx ON guardian_bot.events (incident_id, id);

CREATE FUNCTION guardian_bot.events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'guardian_bot.events is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER events_no_update_or_delete
    BEFORE UPDATE OR DELETE ON guardian_bot.events
    FOR EACH ROW EXECUTE FUNCTION guardian_bot.events_append_only();
CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON guardian_bot.events
    FOR EACH STATEMENT EXECUTE FUNCTION guardian_bot.events_append_only();
