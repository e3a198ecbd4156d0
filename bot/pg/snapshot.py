"""A schema snapshot of a live database: tables, columns, indexes, constraints, RLS, policies, triggers, functions.

Usage::

    before = take_snapshot(conn, "staging")
    ...                                   # apply
    changes = diff_snapshots(before, take_snapshot(conn, "staging"))
    print("\\n".join(changes.lines))
"""
from __future__ import annotations

import hashlib

import psycopg
from pydantic import BaseModel, ConfigDict

from bot.pg.connect import target_errors
from bot.pg.introspect import SYSTEM_SCHEMAS

# Ledger objects are bookkeeping, not the application's schema; leave them out of snapshots by default.
LEDGER_SCHEMAS = ("guardian", "supabase_migrations")
LEDGER_TABLES = ("_prisma_migrations",)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Column(_Frozen):
    name: str
    type: str
    nullable: bool
    default: str | None = None
    identity: str | None = None  # "always" | "by default"
    generated: str | None = None  # the expression of a stored generated column


class Table(_Frozen):
    schema_name: str
    name: str
    kind: str  # table | partitioned table | view | materialized view | foreign table
    rls_enabled: bool
    rls_forced: bool
    columns: tuple[Column, ...]

    @property
    def key(self) -> str:
        return f"{self.schema_name}.{self.name}"


class Index(_Frozen):
    schema_name: str
    name: str
    table: str
    definition: str
    valid: bool
    unique: bool
    primary: bool


class Constraint(_Frozen):
    schema_name: str
    table: str
    name: str
    type: str  # primary key | foreign key | unique | check | exclusion | trigger | not null
    definition: str
    validated: bool


class Policy(_Frozen):
    schema_name: str
    table: str
    name: str
    command: str
    permissive: bool
    roles: tuple[str, ...]
    using: str | None
    with_check: str | None


class Trigger(_Frozen):
    schema_name: str
    table: str
    name: str
    definition: str
    enabled: str  # O origin, D disabled, R replica, A always


class Function(_Frozen):
    schema_name: str
    signature: str  # name(identity arguments)
    returns: str
    language: str
    volatility: str
    kind: str  # function | procedure | aggregate | window
    security_definer: bool
    body_sha256: str


class SchemaSnapshot(_Frozen):
    tables: tuple[Table, ...] = ()
    indexes: tuple[Index, ...] = ()
    constraints: tuple[Constraint, ...] = ()
    policies: tuple[Policy, ...] = ()
    triggers: tuple[Trigger, ...] = ()
    functions: tuple[Function, ...] = ()

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON: equal snapshots, equal fingerprints."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()

    def table(self, key: str) -> Table | None:
        return next((t for t in self.tables if t.key == key or t.name == key), None)


_KINDS = {"r": "table", "p": "partitioned table", "v": "view", "m": "materialized view", "f": "foreign table"}
_CONTYPES = {"p": "primary key", "f": "foreign key", "u": "unique", "c": "check", "x": "exclusion",
             "t": "trigger", "n": "not null"}
_PROKINDS = {"f": "function", "p": "procedure", "a": "aggregate", "w": "window"}
_VOL = {"i": "immutable", "s": "stable", "v": "volatile"}
_USER = """n.nspname <> ALL(%(skip)s) AND n.nspname NOT LIKE 'pg_temp%%' AND n.nspname NOT LIKE 'pg_toast%%'"""

