"""Observing our own backend: relation locks held (pg_locks) and relation storage (relfilenode) for rewrites."""
from __future__ import annotations

import re

import psycopg

# Relations are named as a migration usually writes them: plain when visible through the search_path,
# schema-qualified otherwise. System catalogs are left out.
_RELATIONS = """
SELECT c.oid, CASE WHEN pg_table_is_visible(c.oid) THEN c.relname ELSE n.nspname || '.' || c.relname END,
       c.relfilenode, c.relkind, n.nspname || '.' || c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%%'
"""
_LOCKS = """
SELECT l.relation, l.mode FROM pg_locks l
WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted AND l.database = (
    SELECT oid FROM pg_database WHERE datname = current_database())
"""
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def mode_name(pg_locks_mode: str) -> str:
    """``AccessExclusiveLock`` -> ``ACCESS EXCLUSIVE`` (PostgreSQL's documented spelling)."""
    if pg_locks_mode == "SIReadLock":
        return "SIREAD"
    return _CAMEL.sub(" ", pg_locks_mode.removesuffix("Lock")).upper()


def relations(conn: psycopg.Connection) -> dict[int, tuple[str, int, str, str]]:
    """oid -> (name, relfilenode, relkind, schema.name) of every non-system relation this transaction sees."""
    return {r[0]: (r[1], r[2], r[3], r[4]) for r in conn.execute(_RELATIONS).fetchall()}


def held_locks(conn: psycopg.Connection) -> set[tuple[int, str]]:
    """(relation oid, pg_locks mode) our backend holds now."""
    return {(r[0], r[1]) for r in conn.execute(_LOCKS).fetchall()}
