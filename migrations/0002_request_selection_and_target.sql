-- What a request asked for (named migrations or pending, at a ref), where it points (target host,
-- database and server version, shown on every card), and each migration's name in its own tool.
-- Constant defaults: no table rewrite on PostgreSQL >= 11.
SET lock_timeout = '5s';
ALTER TABLE guardian_bot.requests
    ADD COLUMN selection jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN target jsonb NOT NULL DEFAULT '{}';
