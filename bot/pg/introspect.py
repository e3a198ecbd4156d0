"""Facts about a live target for the risk engine: server version, sizes, columns, indexes, constraints, partitions,
views, enums and domains, function volatility, TimeZone.

Usage::

    with connect_target(url, "staging") as conn:
        facts = gather_facts(conn, "staging")
    report = analyze(sql, facts.to_risk_context())
"""
from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict

import psycopg

from bot.pg.connect import target_errors
from bot.risk.snapshot import RUNNER_KEYS, SNAPSHOT_VERSION

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
    # The catalog facts below are the snapshot JSON's (README: the snapshot JSON; bot/risk/snapshot.py reads it)
    materialized: bool = False
    column_facts: dict[str, dict[str, Any]] = {}  # column -> not_null, default, default_volatile, identity, ...
    index_facts: tuple[dict[str, Any], ...] = ()
    constraints: tuple[dict[str, Any], ...] = ()
    partition_of: str | None = None
    partition_bound: str | None = None
    partition_key: str | None = None
    default_partition: str | None = None


class TargetFacts(_Frozen):
    server_version_num: int
    tables: tuple[TableFacts, ...]
    functions: dict[str, str]  # unqualified lower-case name -> immutable | stable | volatile
    timezone: str | None = None  # this session's TimeZone: the runner connects the same way
    types: dict[str, dict[str, Any]] = {}  # schema.name -> enum or domain facts (snapshot JSON)

    @property
    def pg_version(self) -> int:
        return self.server_version_num // 10000

    def to_snapshot(self, context=None) -> dict[str, Any]:
        """The snapshot JSON document (`guardian snapshot`); values left at their defaults are left out.
        With the ``Context`` files are judged in, it also says how Guardian runs them (RUNNER_KEYS)."""
        tables = {}
        for t in self.tables:
            entry = {"visible": t.visible, "rows": t.rows, "bytes": t.bytes, "partitioned": t.partitioned,
                     "materialized": t.materialized,
                     "columns": {c: _compact({"type": kind, **t.column_facts.get(c, {})})
                                 for c, kind in t.columns.items()},
                     "indexes": [list(i) for i in t.indexes], "checks": list(t.checks),
                     "index_facts": [_compact(i) for i in t.index_facts],
                     "constraints": [_compact(c) for c in t.constraints],
                     "partition_of": t.partition_of, "partition_bound": t.partition_bound,
                     "partition_key": t.partition_key, "default_partition": t.default_partition}
            tables[f"{t.schema_name}.{t.name}"] = _compact(entry)
        runner = {k: getattr(context, k) for k in RUNNER_KEYS} if context is not None else {}
        return {"snapshot": SNAPSHOT_VERSION, "pg_version": self.pg_version,
                "pg_minor": self.server_version_num % 10000,
                "timezone": self.timezone, **runner, "tables": tables,
                "types": {k: _compact(v) for k, v in self.types.items()}, "functions": dict(self.functions)}

    def to_risk_context(self, **overrides: object):
        """A ``bot.risk.models.Context`` read from to_snapshot(), as `guardian lint --context` reads the file:
        tables keyed ``schema.name`` and, when visible, plain ``name``."""
        from bot.risk.models import Context
        from bot.risk.snapshot import context_values

        return Context(**{**context_values(self.to_snapshot()), **overrides})


def _compact(entry: dict[str, Any]) -> dict[str, Any]:
    """Keys at their default (None, false, empty) left out; rows stays (None: never analysed), and so do
    `valid` and `validated` (true by default)."""
    return {k: v for k, v in entry.items() if k in _KEPT or v not in (None, False, [], {}, ())}


_KEPT = ("rows", "valid", "validated")


