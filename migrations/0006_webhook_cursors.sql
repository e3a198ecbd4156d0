-- Outbound webhooks read the append-only event log as an outbox; this remembers how far each one got.
CREATE TABLE guardian_bot.webhook_cursors (
    webhook       text PRIMARY KEY,
    last_event_id bigint NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
