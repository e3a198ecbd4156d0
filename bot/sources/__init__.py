"""Migration files (prisma / supabase / sql) read at a pinned git commit, their ledgers, and status."""