_TABLES = """
SELECT c.oid, n.nspname, c.relname, pg_table_is_visible(c.oid), c.relkind = 'p',
       CASE WHEN c.reltuples < 0 THEN NULL ELSE c.reltuples::bigint END,
       pg_total_relation_size(c.oid), c.relkind = 'm',
       (SELECT pn.nspname || '.' || pc.relname FROM pg_inherits i JOIN pg_class pc ON pc.oid = i.inhparent
        JOIN pg_namespace pn ON pn.oid = pc.relnamespace WHERE i.inhrelid = c.oid AND c.relispartition),
       CASE WHEN c.relispartition THEN pg_get_expr(c.relpartbound, c.oid) END,
       CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'm') AND n.nspname <> ALL(%s) AND n.nspname NOT LIKE 'pg_temp%%'
  AND n.nspname NOT LIKE 'pg_toast%%'
ORDER BY n.nspname, c.relname
"""
# A default is volatile when a function it calls by name is (overloads: any volatile one counts).
_COLUMNS = r"""
SELECT a.attrelid, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, d.expr, a.attidentity,
       COALESCE(CASE WHEN t.typtype IN ('e', 'd') THEN tn.nspname || '.' || t.typname END,
                CASE WHEN et.typtype IN ('e', 'd') THEN etn.nspname || '.' || et.typname END),
       EXISTS (SELECT FROM regexp_matches(d.expr, '"?([A-Za-z_][A-Za-z0-9_$]*)"?\s*\(', 'g') m
               JOIN pg_proc p ON p.proname IN (m[1], lower(m[1])) WHERE p.provolatile = 'v')
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid JOIN pg_namespace tn ON tn.oid = t.typnamespace
LEFT JOIN pg_type et ON et.oid = t.typelem AND t.typcategory = 'A'
LEFT JOIN pg_namespace etn ON etn.oid = et.typnamespace
LEFT JOIN LATERAL (SELECT pg_get_expr(ad.adbin, ad.adrelid) AS expr FROM pg_attrdef ad
                   WHERE ad.adrelid = a.attrelid AND ad.adnum = a.attnum AND a.attgenerated = '') d ON true
WHERE a.attrelid = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attrelid, a.attnum
"""
_INDEXES = """
SELECT i.indrelid, ic.relname,
       ARRAY(SELECT COALESCE(a.attname, '') FROM unnest(i.indkey) WITH ORDINALITY k(attnum, ord)
             LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.ord),
       i.indexprs IS NOT NULL, i.indpred IS NOT NULL,
       ARRAY(SELECT DISTINCT a.attname FROM pg_depend dp
             JOIN pg_attribute a ON a.attrelid = dp.refobjid AND a.attnum = dp.refobjsubid
             WHERE dp.classid = 'pg_class'::regclass AND dp.objid = i.indexrelid
               AND dp.refclassid = 'pg_class'::regclass AND dp.refobjid = i.indrelid),
       i.indisunique, i.indisprimary, i.indisvalid
FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
WHERE i.indrelid = ANY(%s) ORDER BY i.indrelid, i.indexrelid
"""
_CONSTRAINTS = """
SELECT c.conrelid, c.conname, c.contype, pg_get_constraintdef(c.oid),
       ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum ORDER BY k.ord),
       c.convalidated,
       (SELECT n.nspname || '.' || r.relname FROM pg_class r JOIN pg_namespace n ON n.oid = r.relnamespace
        WHERE r.oid = c.confrelid)
FROM pg_constraint c WHERE c.conrelid = ANY(%s) AND c.contype IN ('c', 'f', 'p', 'u', 'x')
ORDER BY c.conrelid, c.conname
"""
_VIEWS = """
SELECT DISTINCT d.refobjid, a.attname, vn.nspname || '.' || v.relname
FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class
JOIN pg_namespace vn ON vn.oid = v.relnamespace
JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid = ANY(%s)
  AND d.refobjsubid > 0 AND v.oid <> d.refobjid
ORDER BY 1, 2, 3
"""
_TYPES = """
SELECT n.nspname || '.' || t.typname, pg_type_is_visible(t.oid), t.typtype,
       ARRAY(SELECT e.enumlabel FROM pg_enum e WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder),
       CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END, t.typnotnull,
       ARRAY(SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c
             WHERE c.contypid = t.oid AND c.contype = 'c' ORDER BY c.conname)
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE t.typtype IN ('e', 'd') AND n.nspname <> ALL(%s) ORDER BY 1
"""
_FUNCTIONS = """
SELECT lower(p.proname), p.provolatile FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname <> ALL(%s)
"""
_CONTYPES = {"c": "check", "f": "foreign_key", "p": "primary_key", "u": "unique", "x": "exclusion"}
_IDENTITY = {"a": "always", "d": "by default"}
_NOT_NULL_CHECK = re.compile(r"CHECK \(\((.+) IS NOT NULL\)\)( NOT VALID)?")


