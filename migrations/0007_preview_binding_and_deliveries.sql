-- Every signed Slack delivery (slash command, button click, modal submission, event) is processed at
-- most once: its Slack id is claimed here first. Slack signatures stay valid for 5 minutes, so a
-- captured request can be replayed; rows are kept a day, far longer than that window.
CREATE TABLE guardian_bot.slack_deliveries (
    key         text        PRIMARY KEY,
    kind        text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX slack_deliveries_received_at ON guardian_bot.slack_deliveries (received_at);

-- An approval binds to the preview its approver saw: the decision keeps that preview's fingerprint.
SET lock_timeout = '5s';
-- guardian: accept MG603 because the lock is taken last, on a small table, by a catalog-only column add
ALTER TABLE guardian_bot.decisions ADD COLUMN preview_fingerprint text;
