"""Out-of-order files in a plain-SQL project: the status names the applied migrations they sort before."""
from __future__ import annotations

import psycopg

from bot.sources.apply import apply_migration
from bot.sources.layouts import load_snapshot
from bot.sources.ledgers import read_ledger
from bot.sources.models import MigrationState
from bot.sources.status import applied_after, compute_status


def test_older_file_after_applied_ones_names_them(git_repo, project, target_db_url):
    cfg = project(git_repo, "sql", "db/migrations")
    git_repo.write("db/migrations/1_accounts.sql", "CREATE TABLE accounts (id bigint);\n")
    git_repo.write("db/migrations/3_notes.sql", "CREATE TABLE notes (id bigint);\n")
    git_repo.write("db/migrations/5_tags.sql", "CREATE TABLE tags (id bigint);\n")
    git_repo.commit("three migrations")
    with psycopg.connect(target_db_url, autocommit=True) as conn:
        for m in load_snapshot(cfg).migrations:
            apply_migration(conn, "sql", m)
    git_repo.write("db/migrations/2_late.sql", "ALTER TABLE accounts ADD COLUMN email text;\n")
    git_repo.write("db/migrations/4_later.sql", "ALTER TABLE notes ADD COLUMN body text;\n")
    git_repo.write("db/migrations/6_new.sql", "ALTER TABLE tags ADD COLUMN name text;\n")
    git_repo.commit("a branch merged late, and a new migration")
    with psycopg.connect(target_db_url) as conn:
        status = compute_status(load_snapshot(cfg), read_ledger(conn, "sql"))
    assert [(m.version, m.state) for m in status.migrations] == [
        ("1", MigrationState.APPLIED), ("2", MigrationState.OUT_OF_ORDER), ("3", MigrationState.APPLIED),
        ("4", MigrationState.OUT_OF_ORDER), ("5", MigrationState.APPLIED), ("6", MigrationState.PENDING)]
    assert applied_after(status) == {"2": ("3_notes", "5_tags"), "4": ("5_tags",)}
    late = status.migrations[1]
    assert "sorts before 5_tags, which is" in late.detail and "rename it" in late.detail
