"""Target connection errors name the environment and say what to do; never the URL or the password."""
from __future__ import annotations

import hashlib
import uuid

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from bot.errors import TargetError
from bot.pg.connect import connect_target, describe_pg_error, scrub, second_session, target_info
from bot.sources.apply import apply_migration
from bot.sources.models import Migration


def _fails(url: str, env: str = "staging") -> TargetError:
    with pytest.raises(TargetError) as info:
        connect_target(url, env, connect_timeout=3)
    return info.value


def test_unreachable_target_names_the_environment_not_the_url():
    err = _fails("postgresql://deploy:Sup3rS3cret!@127.0.0.1:1/appdb", "prod-eu")
    assert err.code == "target-unreachable"
    assert "'prod-eu'" in err.message and "check that the server is up" in err.message
    assert "Sup3rS3cret" not in err.message and "postgresql://" not in err.message and "deploy:" not in err.message


def test_wrong_password_is_a_clear_auth_error_without_the_password(password_server_url):
    url, user, port, password = password_server_url
    good = make_conninfo(url, password=password)
    with connect_target(good, "staging") as conn:  # the server really checks passwords
        info = target_info(conn, "staging")
        assert info.server_version_num >= 100000 and info.user == user and info.port == port
    for wrong in ("Wr0ng-Pa55word-XYZ", "postgresql://{user}:Wr0ng-Pa55word-XYZ@127.0.0.1:{port}/postgres"):
        candidate = make_conninfo(url, password=wrong) if "://" not in wrong else wrong.format(user=user, port=port)
        err = _fails(candidate)
        assert err.code == "target-auth", err.message
        assert "'staging'" in err.message and "update the password" in err.message
        assert "Wr0ng-Pa55word-XYZ" not in err.message and password not in err.message
        assert "postgresql://" not in err.message and "password=" not in err.message


def test_missing_database_and_unknown_role(pg_admin_url):
    err = _fails(make_conninfo(pg_admin_url, dbname=f"nope_{uuid.uuid4().hex[:8]}", password="Zz9-leak"))
    assert err.code == "target-missing-database" and "Zz9-leak" not in err.message
    err = _fails(make_conninfo(pg_admin_url, user=f"ghost_{uuid.uuid4().hex[:8]}", password="Zz9-leak"))
    assert err.code == "target-auth" and "Zz9-leak" not in err.message


def test_missing_permission_is_a_target_error_and_nothing_is_written(target_db_url, pg_admin_url):
    role = f"gt_ro_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        sql = "CREATE TABLE t (id int);"
        m = Migration(version="20240101000000", name="t", ledger_name="20240101000000_t", path="x", sql=sql,
                      sha256=hashlib.sha256(sql.encode()).hexdigest(), size=len(sql))
        with connect_target(make_conninfo(target_db_url, user=role), "qa") as conn:
            with pytest.raises(TargetError) as info:
                apply_migration(conn, "prisma", m, environment="qa")
        assert info.value.code == "target-permission" and "'qa'" in info.value.message
        with psycopg.connect(target_db_url) as conn:
            assert conn.execute("SELECT to_regclass('_prisma_migrations'), to_regnamespace('guardian')").fetchone() == (None, None)
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:
            admin.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_scrub_removes_urls_and_password_pairs():
    text = "failed for postgresql://u:p4ss@h/db and host=h password='p 4' user=u; also p4ss"
    out = scrub(text, "p4ss")
    assert "p4ss" not in out and "p 4" not in out and "postgresql://" not in out


def test_malformed_url_never_shows_what_looks_like_a_password():
    from bot.errors import TargetError
    from bot.pg.connect import connect_target

    for url in ("postgresql://u:hunter2@127.0.0.1:5x?password=hunter2/db",
                "postgresql://u@127.0.0.1:1/db?password=hunter2&sslmode=bogus",
                "host=127.0.0.1 port=hunter2 dbname=x"):
        try:
            connect_target(url, "staging", connect_timeout=2).close()
        except TargetError as exc:
            assert "hunter2" not in str(exc), str(exc)
            assert "staging" in str(exc)
        else:
            raise AssertionError(f"{url!r} connected")


def test_describe_pg_error_is_the_primary_message_and_sqlstate_scrubbed_of_secrets(make_database):
    url = make_database(prefix="gt_deps_describe")
    with connect_target(url, "staging") as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, secret text)")
        conn.execute("INSERT INTO t VALUES (1, 'x')")
        with pytest.raises(psycopg.Error) as missing:
            conn.execute("SELECT * FROM nope")
        with pytest.raises(psycopg.Error) as duplicate:
            conn.execute("INSERT INTO t VALUES (1, 'y')")
        with pytest.raises(psycopg.Error) as echoed:
            conn.execute("SELECT 'Sup3rS3cret'::int")
    assert describe_pg_error(missing.value) == 'relation "nope" does not exist (SQLSTATE 42P01)'
    assert "LINE 1" not in describe_pg_error(missing.value)  # the primary message, not psycopg's whole text
    assert describe_pg_error(duplicate.value, detail=True) == (
        'duplicate key value violates unique constraint "t_pkey" (Key (id)=(1) already exists.) (SQLSTATE 23505)')
    assert "Sup3rS3cret" not in describe_pg_error(echoed.value, "Sup3rS3cret")
    assert describe_pg_error(ValueError("no diag here")) == "no diag here"


def test_connect_target_takes_keepalives_as_an_option(make_database):
    url = make_database(prefix="gt_deps_keepalive")
    with connect_target(url, "staging", keepalives=True, application_name="guardian-req7") as conn:
        params = conn.info.get_parameters()
        assert params["keepalives"] == "1" and params["keepalives_idle"] == "10"
        assert params["application_name"] == "guardian-req7"
    with connect_target(url, "staging") as conn:
        assert "keepalives" not in conn.info.get_parameters()


def test_second_session_is_another_backend_on_the_same_database_as_the_same_user(password_server_url):
    url, user, _port, password = password_server_url
    with connect_target(make_conninfo(url, password=password), "staging", autocommit=False) as conn:
        with second_session(conn, "guardian-rehearsal-locks") as other:  # the password travels, not only the dsn
            assert other.info.backend_pid != conn.info.backend_pid and other.autocommit
            mine = conn.execute("SELECT current_database(), current_user").fetchone()
            assert other.execute("SELECT current_database(), current_user").fetchone() == mine == (mine[0], user)
            assert other.execute("SELECT application_name FROM pg_stat_activity WHERE pid = %s",
                                 (other.info.backend_pid,)).fetchone() == ("guardian-rehearsal-locks",)
