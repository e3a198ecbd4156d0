"""Applies the bot's own schema from migrations/ (``guardian db upgrade``).

Usage::

    applied = upgrade("postgresql://…/guardian")   # -> names of files applied now ([] when current)
"""
from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

from bot.errors import StoreError
from bot.reachability import connect_reason, where

log = logging.getLogger(__name__)

# An installed wheel carries them as bot/_schema (setup.py); a checkout has them in migrations/ beside bot/.
_PACKAGED = Path(__file__).resolve().parent / "_schema"
MIGRATIONS_DIR = _PACKAGED if _PACKAGED.is_dir() else Path(__file__).resolve().parent.parent / "migrations"
SCHEMA = "guardian_bot"
# pg_advisory_lock key: the ASCII bytes of "guardDB" — distinct from Prisma's 72707369.
UPGRADE_LOCK_KEY = int.from_bytes(b"guardDB", "big")
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True)
class SchemaFile:
    version: str
    name: str
    sql: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def schema_files(directory: Path = MIGRATIONS_DIR) -> list[SchemaFile]:
    """Our migration files in order; a misnamed or duplicate file is an error, not skipped."""
    files: dict[str, SchemaFile] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise StoreError(f"{path}: schema files are named NNNN_snake_case.sql")
        version = match.group(1)
        if version in files:
            raise StoreError(f"{path}: version {version} is used twice in {directory}")
        files[version] = SchemaFile(version, path.name, path.read_text(encoding="utf-8"))
    return [files[v] for v in sorted(files)]


def upgrade(database_url: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending schema files in order, one transaction each, under a session advisory lock.

    Concurrent callers serialise on the lock; the second sees the first's work and applies nothing.
    An applied file whose content changed since is refused rather than silently ignored.
    """
    files = schema_files(directory)
    applied_now: list[str] = []
    try:
        conn = psycopg.connect(database_url, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise StoreError(
            f"cannot connect to the bot's database at {where(database_url)} (DATABASE_URL): {connect_reason(exc)}; "
            "check that PostgreSQL is running there and DATABASE_URL is right",
            code="state-db-unreachable",
        ) from None
    with conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (UPGRADE_LOCK_KEY,))
        try:
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
            conn.execute(
                f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_history (
                        version    text PRIMARY KEY,
                        name       text NOT NULL,
                        sha256     text NOT NULL,
                        applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            done = dict(conn.execute(f"SELECT version, sha256 FROM {SCHEMA}.schema_history").fetchall())
            for file in files:
                if file.version in done:
                    if done[file.version] != file.sha256:
                        raise StoreError(
                            f"schema file {file.name} changed after it was applied; restore it and "
                            "add a new file for the change",
                            code="schema-drift",
                        )
                    continue
                with conn.transaction():
                    conn.execute(file.sql)
                    conn.execute(
                        f"INSERT INTO {SCHEMA}.schema_history (version, name, sha256) VALUES (%s, %s, %s)",
                        (file.version, file.name, file.sha256),
                    )
                log.info("applied schema file %s", file.name)
                applied_now.append(file.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (UPGRADE_LOCK_KEY,))
    return applied_now
