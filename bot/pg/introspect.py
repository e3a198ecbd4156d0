"""Facts about a live target for the risk engine: server version, table sizes, indexes, CHECKs, function volatility.

Usage::

    with connect_target(url, "staging") as conn:
        facts = gather_facts(conn, "staging")
    report = analyze(sql, facts.to_risk_context())
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict

import psycopg

from bot.pg.connect import target_errors

SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")
_VOLATILITY = {"i": "immutable", "s": "stable", "v": "volatile"}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TableFacts(_Frozen):
    schema_name: str
    name: str
    visible: bool  # reachable without a schema through the search_path (how migrations usually name it)
    partitioned: bool
    rows: int | None  # pg_class.reltuples; None when never analysed
    bytes: int  # pg_total_relation_size: heap + indexes + toast
    columns: dict[str, str]  # column -> format_type, e.g. "character varying(50)"
    indexes: tuple[tuple[str, ...], ...]  # column lists of existing indexes (expressions omitted)
    checks: tuple[str, ...] = ()  # columns used by validated CHECK constraints (re-checked by a type change)


class TargetFacts(_Frozen):
    server_version_num: int
    tables: tuple[TableFacts, ...]
    functions: dict[str, str]  # unqualified lower-case name -> immutable | stable | volatile

    @property
    def pg_version(self) -> int:
        return self.server_version_num // 10000

    def to_risk_context(self, **overrides: object):
        """A ``bot.risk.models.Context``; tables keyed ``schema.name`` and, when visible, plain ``name``."""
        from bot.risk.models import Context, TableStats

        tables: dict[str, TableStats] = {}
        for t in self.tables:
            stats = TableStats(rows=t.rows, bytes=t.bytes, partitioned=t.partitioned, columns=dict(t.columns),
                               indexes=t.indexes, checks=t.checks)
            tables[f"{t.schema_name}.{t.name}"] = stats
            if t.visible:
                tables.setdefault(t.name, stats)
        values: dict[str, object] = {
            "pg_version": self.pg_version, "pg_minor": self.server_version_num % 10000,
            "tables": tables, "functions": dict(self.functions),
        }
        values.update(overrides)
        return Context(**values)


_TABLES = """
SELECT c.oid, n.nspname, c.relname, pg_table_is_visible(c.oid), c.relkind = 'p',
       CASE WHEN c.reltuples < 0 THEN NULL ELSE c.reltuples::bigint END,
       pg_total_relation_size(c.oid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'm') AND n.nspname <> ALL(%s) AND n.nspname NOT LIKE 'pg_temp%%'
  AND n.nspname NOT LIKE 'pg_toast%%'
ORDER BY n.nspname, c.relname
"""
_COLUMNS = """
SELECT a.attrelid, a.attname, format_type(a.atttypid, a.atttypmod)
FROM pg_attribute a WHERE a.attrelid = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attrelid, a.attnum
"""
_INDEXES = """
SELECT i.indrelid, ARRAY(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY k(attnum, ord)
                         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.ord)
FROM pg_index i WHERE i.indrelid = ANY(%s) ORDER BY i.indrelid, i.indexrelid
"""
_CHECKS = """
SELECT DISTINCT c.conrelid, a.attnum, a.attname
FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey)
WHERE c.contype = 'c' AND c.convalidated AND c.conrelid = ANY(%s) ORDER BY c.conrelid, a.attnum
"""
_FUNCTIONS = """
SELECT lower(p.proname), p.provolatile FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname <> ALL(%s)
"""


def gather_facts(conn: psycopg.Connection, environment: str, *, exclude_schemas: tuple[str, ...] = ()) -> TargetFacts:
    """Read-only catalogue queries; a permission or connection problem is a TargetError naming ``environment``."""
    skip = list(SYSTEM_SCHEMAS + exclude_schemas)
    with target_errors(environment):
        version = conn.execute("SELECT current_setting('server_version_num')::int").fetchone()[0]
        rows = conn.execute(_TABLES, (skip,)).fetchall()
        oids = [r[0] for r in rows]
        columns: dict[int, dict[str, str]] = {}
        for oid, name, kind in conn.execute(_COLUMNS, (oids,)).fetchall():
            columns.setdefault(oid, {})[name] = kind
        indexes: dict[int, list[tuple[str, ...]]] = {}
        for oid, cols in conn.execute(_INDEXES, (oids,)).fetchall():
            indexes.setdefault(oid, []).append(tuple(cols))
        checks: dict[int, list[str]] = {}
        for oid, _, name in conn.execute(_CHECKS, (oids,)).fetchall():
            checks.setdefault(oid, []).append(name)
        functions: dict[str, str] = {}
        rank = {"immutable": 0, "stable": 1, "volatile": 2}
        for name, vol in conn.execute(_FUNCTIONS, (skip,)).fetchall():
            verdict = _VOLATILITY.get(vol, "volatile")
            if name not in functions or rank[verdict] > rank[functions[name]]:
                functions[name] = verdict  # overloads: the most volatile wins
        if not conn.autocommit and conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS:
            conn.rollback()
    tables = tuple(
        TableFacts(schema_name=r[1], name=r[2], visible=r[3], partitioned=r[4], rows=r[5], bytes=r[6],
                   columns=columns.get(r[0], {}), indexes=tuple(indexes.get(r[0], ())),
                   checks=tuple(checks.get(r[0], ())))
        for r in rows
    )
    return TargetFacts(server_version_num=version, tables=tables, functions=functions)
