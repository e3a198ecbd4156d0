"""A committed rehearsal on a copy (bot/pg/rehearsal.py commit=True, bot/pg/serverwide.py) never commits what lives
outside the copy's database: roles (plain or inside a DO block), a database's settings, ALTER SYSTEM (issue 19).
The copy shares the target's server, so each test looks at the server afterwards and cleans up even on failure."""
from __future__ import annotations

import logging
import re
import threading
import uuid

import psycopg
import pytest
from psycopg import conninfo

from bot.config import EnvironmentConfig, RehearsalCopyConfig
from bot.pg.connect import connect_target
from bot.pg.copy import copy_of
from bot.pg.rehearsal import rehearse
from bot.pg.serverwide import alone_refusal, shared_change
from bot.risk.parse import split_statements


def test_only_database_local_statements_run_alone_on_a_copy():
    local = ["CREATE INDEX CONCURRENTLY i ON t (a)", "DROP INDEX CONCURRENTLY i", "REINDEX INDEX CONCURRENTLY i",
             "REINDEX TABLE CONCURRENTLY t", "REINDEX SCHEMA s", "VACUUM t", "VACUUM", "CLUSTER",
             "ALTER TYPE mood ADD VALUE 'meh'", "ALTER TABLE p DETACH PARTITION c CONCURRENTLY"]
    server = {"ALTER SYSTEM SET work_mem = '7MB'": "ALTER SYSTEM changes the whole server",
              "CREATE DATABASE d": "CREATE DATABASE",
              "DROP DATABASE d": "DROP DATABASE", "CREATE TABLESPACE ts LOCATION '/x'": "CREATE TABLESPACE",
              "DROP TABLESPACE ts": "DROP TABLESPACE", "ALTER DATABASE d SET TABLESPACE ts": "ALTER DATABASE",
              "REINDEX SYSTEM d": "REINDEX SYSTEM", "REINDEX DATABASE d": "REINDEX SYSTEM/DATABASE",
              "DROP SUBSCRIPTION s": "DROP SUBSCRIPTION", "DISCARD ALL": "DISCARD is not known",
              "VACUUM FULL": "VACUUM FULL of the shared catalogs", "VACUUM (FULL) pg_authid": "VACUUM FULL of the",
              "REINDEX SCHEMA pg_catalog": "REINDEX SCHEMA pg_catalog"}
    local.append("VACUUM FULL t")
    for sql in local:
        (p,) = split_statements(sql)
        assert alone_refusal(p) is None, sql
    for sql, start in server.items():
        (p,) = split_statements(sql)
        reason = alone_refusal(p)
        assert reason and reason.startswith(start) and reason.endswith(": not rehearsed on a copy"), (sql, reason)


def test_statements_naming_server_wide_objects_are_known_by_their_parse():
    named = {"CREATE ROLE r": "roles", "ALTER ROLE r PASSWORD 'x'": "roles", "DROP ROLE r": "roles",
             "ALTER USER u RENAME TO v": "roles", "GRANT r TO s": "role memberships", "REVOKE r FROM s": "role memberships",
             "ALTER ROLE r SET work_mem = '7MB'": "role and database settings",
             "ALTER DATABASE d SET work_mem = '7MB'": "role and database settings",
             "ALTER DATABASE d OWNER TO r": "databases", "ALTER DATABASE d RENAME TO e": "databases",
             "ALTER DATABASE d CONNECTION LIMIT 3": "databases", "GRANT CONNECT ON DATABASE d TO r": "databases",
             "COMMENT ON ROLE r IS 'x'": "roles", "SECURITY LABEL ON DATABASE d IS 'x'": "databases",
             "ALTER TABLESPACE t SET (seq_page_cost = 1)": "tablespaces",
             "GRANT SET ON PARAMETER work_mem TO r": "parameter privileges"}
    for sql, label in named.items():
        (p,) = split_statements(sql)
        assert shared_change(p) == label, sql
    for sql in ("CREATE TABLE t (a int)", "GRANT SELECT ON t TO r", "COMMENT ON TABLE t IS 'x'", "ALTER TABLE t OWNER TO r",
                "DO $$ BEGIN CREATE ROLE r; END $$", "REASSIGN OWNED BY a TO b"):
        (p,) = split_statements(sql)
        assert shared_change(p) is None, sql


def _env(monkeypatch, url: str) -> EnvironmentConfig:
    monkeypatch.setenv("GT_COPYSAFE_TARGET_URL", url)
    return EnvironmentConfig(name="production", database_url_env="GT_COPYSAFE_TARGET_URL", production=True,
                             rehearsal=RehearsalCopyConfig(copy="template"))


