"""Observing our own backend: relation locks held (pg_locks), relation storage (relfilenode) for rewrites and
index rebuilds, and this transaction's scan counters (pg_stat_xact) — one query per look."""
from __future__ import annotations

import re
from typing import NamedTuple

import psycopg

# Relations are named as a migration usually writes them: plain when visible through the search_path,
# schema-qualified otherwise. System catalogs are left out, so our own catalog reads never count as scans.
# The lock side is joined FULL so a relation the statement dropped still shows the lock it took.
_OBSERVE = """
WITH held AS (
    SELECT relation, array_agg(mode) AS modes FROM pg_locks
    WHERE pid = pg_backend_pid() AND locktype = 'relation' AND granted AND database <> 0
    GROUP BY relation
), rel AS (
    SELECT c.oid, CASE WHEN pg_table_is_visible(c.oid) THEN c.relname ELSE n.nspname || '.' || c.relname END AS name,
           c.relfilenode, c.relkind, n.nspname || '.' || c.relname AS qualified, i.indrelid,
           pg_stat_get_xact_numscans(c.oid) AS scans, pg_stat_get_xact_tuples_returned(c.oid) AS tuples
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_index i ON i.indexrelid = c.oid
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%%'
)
SELECT coalesce(rel.oid, held.relation), rel.name, rel.relfilenode, rel.relkind, rel.qualified, rel.indrelid,
       rel.scans, rel.tuples, held.modes
FROM rel FULL JOIN held ON held.relation = rel.oid
"""
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


class Relation(NamedTuple):
    name: str
    filenode: int  # 0 for relations without storage (views, partitioned tables)
    kind: str  # pg_class.relkind
    qualified: str  # schema.name
    table: int | None  # an index's table
    scans: int  # this transaction's scans: sequential for a table, index scans for an index
    tuples: int  # rows those scans returned (this backend's share when PostgreSQL parallelised the scan)


class Look(NamedTuple):
    """What our backend sees at one moment of the transaction."""

    relations: dict[int, Relation]  # oid -> relation, every non-system one this transaction sees
    locks: set[tuple[int, str]]  # (relation oid, pg_locks mode) held now


def mode_name(pg_locks_mode: str) -> str:
    """``AccessExclusiveLock`` -> ``ACCESS EXCLUSIVE`` (PostgreSQL's documented spelling)."""
    if pg_locks_mode == "SIReadLock":
        return "SIREAD"
    return _CAMEL.sub(" ", pg_locks_mode.removesuffix("Lock")).upper()


def look(conn: psycopg.Connection) -> Look:
    """Relations, their storage and scan counters, and the relation locks our backend holds, in one query."""
    relations: dict[int, Relation] = {}
    locks: set[tuple[int, str]] = set()
    for oid, name, filenode, kind, qualified, table, scans, tuples, modes in conn.execute(_OBSERVE).fetchall():
        if name is not None:
            relations[oid] = Relation(name, filenode, kind, qualified, table, scans, tuples)
        if modes:
            locks.update((oid, m) for m in modes)
    return Look(relations, locks)


def relations(conn: psycopg.Connection) -> dict[int, tuple[str, int, str, str]]:
    """oid -> (name, relfilenode, relkind, schema.name) of every non-system relation this transaction sees."""
    return {oid: (r.name, r.filenode, r.kind, r.qualified) for oid, r in look(conn).relations.items()}


def held_locks(conn: psycopg.Connection) -> set[tuple[int, str]]:
    """(relation oid, pg_locks mode) our backend holds now."""
    return look(conn).locks
