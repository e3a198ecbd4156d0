"""Warming a fresh copy before its rehearsal: the tables a migration touches read into the copy's buffers.

A copy made a moment ago (``CREATE DATABASE … TEMPLATE``, a restore) has none of its pages in PostgreSQL's shared
buffers, while the target's busy tables sit there warm; rehearsed cold, the first statements over them ran up to
twice as long as on the target (bench/rehearsal.py, issue 19). So before the rehearsal the tables the risk analysis
says the migration locks are read in, biggest first, then their indexes, within half of ``shared_buffers`` in
all: with ``pg_prewarm`` where the server has the module (created in the copy for the warming and dropped again
unless the copy already had it; never on the target), else by a sequential read of each table that fits.

The sequential read is weaker: PostgreSQL reads a table bigger than a quarter of ``shared_buffers`` through a
small ring of buffers, so such a table ends up in the operating system's page cache, not in shared buffers (what
the rehearsal then reads still skips the disk, but not the buffer lookup). Indexes are read only by pg_prewarm.

Usage::

    warmed = warm(conn, {"orders", "public.users"})   # conn: an autocommit session on the copy
    warmed.summary   # "warmed 61 MB of orders, users in 0.4 s (pg_prewarm)"
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import psycopg
from psycopg import sql
from pydantic import BaseModel, ConfigDict

from bot.pg.connect import describe_pg_error

log = logging.getLogger(__name__)

# the touched tables (by plain or schema-qualified name), then their indexes: (oid, name, kind, bytes), biggest first
_TOUCHED = """
WITH t AS (
  SELECT c.oid, c.relname
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND ((c.relname = ANY(%(names)s) AND pg_table_is_visible(c.oid)) OR n.nspname || '.' || c.relname = ANY(%(names)s))
)
SELECT oid, relname, 'table', pg_relation_size(oid) FROM t
UNION ALL
SELECT i.indexrelid, ic.relname, 'index', pg_relation_size(i.indexrelid)
FROM pg_index i JOIN t ON t.oid = i.indrelid JOIN pg_class ic ON ic.oid = i.indexrelid
ORDER BY 3 DESC, 4 DESC
"""


class Warmed(BaseModel):
    """What was read into the copy's buffers before its rehearsal, how, and how long it took."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: str  # pg_prewarm | read | none
    relations: tuple[str, ...] = ()  # the tables and indexes read (a part of the last one, when the budget ended)
    bytes: int = 0
    budget_bytes: int = 0
    ms: float = 0.0
    error: str | None = None  # why warming stopped early (the rehearsal runs anyway)

    @property
    def summary(self) -> str:
        if not self.relations:
            return f"copy not warmed ({self.error or 'no existing table touched'})"
        names = ", ".join(self.relations[:4]) + (f" and {len(self.relations) - 4} more" if len(self.relations) > 4 else "")
        return f"copy warmed: {self.bytes / 1e6:.0f} MB of {names} in {self.ms / 1000:.1f} s ({self.method})"


def warm(conn: psycopg.Connection, names: Iterable[str]) -> Warmed:
    """Read ``names``' tables (plain or ``schema.name``, as the risk reports spell them) and their indexes into
    the buffers of the database ``conn`` is on, a throwaway copy: never call it on a target (it may create the
    pg_prewarm extension there for a moment). ``conn`` must be in autocommit mode. Never raises a database error:
    warming is an optimisation, the error is returned instead."""
    started = time.perf_counter()
    names = sorted({n for n in names if n})
    budget = conn.execute("SELECT pg_size_bytes(current_setting('shared_buffers')) / 2").fetchone()[0]
    done: list[str] = []
    read, method, error = 0, "none", None
    try:
        touched = conn.execute(_TOUCHED, {"names": names}).fetchall() if names else []
        if touched:
            method = "pg_prewarm" if _prewarm_available(conn) else "read"
        created = False
        if method == "pg_prewarm":
            try:
                created = _create_prewarm(conn)
            except psycopg.Error as exc:  # not allowed to create it here: read instead
                log.info("rehearsal: pg_prewarm not created on the copy (%s); reading instead", describe_pg_error(exc))
                method = "read"
        try:
            block = conn.execute("SELECT current_setting('block_size')::int").fetchone()[0]
            for oid, name, kind, size in touched:
                left = budget - read
                if left < block or not size:
                    continue
                if method == "pg_prewarm":
                    blocks = min(size, left) // block
                    read += conn.execute("SELECT pg_prewarm(%s::oid::regclass, 'buffer', 'main', 0, %s)",
                                         (oid, blocks - 1)).fetchone()[0] * block
                elif kind == "table" and size <= left:  # a plain read cannot stop part-way: whole tables that fit
                    conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.SQL(
                        conn.execute("SELECT %s::oid::regclass::text", (oid,)).fetchone()[0])))
                    read += size
                else:
                    continue
                done.append(name)
        finally:
            if created:
                conn.execute("DROP EXTENSION IF EXISTS pg_prewarm")
    except psycopg.Error as exc:
        error = describe_pg_error(exc)
        log.warning("rehearsal: warming the copy stopped: %s", error)
    warmed = Warmed(method=method, relations=tuple(done), bytes=read, budget_bytes=budget,
                    ms=round((time.perf_counter() - started) * 1000, 1), error=error)
    log.info("rehearsal: %s", warmed.summary)
    return warmed


def _prewarm_available(conn: psycopg.Connection) -> bool:
    return conn.execute("SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_prewarm'").fetchone()[0] > 0


def _create_prewarm(conn: psycopg.Connection) -> bool:
    """True when pg_prewarm was created here (so ours to drop again); False when the copy already had it."""
    if conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'pg_prewarm'").fetchone()[0]:
        return False
    conn.execute("CREATE EXTENSION pg_prewarm")
    return True