def gather_facts(conn: psycopg.Connection, environment: str, *, exclude_schemas: tuple[str, ...] = ()) -> TargetFacts:
    """Read-only catalogue queries, one per kind of fact for all tables at once; a permission or connection
    problem is a TargetError naming ``environment``."""
    skip = list(SYSTEM_SCHEMAS + exclude_schemas)
    with target_errors(environment):
        version, timezone = conn.execute(
            "SELECT current_setting('server_version_num')::int, current_setting('TimeZone')").fetchone()
        rows = conn.execute(_TABLES, (skip,)).fetchall()
        oids = [r[0] for r in rows]
        columns: dict[int, dict[str, str]] = {}
        column_facts: dict[int, dict[str, dict[str, Any]]] = {}
        for oid, name, kind, not_null, default, identity, type_ref, volatile in conn.execute(_COLUMNS, (oids,)):
            columns.setdefault(oid, {})[name] = kind
            column_facts.setdefault(oid, {})[name] = {
                "not_null": not_null, "default": default, "default_volatile": volatile,
                "identity": _IDENTITY.get(identity), "type_ref": type_ref}
        for oid, name, view in conn.execute(_VIEWS, (oids,)):
            column_facts[oid][name].setdefault("views", []).append(view)
        indexes: dict[int, list[tuple[str, ...]]] = {}
        index_facts: dict[int, list[dict[str, Any]]] = {}
        for oid, name, cols, expression, partial, uses, unique, primary, valid in conn.execute(_INDEXES, (oids,)):
            indexes.setdefault(oid, []).append(tuple(c for c in cols if c))
            index_facts.setdefault(oid, []).append({
                "name": name, "columns": cols, "expression": expression, "partial": partial, "uses": sorted(uses),
                "unique": unique, "primary": primary, "valid": valid})
        constraints: dict[int, list[dict[str, Any]]] = {}
        checked: dict[int, set[str]] = {}
        for oid, name, contype, definition, cols, validated, references in conn.execute(_CONSTRAINTS, (oids,)):
            found = _NOT_NULL_CHECK.fullmatch(definition) if contype == "c" and len(cols) == 1 else None
            constraints.setdefault(oid, []).append({
                "name": name, "kind": _CONTYPES[contype], "definition": definition, "columns": cols,
                "validated": validated, "references": references,
                "not_null_column": cols[0] if found and found.group(1) in (cols[0], f'"{cols[0]}"') else None})
            if contype == "c" and validated:
                checked.setdefault(oid, set()).update(cols)
        types = {name: {"visible": visible, "kind": "enum" if kind == "e" else "domain", "values": values,
                        "base": base, "not_null": not_null, "checks": checks}
                 for name, visible, kind, values, base, not_null, checks in conn.execute(_TYPES, (skip,))}
        functions: dict[str, str] = {}
        rank = {"immutable": 0, "stable": 1, "volatile": 2}
        for name, vol in conn.execute(_FUNCTIONS, (skip,)).fetchall():
            verdict = _VOLATILITY.get(vol, "volatile")
            if name not in functions or rank[verdict] > rank[functions[name]]:
                functions[name] = verdict  # overloads: the most volatile wins
        if not conn.autocommit and conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS:
            conn.rollback()
    defaults = {r[8]: f"{r[1]}.{r[2]}" for r in rows if r[8] and r[9] == "DEFAULT"}
    tables = tuple(
        TableFacts(schema_name=r[1], name=r[2], visible=r[3], partitioned=r[4], rows=r[5], bytes=r[6],
                   columns=columns.get(r[0], {}), indexes=tuple(indexes.get(r[0], ())),
                   checks=tuple(c for c in columns.get(r[0], {}) if c in checked.get(r[0], ())),
                   materialized=r[7], column_facts=column_facts.get(r[0], {}),
                   index_facts=tuple(index_facts.get(r[0], ())), constraints=tuple(constraints.get(r[0], ())),
                   partition_of=r[8], partition_bound=r[9], partition_key=r[10],
                   default_partition=defaults.get(f"{r[1]}.{r[2]}"))
        for r in rows
    )
    return TargetFacts(server_version_num=version, tables=tables, functions=functions, timezone=timezone,
                       types=types)
