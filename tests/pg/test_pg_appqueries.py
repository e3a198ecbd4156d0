"""The running app's queries (bot/pg/appqueries.py) on a real PostgreSQL with pg_stat_statements preloaded: a small
app's statements are read with their roles and calls, then PREPAREd before and after a migration."""
from __future__ import annotations

import uuid

import psycopg
import pytest

from bot.local_services import create_database, drop_database
from bot.pg.appqueries import (
    Absent,
    AppQueries,
    AppQuery,
    check_app_queries,
    probe_app_queries,
    read_app_queries,
    read_query_file,
)

SELECT_NAME = "SELECT id, name FROM users WHERE id = %s"


@pytest.fixture
def app_db(pgss_server_url):
    """``(admin URL of a database whose app role ran a small workload, the role)``: tables in schema shop, found
    through the role's own search_path; Guardian (the superuser) ran a query of its own and utility statements."""
    role = f"appq_app_{uuid.uuid4().hex[:8]}"
    name, url = create_database(pgss_server_url, "appq")
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("CREATE EXTENSION pg_stat_statements")
        admin.execute(f'CREATE ROLE "{role}" LOGIN')
        admin.execute(f'CREATE SCHEMA shop AUTHORIZATION "{role}"')
        admin.execute(f'ALTER ROLE "{role}" IN DATABASE "{name}" SET search_path = shop')
        admin.execute("SELECT count(*) FROM pg_class WHERE relname = 'users'")
    app_url = psycopg.conninfo.make_conninfo(url, user=role)
    with psycopg.connect(app_url, autocommit=True) as app:
        app.execute("CREATE TABLE users (id int PRIMARY KEY, name text, email text)")
        app.execute("CREATE TABLE orders (id serial PRIMARY KEY, user_id int, total numeric)")
        # recorded as generate_series($3, $4), which PostgreSQL cannot resolve untyped: fails before any migration
        app.execute("INSERT INTO users SELECT g, 'u' || g, 'e' FROM generate_series(1, 20) g")
        for i in range(12):
            app.execute(SELECT_NAME, (i,), prepare=True)
        for i in range(5):
            app.execute("SELECT count(*) FROM orders WHERE user_id = %s", (i,), prepare=False)
        for i in range(3):
            app.execute("INSERT INTO orders (user_id, total) VALUES (%s, %s)", (i, 9.5))
        for i in range(2):
            app.execute("UPDATE users SET email = %s WHERE id = %s", ("x", i))
            app.execute("SET application_name = 'shop'")
    try:
        yield url, role
    finally:
        drop_database(pgss_server_url, name)
        with psycopg.connect(pgss_server_url, autocommit=True) as admin:
            admin.execute(f'DROP ROLE "{role}"')


