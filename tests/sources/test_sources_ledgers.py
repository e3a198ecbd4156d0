"""Applying migrations with their ledgers on a real PostgreSQL, and the status computed afterwards."""
from __future__ import annotations

import hashlib
import time

import psycopg
import pytest

from bot.sources.apply import ApplyError, LockBusy, advisory_lock, apply_migration, prisma_advisory_lock
from bot.sources.layouts import load_snapshot
from bot.sources.ledgers import LedgerError, prisma_checksum, prisma_checksum_matches, read_ledger
from bot.sources.models import MigrationState
from bot.sources.supabase_parser import split_and_trim
from bot.sources.status import compute_status, is_clean


def _apply_all(url, layout, snapshot, **kw):
    with psycopg.connect(url, autocommit=True) as conn:
        return [apply_migration(conn, layout, m, **kw) for m in snapshot.migrations]


def _status(url, snapshot):
    with psycopg.connect(url, autocommit=True) as conn:
        return compute_status(snapshot, read_ledger(conn, snapshot.layout))


def test_documenso_replays_through_the_prisma_adapter(documenso_repo, project, target_db_url, pgcrypto):
    cfg = project(documenso_repo, "prisma", "prisma/migrations")
    snap = load_snapshot(cfg)
    with psycopg.connect(target_db_url, autocommit=True) as conn:
        before = compute_status(snap, read_ledger(conn, "prisma"))
        assert before.summary["pending"] == 163 and not is_clean(before)
        started = time.monotonic()
        with prisma_advisory_lock(conn):
            results = [apply_migration(conn, "prisma", m, request_id="req-1", approvers=("U1", "U2")) for m in snap.migrations]
        elapsed = time.monotonic() - started
        print(f"\n163 documenso migrations applied through the Prisma adapter in {elapsed:.2f}s")
        assert all(r.duration_ms >= 0 and r.finished_at >= r.started_at for r in results)
        rows = conn.execute(
            "SELECT migration_name, checksum, finished_at IS NOT NULL, rolled_back_at, logs, applied_steps_count, "
            "length(id), started_at <= finished_at FROM _prisma_migrations ORDER BY migration_name"
        ).fetchall()
        sidecar = conn.execute(
            "SELECT count(*), bool_and(succeeded), bool_and(request_id = 'req-1'), bool_and(approvers = '{U1,U2}') "
            "FROM guardian.applied_migrations WHERE layout = 'prisma'"
        ).fetchone()
    assert len(rows) == 163
    for m, row in zip(snap.migrations, rows):
        on_disk = (documenso_repo.path / m.path).read_bytes()
        assert row[0] == m.ledger_name
        assert row[1] == hashlib.sha256(on_disk).hexdigest() == m.sha256
        assert row[2:] == (True, None, None, 1, 36, True)
    assert sidecar == (163, True, True, True)
    after = _status(target_db_url, snap)
    assert after.summary["applied"] == 163 and after.summary["pending"] == 0 and is_clean(after)
    # editing one applied file: a new commit, same target
    victim = snap.migrations[40]
    documenso_repo.write(victim.path, victim.sql + "\n-- edited after apply\n")
    documenso_repo.commit("edit an applied migration")
    edited = _status(target_db_url, load_snapshot(cfg))
    modified = edited.by_state(MigrationState.MODIFIED)
    assert [m.version for m in modified] == [victim.version] and edited.summary["applied"] == 162
    assert not is_clean(edited)


def test_prisma_table_has_prismas_exact_shape(target_db_url, git_repo, project):
    git_repo.write("prisma/migrations/20240101000000_init/migration.sql", "CREATE TABLE t (id int);")
    git_repo.commit()
    _apply_all(target_db_url, "prisma", load_snapshot(project(git_repo, "prisma", "prisma/migrations")))
    with psycopg.connect(target_db_url) as conn:
        cols = conn.execute(
            """SELECT column_name, data_type, character_maximum_length, is_nullable, column_default
               FROM information_schema.columns WHERE table_name = '_prisma_migrations' ORDER BY ordinal_position"""
        ).fetchall()
        pk = conn.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = '_prisma_migrations'::regclass AND i.indisprimary"
        ).fetchall()
    assert cols == [
        ("id", "character varying", 36, "NO", None),
        ("checksum", "character varying", 64, "NO", None),
        ("finished_at", "timestamp with time zone", None, "YES", None),
        ("migration_name", "character varying", 255, "NO", None),
        ("logs", "text", None, "YES", None),
        ("rolled_back_at", "timestamp with time zone", None, "YES", None),
        ("started_at", "timestamp with time zone", None, "NO", "now()"),
        ("applied_steps_count", "integer", None, "NO", "0"),
    ]
    assert pk == [("id",)]


