"""Read-only checks on the target shared by backup (before) and verify (after): tables touched, counts, RLS, verify SQL.

Usage::

    before = rls_probe_results(conn, env)          # [{"name", "role", "rows", "digest"} | {"error"}]
    failures = run_verify_sql(conn, verify_section(sql), "15min")

Every probe and verify query runs in a transaction that is rolled back.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from typing import Any

import psycopg
from psycopg import sql as pgsql

from bot.models import MigrationRef, Request
from bot.pg.connect import describe_pg_error
from bot.risk.parse import split_statements

log = logging.getLogger(__name__)

EXACT_COUNT_MAX_ROWS = 5_000_000  # above this pg_class.reltuples is used instead of count(*)
_VERIFY_MARK = re.compile(r"^\s*--\s*verify:\s*(.*)$", re.IGNORECASE)


def _statements(ref: MigrationRef) -> list[dict[str, Any]]:
    """The risk report's statements for a migration: the stored analysis, else analysed now."""
    if ref.report and isinstance(ref.report.get("statements"), list):
        return ref.report["statements"]
    from bot.risk.engine import analyze

    return [s.to_json() for s in analyze(ref.sql).statements]


def _existing(conn: psycopg.Connection, names: set[str]) -> list[str]:
    """Quoted schema.table of the names that exist now as tables or materialized views."""
    if not names:
        return []
    rows = conn.execute(
        """SELECT DISTINCT quote_ident(n.nspname) || '.' || quote_ident(c.relname)
           FROM unnest(%s::text[]) AS w(name)
           JOIN pg_class c ON c.oid = to_regclass(w.name) JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE c.relkind IN ('r', 'p', 'm') ORDER BY 1""",
        (sorted(_quoted(n) for n in names),),
    ).fetchall()
    return [r[0] for r in rows]


def _quoted(name: str) -> str:
    """A relation name as the risk engine writes it (plain or schema.name) -> a to_regclass-safe identifier."""
    if '"' in name:
        return name
    return ".".join('"' + part + '"' for part in name.split("."))


def touched_tables(conn: psycopg.Connection, request: Request) -> list[str]:
    """Existing tables any statement of the request locks (the "touched" backup scope)."""
    names = {lock["relation"] for ref in request.migrations for s in _statements(ref) for lock in s.get("locks", ())}
    return _existing(conn, names)


def dml_tables(conn: psycopg.Connection, request: Request) -> list[str]:
    """Existing tables a data-changing statement (UPDATE, DELETE, INSERT…) of the request touches."""
    names = {lock["relation"] for ref in request.migrations for s in _statements(ref)
             if s.get("data_changing") for lock in s.get("locks", ())}
    return _existing(conn, names)


def row_counts(conn: psycopg.Connection, tables: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for table in tables:
        estimate = conn.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)",
                                (table,)).fetchone()
        if estimate is None:
            continue
        if estimate[0] > EXACT_COUNT_MAX_ROWS:
            counts[table] = int(estimate[0])
        else:
            counts[table] = conn.execute(pgsql.SQL("SELECT count(*) FROM {}").format(pgsql.SQL(table))).fetchone()[0]
    return counts


def _field(probe: Any, name: str, default: Any = None) -> Any:
    return probe.get(name, default) if isinstance(probe, dict) else getattr(probe, name, default)


def rls_probe_results(conn: psycopg.Connection, env: Any) -> list[dict[str, Any]]:
    """Run each `rls_probes` entry (role, claims, query, expect_rows) as that role with those JWT claims, rolled back."""
    results = []
    for number, probe in enumerate(getattr(env, "rls_probes", None) or [], start=1):
        role, query = _field(probe, "role"), _field(probe, "query")
        claims = _field(probe, "claims") or {}
        claims_text = claims if isinstance(claims, str) else json.dumps(claims, sort_keys=True)
        result: dict[str, Any] = {"name": _field(probe, "name") or f"probe {number}", "role": role,
                                  "expect_rows": _field(probe, "expect_rows")}
        try:
            with conn.transaction(force_rollback=True):
                conn.execute(pgsql.SQL("SET LOCAL ROLE {}").format(pgsql.Identifier(role)))
                conn.execute("SELECT set_config('request.jwt.claims', %s, true)", (claims_text,))
                rows = conn.execute(query.encode("utf-8")).fetchall()
            result["rows"] = len(rows)
            result["digest"] = hashlib.sha256(repr(rows).encode()).hexdigest()[:16]
        except psycopg.Error as exc:
            result["error"] = describe_pg_error(exc)
        results.append(result)
    return results