def _on_copy(env: EnvironmentConfig, sql: str, look: str | None = None):
    """The rehearsal of ``sql`` committed on a fresh template copy, and what ``look`` returns on the copy after it."""
    with copy_of(env, 10_000_000 + uuid.uuid4().int % 80_000_000) as copy:
        with connect_target(copy.url, "production (copy)") as conn:
            result = rehearse(conn, [("001_x.sql", sql)], commit=True)
            seen = conn.execute(look).fetchall() if look else None
    return result, seen


def _role_exists(admin_url: str, role: str) -> bool:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s", (role,)).fetchone()[0] == 1


@pytest.fixture
def role(pg_admin_url):
    name = f"guardian_test_copysafe_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP ROLE IF EXISTS "{name}"')


def _rows(result):
    return [s for f in result.files for s in f.statements]


def test_create_role_on_a_copy_is_rehearsed_then_rolled_back_and_leaves_no_role(populated_db, pg_admin_url, role,
                                                                                monkeypatch):
    sql = f"CREATE TABLE copysafe_a (id int);\nCREATE ROLE {role};\nCREATE TABLE copysafe_b (id int)"
    result, tables = _on_copy(_env(monkeypatch, populated_db), sql,
                              "SELECT relname FROM pg_class WHERE relname LIKE 'copysafe_%' ORDER BY 1")
    assert not _role_exists(pg_admin_url, role)
    create_a, create_role, create_b = _rows(result)
    assert create_role.rehearsed and not create_role.error
    assert create_role.reason == ("changes server-wide objects (roles): rehearsed, rolled back, not committed on "
                                  "the copy")
    assert create_a.reason == create_role.reason  # the same transaction part
    assert not create_a.after_skip and not create_b.after_skip  # one part, rolled back as a whole at its end
    assert tables == []  # the part's database-local effects went with it
    assert len(result.warnings) == 1 and result.warnings[0].startswith(
        "001_x.sql lines 1, 2, 3: changes server-wide objects (roles): rehearsed, rolled back")


def test_create_role_inside_a_do_block_is_seen_and_rolled_back(populated_db, pg_admin_url, role, monkeypatch):
    sql = (f"DO $$ BEGIN CREATE ROLE {role} NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;\n"
           "CREATE INDEX CONCURRENTLY items_sku_idx ON items (sku);\n"
           "CREATE TABLE copysafe_after (id int)")
    result, seen = _on_copy(_env(monkeypatch, populated_db), sql,
                            "SELECT relname FROM pg_class WHERE relname IN ('items_sku_idx', 'copysafe_after')")
    assert not _role_exists(pg_admin_url, role)
    do, index, after = _rows(result)
    assert do.kind == "DoStmt" and "server-wide objects (roles" in do.reason
    # what ran after the rolled-back part ran on a copy without it: said, as after a skipped statement
    assert index.rehearsed and not index.transactional and index.after_skip
    assert after.rehearsed and after.after_skip
    assert sorted(r[0] for r in seen) == ["copysafe_after", "items_sku_idx"]


def test_alter_database_set_naming_the_target_leaves_its_settings_alone(populated_db, pg_admin_url, monkeypatch):
    target = conninfo.conninfo_to_dict(populated_db)["dbname"]
    settings = ("SELECT coalesce(array_agg(s.setconfig::text ORDER BY s.setrole), '{}') FROM pg_db_role_setting s "
                "JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = %s")
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        before = admin.execute(settings, (target,)).fetchone()[0]
    try:
        result, _ = _on_copy(_env(monkeypatch, populated_db), f"ALTER DATABASE \"{target}\" SET work_mem = '7MB'")
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:
            assert admin.execute(settings, (target,)).fetchone()[0] == before
        (row,) = _rows(result)
        assert row.rehearsed and "server-wide objects (role and database settings)" in row.reason
        assert result.warnings
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:
            if admin.execute(settings, (target,)).fetchone()[0] != before:
                admin.execute(f'ALTER DATABASE "{target}" RESET work_mem')


def test_alter_system_is_never_run_on_a_copy(populated_db, pg_admin_url, monkeypatch):
    auto = ("SELECT count(*) FROM pg_file_settings WHERE name = 'work_mem' AND setting = '7MB' "
            "AND sourcefile LIKE '%postgresql.auto.conf'")
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        before = admin.execute(auto).fetchone()[0]
    try:
        result, seen = _on_copy(_env(monkeypatch, populated_db),
                                "ALTER SYSTEM SET work_mem = '7MB';\nCREATE TABLE copysafe_later (id int)",
                                "SELECT count(*) FROM pg_class WHERE relname = 'copysafe_later'")
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:
            assert admin.execute(auto).fetchone()[0] == before
        system, later = _rows(result)
        assert not system.rehearsed and not system.transactional
        assert system.reason == "ALTER SYSTEM changes the whole server: not rehearsed on a copy"
        assert later.rehearsed and later.after_skip and seen == [(1,)]
        assert result.warnings == ("001_x.sql line 1: ALTER SYSTEM changes the whole server: not rehearsed on a copy",)
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:
            if admin.execute(auto).fetchone()[0] != before:
                admin.execute("ALTER SYSTEM RESET work_mem")