def test_prisma_failure_records_a_failed_row_that_blocks_until_resolved(git_repo, project, target_db_url):
    git_repo.write("prisma/migrations/20240101000000_ok/migration.sql", "CREATE TABLE a (id int);")
    git_repo.write("prisma/migrations/20240102000000_bad/migration.sql",
                   "CREATE TABLE b (id int);\nALTER TABLE missing ADD COLUMN x int;")
    git_repo.write("prisma/migrations/20240103000000_next/migration.sql", "CREATE TABLE c (id int);")
    git_repo.commit()
    ok, bad, nxt = load_snapshot(project(git_repo, "prisma", "prisma/migrations")).migrations
    with psycopg.connect(target_db_url, autocommit=True) as conn:
        apply_migration(conn, "prisma", ok)
        with pytest.raises(ApplyError) as info:
            apply_migration(conn, "prisma", bad)
        assert info.value.code == "apply-failed" and "missing" in info.value.message
        assert conn.execute("SELECT to_regclass('b')").fetchone()[0] is None  # the file rolled back as a whole
        row = conn.execute(
            "SELECT finished_at, rolled_back_at, logs, applied_steps_count, checksum FROM _prisma_migrations "
            "WHERE migration_name = %s", (bad.ledger_name,)
        ).fetchone()
        assert row[0] is None and row[1] is None and "missing" in row[2] and row[3] == 0
        assert row[4] == prisma_checksum(bad.sql)
        with pytest.raises(LedgerError) as blocked:
            apply_migration(conn, "prisma", nxt)
        assert blocked.value.code == "failed-migration" and bad.ledger_name in blocked.value.message
        snap = load_snapshot(project(git_repo, "prisma", "prisma/migrations"))
        status = compute_status(snap, read_ledger(conn, "prisma"))
        assert [(m.version, m.state) for m in status.migrations] == [
            ("20240101000000", MigrationState.APPLIED), ("20240102000000", MigrationState.FAILED),
            ("20240103000000", MigrationState.PENDING)]
        assert "missing" in status.migrations[1].detail
        # `prisma migrate resolve --rolled-back` marks it; then the fixed file applies and the next one too
        conn.execute("UPDATE _prisma_migrations SET rolled_back_at = now() WHERE migration_name = %s",
                     (bad.ledger_name,))
    git_repo.write("prisma/migrations/20240102000000_bad/migration.sql", "CREATE TABLE b (id int);")
    git_repo.commit("fix")
    snap = load_snapshot(project(git_repo, "prisma", "prisma/migrations"))
    with psycopg.connect(target_db_url, autocommit=True) as conn:
        apply_migration(conn, "prisma", snap.migrations[1])
        apply_migration(conn, "prisma", snap.migrations[2])
        assert conn.execute("SELECT count(*) FROM _prisma_migrations").fetchone()[0] == 4
        assert is_clean(compute_status(snap, read_ledger(conn, "prisma")))
        with pytest.raises(LedgerError) as again:
            apply_migration(conn, "prisma", snap.migrations[0])
        assert again.value.code == "already-applied"


def test_prisma_checksum_tolerates_line_endings_like_prisma(git_repo, project, target_db_url):
    assert prisma_checksum("hello") == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    legacy = "".join(format(b, "x") for b in hashlib.sha256(b"a\n").digest())
    assert len(legacy) < 64 and prisma_checksum_matches("a\n", legacy)
    git_repo.write("prisma/migrations/20240101000000_lf/migration.sql", "CREATE TABLE a (id int);\nSELECT 1;\n")
    git_repo.commit()
    cfg = project(git_repo, "prisma", "prisma/migrations")
    _apply_all(target_db_url, "prisma", load_snapshot(cfg))
    git_repo.write("prisma/migrations/20240101000000_lf/migration.sql", "CREATE TABLE a (id int);\r\nSELECT 1;\r\n")
    git_repo.commit("crlf")
    assert is_clean(_status(target_db_url, load_snapshot(cfg)))
    git_repo.write("prisma/migrations/20240101000000_lf/migration.sql", "CREATE TABLE a (id bigint);\nSELECT 1;\n")
    git_repo.commit("real edit")
    assert _status(target_db_url, load_snapshot(cfg)).summary["modified"] == 1


