-- Issue 19: an approval binds the rehearsal's result (its digest is part of the preview's fingerprint), and every
-- rehearsal copy is recorded before it is made, so a copy whose worker died is found and dropped by the reconciler.
SET lock_timeout = '5s';
-- guardian: accept MG603 because the lock is taken last, on a small table, by a catalog-only column add
ALTER TABLE guardian_bot.requests ADD COLUMN rehearsal jsonb;  -- {"digest", "outcome", "copy"}; NULL: not rehearsed

CREATE TABLE guardian_bot.rehearsal_copies (
    name        text        PRIMARY KEY,           -- guardian_copy_req<id>: the database, or the branch's name
    request_id  bigint      NOT NULL,               -- no foreign key: kept until the copy is dropped, whatever became of the request
    environment text        NOT NULL,               -- whose server holds its maker's advisory lock; whose drop applies
    kind        text        NOT NULL CHECK (kind IN ('template', 'backup', 'command')),
    owner       text        NOT NULL,               -- host:pid of the process making it (shown, not trusted)
    created_at  timestamptz NOT NULL DEFAULT now()
);
