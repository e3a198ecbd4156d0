"""One-line answers for the services a command needs: a malformed URL, or a database or Redis that is down.

Usage::

    check_postgres_url(url, "DATABASE_URL")          # ConfigError when it is not a PostgreSQL URL
    probe_postgres(url, "DATABASE_URL", "the bot's database")   # StoreError naming host:port, in ≤ 5 s
    check_redis(url)                                  # ConfigError (malformed) or GuardianError (not answering)

None of these messages repeats the URL itself (it may hold a password): only host, port and database.
"""
from __future__ import annotations

import re

import psycopg
from psycopg.conninfo import conninfo_to_dict

from bot.errors import ConfigError, GuardianError, StoreError

PROBE_TIMEOUT_S = 5
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)


def where(url: str) -> str:
    """host:port/database of a PostgreSQL URL or conninfo string (never the user or password)."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.Error:
        return "?"
    host = parts.get("host") or parts.get("hostaddr") or "local socket"
    return f"{host}:{parts.get('port') or 5432}/{parts.get('dbname') or '?'}"


def check_postgres_url(url: str, var: str) -> None:
    """A URL psycopg cannot parse is a configuration error, said in one line."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.Error as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        reason = _URL.sub("the value", text.replace(f'"{url}"', "the value").replace(url, "the value"))
        raise ConfigError(f"{var} is not a PostgreSQL URL ({reason}); expected "
                          "postgresql://USER@HOST:5432/DBNAME (a password goes after USER and a colon)", code="bad-url") from None
    port = str(parts.get("port") or "5432")
    if not all(p.isdigit() and 0 < int(p) < 65536 for p in port.split(",")):
        raise ConfigError(f"{var} has port {port!r}, which is not a port number (1-65535); expected "
                          "postgresql://USER@HOST:5432/DBNAME (a password goes after USER and a colon)", code="bad-url")


def connect_reason(exc: BaseException) -> str:
    """psycopg's first line (it names host and port), without any URL; the hint lines after it dropped."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return _URL.sub("<url>", lines[0]) if lines else type(exc).__name__


def probe_postgres(url: str, var: str, what: str) -> None:
    """Connect once with a short timeout: down or refused is one StoreError naming host:port and the fix."""
    check_postgres_url(url, var)
    try:
        psycopg.connect(url, connect_timeout=PROBE_TIMEOUT_S).close()
    except psycopg.Error as exc:
        raise StoreError(f"cannot connect to {what} at {where(url)} ({var}): {connect_reason(exc)}; check that "
                         f"PostgreSQL is running there and {var} is right", code="state-db-unreachable") from None


def redis_where(url: str) -> str:
    from redis.connection import parse_url

    try:
        parts = parse_url(url)
    except ValueError:
        return "?"
    if parts.get("path"):
        return str(parts["path"])
    return f"{parts.get('host') or '127.0.0.1'}:{parts.get('port') or 6379}/{parts.get('db') or 0}"


def check_redis(url: str) -> None:
    """REDIS_URL must parse and Redis must answer PING (within PROBE_TIMEOUT_S)."""
    from redis import Redis
    from redis.exceptions import RedisError

    try:
        client = Redis.from_url(url, socket_connect_timeout=PROBE_TIMEOUT_S, socket_timeout=PROBE_TIMEOUT_S)
    except ValueError as exc:
        raise ConfigError("REDIS_URL is not a Redis URL (it must start with redis://, rediss:// or unix://); "
                          "expected redis://HOST:6379/0", code="bad-url") from None
    try:
        client.ping()
    except RedisError as exc:
        reason = _URL.sub("<url>", str(exc).strip().splitlines()[0]) if str(exc).strip() else type(exc).__name__
        raise GuardianError(f"cannot reach Redis at {redis_where(url)} (REDIS_URL): {reason}; start Redis or "
                            "fix REDIS_URL, then start the worker again", code="redis-unreachable") from None
    finally:
        client.close()