def test_supabase_project_ledger_sidecar_and_status(supabase_repo, project, target_db_url):
    cfg = project(supabase_repo, "supabase", "supabase/migrations")
    snap = load_snapshot(cfg)
    _apply_all(target_db_url, "supabase", snap, backup_id="bk-1")
    with psycopg.connect(target_db_url) as conn:
        rows = conn.execute(
            "SELECT version, name, statements FROM supabase_migrations.schema_migrations ORDER BY version"
        ).fetchall()
        backups = conn.execute("SELECT DISTINCT backup_id FROM guardian.applied_migrations").fetchall()
        rls = conn.execute("SELECT relrowsecurity FROM pg_class WHERE oid = 'public.profiles'::regclass").fetchone()
    assert [r[:2] for r in rows] == [("20240101000000", "create_profiles"), ("20240102000000", "profiles_policies"),
                                     ("20240103000000", "add_bio")]
    assert len(rows[0][2]) == 2 and rows[0][2][1] == "alter table public.profiles enable row level security"
    assert len(rows[1][2]) == 2 and "a semicolon inside a dollar-quoted body" in rows[1][2][1]
    assert backups == [("bk-1",)] and rls == (True,)
    assert is_clean(_status(target_db_url, snap))
    # modified after apply: Supabase keeps no checksum, our sidecar does
    supabase_repo.write("supabase/migrations/20240103000000_add_bio.sql", "alter table public.profiles add column bio varchar(10);\n")
    # an older file appears after newer ones were applied: out of order
    supabase_repo.write("supabase/migrations/20240101120000_late.sql", "select 1;\n")
    # an applied file disappears: missing locally
    (supabase_repo.path / "supabase/migrations/20240102000000_profiles_policies.sql").unlink()
    supabase_repo.commit("drift")
    status = _status(target_db_url, load_snapshot(cfg))
    states = {m.version: m.state for m in status.migrations}
    assert states == {
        "20240101000000": MigrationState.APPLIED,
        "20240101120000": MigrationState.OUT_OF_ORDER,
        "20240103000000": MigrationState.MODIFIED,
        "20240102000000": MigrationState.MISSING_LOCALLY,
    }


def test_supabase_row_written_by_the_cli_alone_is_checked_against_its_statements(supabase_repo, project,
                                                                                 target_db_url):
    """A row `supabase db push` wrote holds the CLI's split of the file (pkg/migration/file.go insertVersionSQL): the
    file is compared with it. An old CLI's row without statements cannot be checked."""
    snap = load_snapshot(project(supabase_repo, "supabase", "supabase/migrations"))
    second, third = snap.migrations[1], snap.migrations[2]
    with psycopg.connect(target_db_url, autocommit=True) as conn:
        apply_migration(conn, "supabase", snap.migrations[0])
        conn.execute("INSERT INTO supabase_migrations.schema_migrations (version, name, statements) "
                     "VALUES (%s, %s, %s)", (second.version, second.name, split_and_trim(second.sql)))
        conn.execute("INSERT INTO supabase_migrations.schema_migrations (version, name) VALUES (%s, %s)",
                     (third.version, third.name))
        status = compute_status(snap, read_ledger(conn, "supabase"))
        assert [m.state for m in status.migrations] == [MigrationState.APPLIED] * 3
        assert status.migrations[1].detail is None and "no sidecar row" in status.migrations[2].detail
        conn.execute("UPDATE supabase_migrations.schema_migrations SET statements = %s WHERE version = %s",
                     (["select 'something else'"], second.version))
        status = compute_status(snap, read_ledger(conn, "supabase"))
    assert status.migrations[1].state == MigrationState.MODIFIED


def test_sql_project_schema_history_and_modification(sql_repo, project, target_db_url):
    cfg = project(sql_repo, "sql", "db/migrations")
    snap = load_snapshot(cfg)
    _apply_all(target_db_url, "sql", snap)
    with psycopg.connect(target_db_url) as conn:
        history = conn.execute("SELECT version, name, sha256 FROM guardian.schema_history ORDER BY version::int").fetchall()
        conn.execute(snap.migrations[0].verify_sql)  # the verify companion runs against the result
    assert history == [(m.version, m.name, m.sha256) for m in snap.migrations]
    assert is_clean(_status(target_db_url, snap))
    sql_repo.write("db/migrations/2_add_status.sql", "ALTER TABLE accounts ADD COLUMN status text;\n")
    sql_repo.write("db/migrations/11_more.sql", "SELECT 1;\n")
    sql_repo.commit("edit + new")
    status = _status(target_db_url, load_snapshot(cfg))
    assert [(m.version, m.state.value) for m in status.migrations] == [
        ("1", "applied"), ("2", "modified"), ("10", "applied"), ("11", "pending")]