def _migrate(url: str, statement: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


def test_reads_the_apps_statements_with_role_and_calls_leaving_out_guardian_and_utility(app_db):
    url, role = app_db
    with psycopg.connect(url) as conn:
        got = read_app_queries(conn, limit=50)
    assert got.absent is None and got.since is not None  # calls are counted since the server started
    by_text = {q.query: q for q in got.queries}
    assert by_text["SELECT id, name FROM users WHERE id = $1"].calls == 12
    assert by_text["SELECT count(*) FROM orders WHERE user_id = $1"].calls == 5
    assert by_text["INSERT INTO orders (user_id, total) VALUES ($1, $2)"].calls == 3
    assert by_text["UPDATE users SET email = $1 WHERE id = $2"].calls == 2
    assert {q.role for q in got.queries} == {role}  # the superuser's own SELECT is Guardian's, left out
    assert not any(q.query.upper().startswith(("SET", "CREATE")) for q in got.queries)
    assert [q.calls for q in got.queries] == sorted((q.calls for q in got.queries), reverse=True)
    with psycopg.connect(url) as conn:
        top = read_app_queries(conn, limit=2)
        mine = read_app_queries(conn, exclude_roles=[role])
    assert [q.calls for q in top.queries] == [12, 5]
    assert {q.role for q in mine.queries} == {"postgres"}


def test_dropping_a_column_a_query_reads_is_reported_with_the_query_and_its_calls(app_db):
    url, _ = app_db
    with psycopg.connect(url) as conn:
        queries = read_app_queries(conn)
        before = probe_app_queries(conn, queries)
        _migrate(url, "ALTER TABLE shop.users DROP COLUMN name")
        report = check_app_queries(conn, before)
    assert [p.query.query for p in report.broken] == ["SELECT id, name FROM users WHERE id = $1"]
    assert report.broken[0].line.startswith('column "name" does not exist (SQLSTATE 42703) — 12 calls: SELECT')
    # a normalized text that fails before the migration too: not blamed on it, but said
    assert {p.query.query: p.error for p in report.unchecked} == {
        "INSERT INTO users SELECT g, $1 || g, $2 FROM generate_series($3, $4) g":
            "function generate_series(unknown, unknown) is not unique (SQLSTATE 42725)"}
    assert report.checked == len(queries.queries) - 1
    assert report.summary == f"{report.checked} app queries checked, 1 break (1 could not be checked)"


def test_adding_a_column_is_reported_clean(app_db):
    url, _ = app_db
    with psycopg.connect(url) as conn:
        queries = read_app_queries(conn)
        before = probe_app_queries(conn, queries)
        _migrate(url, "ALTER TABLE shop.users ADD COLUMN nickname text")
        report = check_app_queries(conn, before)
        rows = conn.execute("SELECT count(*) FROM shop.orders").fetchone()[0]
        current = conn.execute("SELECT current_user, current_setting('transaction_read_only')").fetchone()
    assert report.broken == () and report.checked == len(queries.queries) - 1 >= 4
    assert rows == 3  # the recorded INSERT was prepared, never executed
    assert current == ("postgres", "off")  # the role and the read-only setting were restored


def test_the_new_app_versions_queries_that_need_the_migration_first_are_found_on_the_schema_before_it(app_db):
    url, role = app_db
    new_version = read_query_file("-- app v2\nSELECT id, nickname FROM users WHERE id = $1;\n"
                                  "UPDATE users SET name = $1 WHERE id = $2;\n", role=role)
    with psycopg.connect(url) as conn:
        early = probe_app_queries(conn, new_version).failures
        _migrate(url, "ALTER TABLE shop.users ADD COLUMN nickname text")
        late = probe_app_queries(conn, new_version).failures
    assert [p.line for p in early] == [
        'column "nickname" does not exist (SQLSTATE 42703): SELECT id, nickname FROM users WHERE id = $1']
    assert late == ()


def test_a_lock_timeout_is_not_blamed_on_the_migration(app_db):
    url, _ = app_db
    with psycopg.connect(url) as conn, psycopg.connect(url) as blocker:
        before = probe_app_queries(conn, read_app_queries(conn))
        blocker.execute("LOCK TABLE shop.users IN ACCESS EXCLUSIVE MODE")
        report = check_app_queries(conn, before, statement_timeout="200ms")
    assert report.broken == ()
    assert {p.query.query for p in report.unchecked if "timeout" in p.error} == {
        "SELECT id, name FROM users WHERE id = $1", "UPDATE users SET email = $1 WHERE id = $2"}


def test_the_recorded_text_is_prepared_verbatim_never_run_and_a_spent_budget_is_said(app_db):
    url, role = app_db
    smuggled = AppQueries(queries=(AppQuery(role=role, calls=1, queryid=1, query="SELECT 1; DROP TABLE users"),
                                   AppQuery(role=role, calls=1, queryid=2, query="DROP TABLE users")))
    with psycopg.connect(url) as conn:
        probe = probe_app_queries(conn, smuggled)
        spent = probe_app_queries(conn, smuggled, total_seconds=-1)
        assert conn.execute("SELECT count(*) FROM shop.users").fetchone()[0] == 20
    assert probe.errors[0].startswith("cannot insert multiple commands into a prepared statement")
    assert probe.errors[1].startswith('syntax error at or near "DROP"')
    assert spent.not_ruled == (True, True) and "budget" in spent.errors[0]


def test_extension_not_created_in_the_database_is_said_with_what_to_do(pgss_server_url):
    name, url = create_database(pgss_server_url, "appq")
    try:
        with psycopg.connect(url) as conn:
            got = read_app_queries(conn)
    finally:
        drop_database(pgss_server_url, name)
    assert got.absent is Absent.not_created and got.queries == ()
    assert 'run CREATE EXTENSION pg_stat_statements there' in got.message and name in got.message


def test_a_role_without_pg_read_all_stats_is_told_to_grant_it(app_db, pgss_server_url):
    url, role = app_db
    reader = f"appq_reader_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pgss_server_url, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{reader}" LOGIN')
    try:
        with psycopg.connect(psycopg.conninfo.make_conninfo(url, user=reader)) as conn:
            denied = read_app_queries(conn)
            with psycopg.connect(pgss_server_url, autocommit=True) as admin:
                admin.execute(f'GRANT pg_read_all_stats TO "{reader}"')
            granted = read_app_queries(conn)
            before = probe_app_queries(conn, granted)
            report = check_app_queries(conn, before)  # not a member of the app's role: nothing can be checked
    finally:
        with psycopg.connect(pgss_server_url, autocommit=True) as admin:
            admin.execute(f'DROP ROLE "{reader}"')
    assert denied.absent is Absent.no_permission and denied.queries == ()
    assert f'GRANT pg_read_all_stats TO "{reader}"' in denied.message
    assert granted.absent is None and len(granted.queries) >= 5
    assert report.checked == 0 and report.broken == () and len(report.unchecked) == len(granted.queries)
    assert {p.error for p in report.unchecked if p.query.role == role} == {
        f'permission denied to set role "{role}" (SQLSTATE 42501)'}


def test_a_server_without_the_library_preloaded_says_how_to_load_it(password_server_url):
    """The throwaway password-checking server is started without pg_stat_statements preloaded."""
    url, _, _, password = password_server_url
    admin = psycopg.conninfo.make_conninfo(url, password=password)
    name, db_url = create_database(admin, "appq")
    try:
        with psycopg.connect(db_url) as conn:
            never_created = read_app_queries(conn)
            conn.execute("CREATE EXTENSION pg_stat_statements")
            conn.execute("SET pg_stat_statements.max = 100")  # a setting left in postgresql.conf, library not loaded
            created = read_app_queries(conn)
            report = check_app_queries(conn, probe_app_queries(conn, never_created))
    finally:
        drop_database(admin, name)
    for got in (never_created, created):
        assert got.absent is Absent.not_loaded and got.queries == ()
        assert "add shared_preload_libraries = 'pg_stat_statements'" in got.message
        assert "restart PostgreSQL" in got.message
        assert f'CREATE EXTENSION pg_stat_statements in database "{name}"' in got.message
    assert report.absent is Absent.not_loaded and report.summary.startswith("app queries not checked: ")
