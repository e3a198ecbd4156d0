"""Connecting to a target database, and PostgreSQL errors as people read them: naming the environment, never
the URL or a password.

Usage::

    with connect_target(env.database_url(), env.name, keepalives=True) as conn:
        info = target_info(conn, env.name)
    text = describe_pg_error(exc, url)   # 'relation "x" does not exist (SQLSTATE 42P01)', no URL, no password
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import conninfo
from pydantic import BaseModel, ConfigDict, SecretStr

from bot import redaction
from bot.errors import TargetError

_URL = re.compile(r"\b\w+(?:ql)?://\S+", re.IGNORECASE)
_SAFE_HOST = re.compile(r"[A-Za-z0-9._\-/,:\[\]]{1,255}")
_SAFE_NAME = re.compile(r"[A-Za-z0-9_\-.$]{0,63}")
_ECHOED_VALUE = re.compile(r'(\bvalue\s+)"[^"]*"', re.IGNORECASE)
_PASSWORD = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}


class TargetInfo(BaseModel):
    """Where we are connected: what every message shows to avoid target confusion."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    environment: str
    host: str
    port: int | None
    database: str
    user: str
    server_version: str  # e.g. "15.20"
    server_version_num: int  # e.g. 150020


def scrub(text: str, *secrets: str) -> str:
    """``text`` without URLs, ``password=…`` pairs, any secret the process knows (bot.redaction) or any of
    ``secrets`` in any form (a URL's password as written and decoded, even when the URL does not parse)."""
    text = redaction.scrub(text, *secrets)  # by value first: the URL pattern below would hide only part of it
    text = _URL.sub("<url>", text)
    text = _PASSWORD.sub(r"\1***", text)
    text = _ECHOED_VALUE.sub(r'\1"***"', text)  # libpq quotes a bad option's value, which may be a secret
    return text


_TIMEOUTS = {"55P03": " (lock_timeout: another session holds a conflicting lock)",
             "57014": " (statement_timeout reached)"}


def describe_pg_error(exc: BaseException, *secrets: str, detail: bool = False, timeouts: bool = False) -> str:
    """The one user-facing text of a PostgreSQL error: its primary message (else its first line, else its type),
    PostgreSQL's DETAIL too with ``detail``, which timeout ended it with ``timeouts`` (lock_timeout for 55P03,
    statement_timeout for 57014), then the SQLSTATE; scrubbed of URLs, passwords and ``secrets``."""
    diag = getattr(exc, "diag", None)
    lines = str(exc).strip().splitlines()
    text = getattr(diag, "message_primary", None) or (lines[0] if lines else type(exc).__name__)
    if detail and getattr(diag, "message_detail", None):
        text += f" ({diag.message_detail})"
    sqlstate = getattr(diag, "sqlstate", None)
    text = scrub(text, *secrets) + (_TIMEOUTS.get(sqlstate or "", "") if timeouts else "")
    return f"{text} (SQLSTATE {sqlstate})" if sqlstate else text


def _secret(url: SecretStr | str) -> str:
    return url.get_secret_value() if isinstance(url, SecretStr) else url


def _where(url: str) -> str:
    try:
        parts = conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "the configured server"
    host = str(parts.get("host") or "localhost")
    port = str(parts.get("port") or "5432")
    dbname = str(parts.get("dbname") or parts.get("user") or "")
    # a malformed URL can leave secrets in any field: show only what looks like a host, a port and a name
    host = host if _SAFE_HOST.fullmatch(host) else "<host>"
    port = port if port.isdigit() else "<port>"
    dbname = dbname if _SAFE_NAME.fullmatch(dbname) else "<database>"
    return f"{host}:{port}/{dbname}"


# SQLSTATEs of a session ended from outside: admin shutdown (pg_terminate_backend), crash shutdown, cannot connect now.
_ENDED = {"57P01", "57P02", "57P03"}
_LOST = ("server closed the connection unexpectedly", "terminating connection", "consuming input failed",
         "connection has been lost", "the connection is lost", "could not receive data from server",
         "ssl syscall error")


def session_lost(exc: BaseException) -> bool:
    """True when an open session was cut (terminated, server restart, failover, network): infrastructure, not the SQL."""
    if not isinstance(exc, psycopg.Error):
        return False
    sqlstate = getattr(getattr(exc, "diag", None), "sqlstate", None) or ""
    if sqlstate in _ENDED or sqlstate.startswith("08"):
        return True
    lowered = str(exc).lower()
    return not sqlstate and isinstance(exc, psycopg.OperationalError) and any(w in lowered for w in _LOST)