def test_failed_sql_apply_is_in_the_sidecar_and_status(git_repo, project, target_db_url):
    git_repo.write("m/1_bad.sql", "SELECT 1/0;")
    git_repo.commit()
    snap = load_snapshot(project(git_repo, "sql", "m"))
    with psycopg.connect(target_db_url, autocommit=True) as conn:
        with pytest.raises(ApplyError) as info:
            apply_migration(conn, "sql", snap.migrations[0], request_id="r9")
        assert "22012" in info.value.message
        assert conn.execute("SELECT count(*) FROM guardian.schema_history").fetchone() == (0,)
        failed = conn.execute("SELECT succeeded, error, request_id FROM guardian.applied_migrations").fetchone()
        status = compute_status(snap, read_ledger(conn, "sql"))
    assert failed[0] is False and "division by zero" in failed[1] and failed[2] == "r9"
    # the history ledger has no row, so the file is pending (a fixed file plans again); the sidecar tells the story
    assert status.migrations[0].state == MigrationState.PENDING
    assert "last attempt failed (division by zero" in status.migrations[0].detail
    assert "unchanged since" in status.migrations[0].detail


def test_ledger_in_an_unexpected_shape_is_refused_and_nothing_is_written(git_repo, project, target_db_url):
    git_repo.write("prisma/migrations/20240101000000_a/migration.sql", "CREATE TABLE a (id int);")
    git_repo.commit()
    snap = load_snapshot(project(git_repo, "prisma", "prisma/migrations"))
    with psycopg.connect(target_db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE _prisma_migrations (id int PRIMARY KEY, name text)")
        with pytest.raises(LedgerError) as info:
            apply_migration(conn, "prisma", snap.migrations[0])
        assert info.value.code == "ledger-shape" and "checksum" in info.value.message
        with pytest.raises(LedgerError):
            read_ledger(conn, "prisma")
        assert conn.execute("SELECT to_regclass('a'), to_regnamespace('guardian')").fetchone() == (None, None)


def test_prisma_advisory_lock_is_exclusive(target_db_url):
    with psycopg.connect(target_db_url, autocommit=True) as first, psycopg.connect(target_db_url, autocommit=True) as second:
        with prisma_advisory_lock(first):
            held = first.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 72707369 "
                                 "AND pid = pg_backend_pid()").fetchone()[0]
            assert held == 1
            with pytest.raises(LockBusy) as info:
                with advisory_lock(second, 72707369, 0.3, holder="prisma migrate"):
                    pass
            assert "72707369" in info.value.message
        with prisma_advisory_lock(second, timeout_s=1):
            pass


def test_a_custom_executor_runs_inside_the_one_transaction(git_repo, project, target_db_url):
    git_repo.write("m/1_a.sql", "CREATE TABLE a (id int);\nCREATE TABLE b (id int);\n")
    git_repo.write("m/2_b.sql", "CREATE TABLE c (id int);\n")
    git_repo.commit()
    first, second = load_snapshot(project(git_repo, "sql", "m")).migrations
    seen = []

    def per_statement(conn, migration):
        conn.execute("SELECT set_config('lock_timeout', '1500ms', true)")
        seen.append((conn.info.transaction_status.name, conn.execute("SHOW lock_timeout").fetchone()[0]))
        for statement in migration.sql.split(";"):
            if statement.strip():
                conn.execute(statement)

    def interrupted(conn, migration):
        conn.execute(migration.sql)
        raise KeyboardInterrupt  # not a database error: everything rolls back, nothing is recorded

    with psycopg.connect(target_db_url, autocommit=True) as conn:
        apply_migration(conn, "sql", first, execute=per_statement)
        assert seen == [("INTRANS", "1500ms")]
        assert conn.execute("SHOW lock_timeout").fetchone()[0] == "0"  # local to the migration's transaction
        with pytest.raises(KeyboardInterrupt):
            apply_migration(conn, "sql", second, execute=interrupted)
        assert conn.execute("SELECT to_regclass('c'), (SELECT count(*) FROM guardian.schema_history), "
                            "(SELECT count(*) FROM guardian.applied_migrations)").fetchone() == (None, 1, 1)