def test_a_plain_migration_still_commits_on_the_copy_and_is_measured(populated_db, monkeypatch, caplog):
    sql = ("CREATE TABLE copysafe_plain (id bigint PRIMARY KEY, item_id bigint);\n"
           "CREATE INDEX CONCURRENTLY items_price_idx ON items (price)")
    with caplog.at_level(logging.INFO, logger="bot.pg.rehearsal"):
        result, seen = _on_copy(_env(monkeypatch, populated_db), sql,
                                "SELECT relname FROM pg_class WHERE relname IN ('copysafe_plain', 'items_price_idx')")
    create, index = _rows(result)
    assert sorted(r[0] for r in seen) == ["copysafe_plain", "items_price_idx"]
    assert create.rehearsed and create.transactional and create.reason is None and create.held_ms is not None
    assert index.rehearsed and not index.transactional and index.reason is None and not index.after_skip
    assert index.duration_ms > 0 and index.held_ms == index.duration_ms
    assert any(lk.relation == "items" for lk in index.observed_locks)
    assert result.warnings == ()
    checked = [m for m in caplog.messages if "shared catalogs checked before" in m]
    assert checked and re.search(r"before [12] commit", checked[0])


def test_a_password_change_the_catalog_check_cannot_see_is_rolled_back_by_its_parse(populated_db, pg_admin_url, role,
                                                                                     monkeypatch):
    """A rehearsal role that is not a superuser reads roles through pg_roles, without passwords: ALTER ROLE …
    PASSWORD is kept off the copy's server by its parse."""
    rehearser = f"{role}_rehearser"
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'before-1'")
        admin.execute(f"CREATE ROLE {rehearser} LOGIN CREATEROLE")
        if admin.info.server_version >= 160000:  # PostgreSQL 16: CREATEROLE acts on roles it has ADMIN on
            admin.execute(f"GRANT {role} TO {rehearser} WITH ADMIN OPTION")
        password = "SELECT rolpassword FROM pg_authid WHERE rolname = %s"
        before = admin.execute(password, (role,)).fetchone()[0]
    try:
        with copy_of(_env(monkeypatch, populated_db), 10_000_000 + uuid.uuid4().int % 80_000_000) as copy:
            as_rehearser = conninfo.make_conninfo(copy.url.get_secret_value(), user=rehearser)
            with connect_target(as_rehearser, "production (copy)") as conn:
                result = rehearse(conn, [("001_x.sql", f"ALTER ROLE {role} PASSWORD 'after-2'")], commit=True)
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:
            assert admin.execute(password, (role,)).fetchone()[0] == before
        (row,) = _rows(result)
        assert row.rehearsed and not row.error and "changes server-wide objects (roles)" in row.reason
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:
            admin.execute(f'DROP ROLE IF EXISTS "{rehearser}"')


def test_other_sessions_changing_roles_meanwhile_do_not_roll_a_plain_migration_back(populated_db, pg_admin_url, role,
                                                                                    monkeypatch):
    """The catalog check compares the transaction with the committed state: another session creating and dropping
    a role all along (the production server's own life) must not pass for the migration's change."""
    stop = threading.Event()

    def churn() -> None:
        with psycopg.connect(pg_admin_url, autocommit=True) as other:
            while not stop.is_set():
                other.execute(f"CREATE ROLE {role}")
                other.execute(f"DROP ROLE {role}")

    sql = ";\n".join(f"CREATE TABLE copysafe_{i} (id int);\nCREATE INDEX CONCURRENTLY copysafe_{i}_idx ON copysafe_{i} (id)"
                     for i in range(15))
    worker = threading.Thread(target=churn, daemon=True)
    worker.start()
    try:
        result, seen = _on_copy(_env(monkeypatch, populated_db), sql,
                                "SELECT count(*) FROM pg_class WHERE relname LIKE 'copysafe_%'")
    finally:
        stop.set()
        worker.join()
    assert result.warnings == () and seen == [(30,)]
    assert all(s.rehearsed and not s.after_skip and s.reason is None for s in _rows(result))
