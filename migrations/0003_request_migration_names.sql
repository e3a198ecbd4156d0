-- How each migration is named by its own tool (Prisma: the folder; Supabase/sql: the version digits).
SET lock_timeout = '5s';
ALTER TABLE guardian_bot.request_migrations
    ADD COLUMN version text,
    ADD COLUMN ledger_name text;
