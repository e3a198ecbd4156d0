-- What a request asked for (named migrations or pending, at a ref) and where it points (target host,
-- database and server version, shown on every card to avoid target confusion).
-- Constant defaults: no table rewrite on PostgreSQL >= 11.
ALTER TABLE guardian_bot.requests ADD COLUMN selection jsonb NOT NULL DEFAULT '{}';
ALTER TABLE guardian_bot.requests ADD COLUMN target jsonb NOT NULL DEFAULT '{}';
-- How the migration's own tool names it (Prisma: the folder; Supabase/sql: the version digits).
ALTER TABLE guardian_bot.request_migrations ADD COLUMN version text;
ALTER TABLE guardian_bot.request_migrations ADD COLUMN ledger_name text;