def classify(exc: BaseException, environment: str, url: str = "") -> TargetError:
    """One TargetError (code + what to do next) for a psycopg error, scrubbed of URL and password."""
    raw = str(exc)
    reason = scrub(raw.strip().splitlines()[-1] if raw.strip() else type(exc).__name__, url)
    reason = reason.removeprefix("FATAL:  ").strip()
    lowered = raw.lower()
    where = _where(url) if url else "the target"
    env = f"environment {environment!r}"
    sqlstate = getattr(getattr(exc, "diag", None), "sqlstate", None) or ""
    if "password authentication failed" in lowered or sqlstate == "28P01" or "no password supplied" in lowered:
        return TargetError(
            f"{env}: {where} rejected the credentials ({reason}); update the password in the variable this "
            "environment names", code="target-auth",
        )
    if sqlstate.startswith("28") or "no pg_hba.conf entry" in lowered or (
        "role" in lowered and "does not exist" in lowered
    ):
        return TargetError(
            f"{env}: {where} refused the login ({reason}); check the user and the server's pg_hba.conf",
            code="target-auth",
        )
    if sqlstate == "3D000" or ("database" in lowered and "does not exist" in lowered):
        return TargetError(f"{env}: the database at {where} does not exist; check the URL's database name",
                           code="target-missing-database")
    if sqlstate == "42501" or "permission denied" in lowered or "must be owner" in lowered:
        return TargetError(
            f"{env}: the user lacks a permission on {where} ({reason}); grant it or use a role that has it",
            code="target-permission",
        )
    if session_lost(exc):
        return TargetError(
            f"{env}: the database session at {where} was terminated ({reason}) by an administrator, a restart or "
            "a failover, not by the migration; check the server, then retry", code="target-session-lost",
        )
    if isinstance(exc, psycopg.OperationalError) and not sqlstate:
        return TargetError(
            f"{env}: cannot reach {where} ({reason}); check that the server is up and the host and port are right",
            code="target-unreachable",
        )
    return TargetError(f"{env}: the target at {where} failed: {reason}", code="target-error")


@contextmanager
def target_errors(environment: str, url: SecretStr | str = "") -> Iterator[None]:
    """Turn any psycopg error raised inside into a scrubbed TargetError naming ``environment``."""
    try:
        yield
    except psycopg.Error as exc:
        raise classify(exc, environment, _secret(url)) from None


def connect_target(
    url: SecretStr | str, environment: str, *, autocommit: bool = True, connect_timeout: int = 5,
    application_name: str = "migration-guardian", keepalives: bool = False,
) -> psycopg.Connection:
    """The one way to open a connection to a target: an open connection, or a TargetError naming the environment
    (never the URL). ``keepalives``: TCP keepalives, so the server ends the session of a worker that died
    (the apply connection)."""
    secret = _secret(url)
    alive = KEEPALIVES if keepalives else {}
    try:
        return psycopg.connect(secret, autocommit=autocommit, connect_timeout=connect_timeout,
                               application_name=application_name, **alive)
    except psycopg.ProgrammingError as exc:  # malformed URL
        raise TargetError(
            f"environment {environment!r}: the database URL is malformed ({scrub(str(exc).strip(), secret)}); "
            "fix the variable this environment names", code="target-url",
        ) from None
    except psycopg.Error as exc:
        raise classify(exc, environment, secret) from None


def second_session(conn: psycopg.Connection, application_name: str) -> psycopg.Connection:
    """Another autocommit session to the database ``conn`` is connected to, as the same user (a lock sampler or
    a catalog watcher beside a statement that runs): psycopg.Error when the server refuses it."""
    return psycopg.connect(conn.info.dsn, password=conn.info.password, autocommit=True, connect_timeout=5,
                           application_name=application_name)


def target_info(conn: psycopg.Connection, environment: str) -> TargetInfo:
    """Host, database, user and server version of an open connection."""
    with target_errors(environment):
        row = conn.execute(
            "SELECT current_database(), current_user, current_setting('server_version'), "
            "current_setting('server_version_num')::int"
        ).fetchone()
    version = row[2].split()[0]
    return TargetInfo(
        environment=environment, host=conn.info.host, port=conn.info.port, database=row[0], user=row[1],
        server_version=version, server_version_num=row[3],
    )
