"""A request rehearsed on a copy (bot/flow_analysis.rehearse_request) on a server with pg_stat_statements: the
migration is committed on the copy, the running app's queries (read from the target) are PREPAREd on it before
and after, a dropped column they read is reported with its calls and makes the rehearsal a failure; an added
column is clean; the target keeps its column."""
from __future__ import annotations

import random
import uuid
from types import SimpleNamespace

import psycopg
import pytest

from bot.config import EnvironmentConfig, RehearsalCopyConfig
from bot.flow_analysis import rehearse_request
from bot.local_services import create_database, drop_database


@pytest.fixture
def shop(pgss_server_url, monkeypatch):
    role = f"copyq_app_{uuid.uuid4().hex[:8]}"
    name, url = create_database(pgss_server_url, "copyq")
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("CREATE EXTENSION pg_stat_statements")
        admin.execute(f'CREATE ROLE "{role}" LOGIN')
        admin.execute(f'GRANT ALL ON SCHEMA public TO "{role}"')
    with psycopg.connect(psycopg.conninfo.make_conninfo(url, user=role), autocommit=True) as app:
        app.execute("CREATE TABLE users (id int PRIMARY KEY, name text)")
        app.execute("INSERT INTO users SELECT g, 'u' || g FROM generate_series(1, 50) g")
        for i in range(12):
            app.execute("SELECT id, name FROM users WHERE id = %s", (i,))
    monkeypatch.setenv("GT_COPYQ_URL", url)
    env = EnvironmentConfig(name="production", database_url_env="GT_COPYQ_URL",
                            rehearsal=RehearsalCopyConfig(copy="template"))
    try:
        yield env, url
    finally:
        drop_database(pgss_server_url, name)
        with psycopg.connect(pgss_server_url, autocommit=True) as admin:
            admin.execute(f'DROP ROLE "{role}"')


def _request(sql: str):
    return SimpleNamespace(id=random.randint(10_000_000, 99_999_999),
                           migrations=[SimpleNamespace(name="001_change", sql=sql, report=None)])


def test_a_dropped_column_the_app_reads_is_reported_with_its_calls(shop):
    env, url = shop
    done = rehearse_request(env, _request("ALTER TABLE users DROP COLUMN name;"))
    assert done.app.checked >= 1 and len(done.app.broken) == 1
    assert "name" in done.app.broken[0].error and done.app.broken[0].query.calls == 12
    assert any("app query breaks" in f and "12 calls" in f for f in done.failures)
    headline = done.headline("production")
    assert "1 break" in headline and "rehearsed on a copy of production from" in headline
    assert "ACCESS EXCLUSIVE on users held" in headline and "0 data failures" in headline
    with psycopg.connect(url) as conn:  # committed on the copy only
        assert conn.execute("SELECT count(name) FROM users").fetchone()[0] == 50


def test_an_added_column_is_clean(shop):
    env, _ = shop
    done = rehearse_request(env, _request("ALTER TABLE users ADD COLUMN nickname text;"))
    assert done.app.checked >= 1 and done.app.broken == () and done.failures == []
    (st,) = done.rehearsal.files[0].statements
    assert st.held_ms >= st.duration_ms > 0 and st.wal_bytes > 0