def compare_probes(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(failures, changes): an expect_rows mismatch or an error fails; any other difference is reported."""
    failures, changes = [], []
    old = {p["name"]: p for p in before}
    for probe in after:
        name = probe["name"]
        if probe.get("error"):
            failures.append(f"RLS probe {name} ({probe['role']}) failed: {probe['error']}")
            continue
        expect = probe.get("expect_rows")
        if expect is not None and probe["rows"] != expect:
            failures.append(f"RLS probe {name} ({probe['role']}) saw {probe['rows']} row(s), expected {expect}")
        prior = old.get(name)
        if prior and (prior.get("rows"), prior.get("digest")) != (probe.get("rows"), probe.get("digest")):
            changes.append(f"RLS probe {name} ({probe['role']}) changed: {prior.get('rows')} -> {probe['rows']} row(s)")
    return failures, changes


def verify_section(sql: str) -> str | None:
    """The `-- verify:` section at the end of a migration: `-- verify: <query>` lines, or SQL after a bare marker."""
    lines = sql.splitlines()
    for number, line in enumerate(lines):
        match = _VERIFY_MARK.match(line)
        if not match:
            continue
        if match.group(1).strip():
            inline = [m.group(1) for m in (_VERIFY_MARK.match(x) for x in lines[number:]) if m and m.group(1).strip()]
            return ";\n".join(q.rstrip().rstrip(";") for q in inline) + ";"
        rest = [x for x in lines[number + 1:] if x.strip()]
        if rest and all(x.lstrip().startswith("--") for x in rest):
            rest = [x.lstrip()[2:] for x in rest]
        return "\n".join(rest) or None
    return None


def run_verify_sql(conn: psycopg.Connection, sql: str, statement_timeout: str) -> list[str]:
    """Failures of a verify script run READ ONLY and rolled back: an error, or a first row whose first column is false."""
    failures = []
    for piece in split_statements(sql):
        try:
            with conn.transaction(force_rollback=True):
                conn.execute("SET TRANSACTION READ ONLY")
                conn.execute("SELECT set_config('statement_timeout', %s, true)", (statement_timeout,))
                cur = conn.execute(piece.text.encode("utf-8"))
                row = cur.fetchone() if cur.description else None
        except psycopg.Error as exc:
            failures.append(f"verify query `{piece.text[:120]}` failed: {describe_pg_error(exc)}")
            continue
        if row is not None and row[0] is False:
            failures.append(f"verify query `{piece.text[:120]}` returned false{_counted(conn, piece.text, statement_timeout)}")
    return failures


_COUNT_CHECK = re.compile(r"^\s*select\s+count\(\s*\*\s*\)\s*(=|<=|<|>=|>|<>|!=)\s*(\d+)\s+(from\s.+?)\s*;?\s*$",
                          re.IGNORECASE | re.DOTALL)


def _counted(conn: psycopg.Connection, query: str, statement_timeout: str) -> str:
    """For a `SELECT count(*) = N FROM …` check that came back false: how many rows there really are
    (the same FROM … WHERE, counted read-only), e.g. ': 25,000 rows match, expected 0'."""
    match = _COUNT_CHECK.match(query)
    if not match:
        return ""
    op, expected, rest = match.groups()
    try:
        with conn.transaction(force_rollback=True):
            conn.execute("SET TRANSACTION READ ONLY")
            conn.execute("SELECT set_config('statement_timeout', %s, true)", (statement_timeout,))
            found = conn.execute(f"SELECT count(*) {rest}".encode("utf-8")).fetchone()[0]
    except psycopg.Error:
        return ""
    wanted = f"expected {expected}" if op == "=" else f"expected {op} {expected}"
    return f": {found:,} row{'s' if found != 1 else ''} match, {wanted}"
