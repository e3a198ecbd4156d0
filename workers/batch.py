"""`-- guardian: batch N [pause D]` on an UPDATE/DELETE: run it in keyset batches of N rows, each its own transaction.

Usage::

    directives = batch_directives(sql)                  # {line of the directive: (size, pause_s)}
    plan = plan_batch(conn, "UPDATE t SET a = 1 WHERE b IS NULL", 1000)
    rows = run_batches(conn, plan, run_one=lambda do: do())   # run_one adds timeouts and lock-timeout retries

PostgreSQL has no UPDATE … LIMIT, so each batch picks its rows in a CTE and the statement itself
is restricted to them::

    WITH guardian_batch AS MATERIALIZED (
        SELECT t.id FROM t WHERE (<cond>) AND t.id > $last ORDER BY t.id LIMIT N FOR UPDATE),
    guardian_done AS (UPDATE t SET … WHERE (<cond>) AND t.id IN (SELECT id FROM guardian_batch) RETURNING 1)
    SELECT count(*), max(id) FROM guardian_batch, (SELECT count(*) FROM guardian_done)

Batches walk the primary key upwards (keyset), so an UPDATE whose SET leaves the condition true
still ends, and each row is visited once. Rows are locked with FOR UPDATE, not SKIP LOCKED: with a
keyset, a skipped row would never be revisited, so we wait for it (bounded by lock_timeout, with
retries) rather than silently leave it unchanged.
"""
from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from pglast import ast, parse_sql
from pglast.stream import RawStream

from bot.config import parse_duration
from bot.errors import GuardianError

log = logging.getLogger(__name__)

_DIRECTIVE = re.compile(r"^\s*--[ \t]*guardian:[ \t]*batch[ \t]+(\d+)(?:[ \t]+pause[ \t]+(\S+))?", re.IGNORECASE)
DEFAULT_PAUSE_S = 0.05


class BatchError(GuardianError):
    code = "batch-unsupported"


@dataclass(frozen=True)
class BatchPlan:
    table: str  # as written, with its alias
    pk: str
    size: int
    pause_s: float
    first_sql: str  # the batch statement without the keyset bound
    next_sql: str  # with `> %s` for the last key seen


def batch_directives(sql: str) -> dict[int, tuple[int, float]]:
    """1-based line of each `-- guardian: batch N [pause D]` comment -> (N, pause in seconds)."""
    found: dict[int, tuple[int, float]] = {}
    for number, line in enumerate(sql.splitlines(), start=1):
        match = _DIRECTIVE.match(line)
        if match:
            size = int(match.group(1))
            if size < 1:
                raise BatchError(f"line {number}: a batch needs at least 1 row; write `-- guardian: batch 1000`")
            pause = parse_duration(match.group(2)) if match.group(2) else DEFAULT_PAUSE_S
            found[number] = (size, pause)
    return found


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _primary_key(conn: psycopg.Connection, qualified: str) -> str:
    rows = conn.execute(
        """SELECT a.attname FROM pg_index i
           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
           WHERE i.indrelid = to_regclass(%s) AND i.indisprimary""",
        (qualified,),
    ).fetchall()
    if conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS and not conn.autocommit:
        conn.rollback()
    if len(rows) != 1:
        raise BatchError(
            f"table {qualified} needs a single-column primary key to be updated in batches "
            f"({'none' if not rows else 'composite'} found); remove the batch directive or add a key",
        )
    return rows[0][0]


def plan_batch(conn: psycopg.Connection, statement: str, size: int, pause_s: float = DEFAULT_PAUSE_S) -> BatchPlan:
    """The batch statements for one UPDATE or DELETE (no FROM/USING, WITH or RETURNING of its own)."""
    stmt = parse_sql(statement)[0].stmt
    if not isinstance(stmt, (ast.UpdateStmt, ast.DeleteStmt)):
        raise BatchError("`-- guardian: batch` applies to an UPDATE or DELETE only; move the directive")
    extra = getattr(stmt, "fromClause", None) or getattr(stmt, "usingClause", None)
    returning = getattr(stmt, "returningClause", None) or getattr(stmt, "returningList", None)
    if extra or stmt.withClause or returning:
        raise BatchError("a batched UPDATE/DELETE cannot have FROM/USING, WITH or RETURNING; "
                         "rewrite it over one table, or remove the batch directive")
    rel = stmt.relation
    qualified = ".".join(_q(p) for p in (rel.catalogname, rel.schemaname, rel.relname) if p)
    alias = _q(rel.alias.aliasname) if rel.alias else qualified
    pk = _primary_key(conn, qualified)
    key = f"{alias}.{_q(pk)}"
    table = RawStream()(rel)
    cond = f"({RawStream()(stmt.whereClause)})" if stmt.whereClause is not None else "true"
    restricted = parse_sql(f"SELECT 1 WHERE {cond} AND {key} IN (SELECT {_q(pk)} FROM guardian_batch)")[0].stmt
    stmt.whereClause = restricted.whereClause
    body = RawStream()(stmt).replace("%", "%%")
    cond = cond.replace("%", "%%")

    def compose(bound: str) -> str:
        return (f"WITH guardian_batch AS MATERIALIZED (SELECT {key} FROM {table} WHERE {cond}{bound} "
                f"ORDER BY {key} LIMIT {int(size)} FOR UPDATE), guardian_done AS ({body} RETURNING 1) "
                f"SELECT (SELECT count(*) FROM guardian_batch), (SELECT max({_q(pk)}) FROM guardian_batch), "
                f"(SELECT count(*) FROM guardian_done)")

    return BatchPlan(table=table, pk=pk, size=size, pause_s=pause_s, first_sql=compose(""),
                     next_sql=compose(f" AND {key} > %s"))


def run_batches(
    conn: psycopg.Connection,
    plan: BatchPlan,
    run_one: Callable[[Callable[[], tuple[int, object, int]]], tuple[int, object, int]],
    progress: Callable[[int, int, bool], None] = lambda rows, batches, done: None,
    *,
    request_id: int | None = None,
) -> int:
    """Run every batch; ``run_one(do)`` wraps one batch (its transaction, timeouts, retries). Returns rows changed."""
    last: object = None
    rows = batches = 0
    while True:
        def one(bound: object = last) -> tuple[int, object, int]:
            with conn.transaction():
                if bound is None:
                    picked, top, changed = conn.execute(plan.first_sql).fetchone()
                else:
                    picked, top, changed = conn.execute(plan.next_sql, (bound,)).fetchone()
            return picked, top, changed

        picked, top, changed = run_one(one)
        batches += 1
        rows += changed
        done = picked < plan.size
        progress(rows, batches, done)
        if done:
            log.info("request %s: batched statement on %s done: %s rows in %s batches", request_id, plan.table,
                     rows, batches)
            return rows
        last = top
        time.sleep(plan.pause_s)