_Q_TABLES = f"""
SELECT c.oid, n.nspname, c.relname, c.relkind, c.relrowsecurity, c.relforcerowsecurity
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r','p','v','m','f') AND {_USER} AND NOT (c.relname = ANY(%(skip_tables)s))
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')
ORDER BY n.nspname, c.relname"""
_Q_COLUMNS = """
SELECT a.attrelid, a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull,
       CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END,
       CASE a.attidentity WHEN 'a' THEN 'always' WHEN 'd' THEN 'by default' END,
       CASE WHEN a.attgenerated <> '' THEN pg_get_expr(d.adbin, d.adrelid) END
FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = ANY(%(oids)s) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attrelid, a.attnum"""
_Q_INDEXES = """
SELECT n.nspname, ic.relname, tc.relname, pg_get_indexdef(i.indexrelid), i.indisvalid, i.indisunique, i.indisprimary
FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class tc ON tc.oid = i.indrelid
JOIN pg_namespace n ON n.oid = ic.relnamespace WHERE i.indrelid = ANY(%(oids)s) ORDER BY n.nspname, ic.relname"""
_Q_CONSTRAINTS = """
SELECT n.nspname, c.relname, k.conname, k.contype, pg_get_constraintdef(k.oid), k.convalidated
FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE k.conrelid = ANY(%(oids)s) AND k.contype <> 'n'  -- PG 18 catalogues NOT NULL; columns carry it already
ORDER BY n.nspname, c.relname, k.conname"""
_Q_POLICIES = """
SELECT schemaname, tablename, policyname, cmd, permissive = 'PERMISSIVE', roles::text[], qual, with_check
FROM pg_policies WHERE schemaname <> ALL(%(skip)s) AND NOT (tablename = ANY(%(skip_tables)s))
ORDER BY schemaname, tablename, policyname"""
_Q_TRIGGERS = """
SELECT n.nspname, c.relname, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE NOT t.tgisinternal AND t.tgrelid = ANY(%(oids)s) ORDER BY n.nspname, c.relname, t.tgname"""
_Q_FUNCTIONS = f"""
SELECT n.nspname, p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
       coalesce(pg_get_function_result(p.oid), ''), l.lanname, p.provolatile, p.prokind, p.prosecdef,
       encode(sha256(convert_to(coalesce(p.prosrc, '') || coalesce(p.probin, ''), 'UTF8')), 'hex')
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang
WHERE {_USER} AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
ORDER BY 1, 2"""


def take_snapshot(
    conn: psycopg.Connection, environment: str, *, exclude_schemas: tuple[str, ...] = LEDGER_SCHEMAS,
    exclude_tables: tuple[str, ...] = LEDGER_TABLES,
) -> SchemaSnapshot:
    """Read-only snapshot of every user schema (extension-owned objects and ledgers left out)."""
    params: dict[str, object] = {"skip": list(SYSTEM_SCHEMAS + exclude_schemas), "skip_tables": list(exclude_tables)}
    with target_errors(environment):
        rows = conn.execute(_Q_TABLES, params).fetchall()
        params["oids"] = [r[0] for r in rows]
        cols: dict[int, list[Column]] = {}
        for oid, name, kind, nullable, default, identity, generated in conn.execute(_Q_COLUMNS, params):
            cols.setdefault(oid, []).append(Column(name=name, type=kind, nullable=nullable, default=default,
                                                   identity=identity, generated=generated))
        tables = tuple(
            Table(schema_name=r[1], name=r[2], kind=_KINDS[r[3]], rls_enabled=r[4], rls_forced=r[5],
                  columns=tuple(cols.get(r[0], ())))
            for r in rows
        )
        indexes = tuple(Index(schema_name=r[0], name=r[1], table=r[2], definition=r[3], valid=r[4], unique=r[5],
                              primary=r[6]) for r in conn.execute(_Q_INDEXES, params))
        constraints = tuple(Constraint(schema_name=r[0], table=r[1], name=r[2], type=_CONTYPES.get(r[3], r[3]),
                                       definition=r[4], validated=r[5]) for r in conn.execute(_Q_CONSTRAINTS, params))
        policies = tuple(Policy(schema_name=r[0], table=r[1], name=r[2], command=r[3], permissive=r[4],
                                roles=tuple(r[5] or ()), using=r[6], with_check=r[7])
                         for r in conn.execute(_Q_POLICIES, params))
        triggers = tuple(Trigger(schema_name=r[0], table=r[1], name=r[2], definition=r[3], enabled=r[4])
                         for r in conn.execute(_Q_TRIGGERS, params))
        functions = tuple(Function(schema_name=r[0], signature=r[1], returns=r[2], language=r[3],
                                   volatility=_VOL.get(r[4], r[4]), kind=_PROKINDS.get(r[5], r[5]),
                                   security_definer=r[6], body_sha256=r[7])
                          for r in conn.execute(_Q_FUNCTIONS, params))
        if not conn.autocommit and conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS:
            conn.rollback()
    return SchemaSnapshot(tables=tables, indexes=indexes, constraints=constraints, policies=policies,
                          triggers=triggers, functions=functions)
