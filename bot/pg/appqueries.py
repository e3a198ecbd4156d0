"""The running app's queries: read from the target's pg_stat_statements, then PREPAREd as their roles before and
after a migration, to report the ones the migration breaks.

Usage::

    queries = read_app_queries(target, limit=500, exclude_roles=("guardian",))   # .absent says why when it cannot
    before = probe_app_queries(copy, queries)      # on the copy, before the migration
    ...                                            # run the migration on the copy
    report = check_app_queries(copy, before)       # report.broken: 'column "name" does not exist … — 12,400 calls'
    # expand/contract: the new app version's queries the schema before the migration cannot run yet
    early = probe_app_queries(target, read_query_file(text, role="app")).failures
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime
from enum import Enum

import psycopg
from psycopg import sql
from pydantic import BaseModel, ConfigDict

from bot.pg.connect import describe_pg_error, session_lost
from bot.risk.parse import split_statements

# A statement PREPARE accepts: its first keyword after any leading comments and parentheses (utility
# statements such as SET, BEGIN, VACUUM or CREATE are recorded too, and are left out).
_PREPARABLE = r"^\s*(?:(?:--[^\n]*\n|/\*.*?\*/)\s*)*[(\s]*(select|insert|update|delete|merge|with|values|table)\M"
_READ = """
SELECT r.rolname, s.queryid, sum(s.calls)::bigint AS calls, min(s.query) AS query
FROM {view} s JOIN pg_roles r ON r.oid = s.userid
WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND s.query IS NOT NULL AND NOT (r.rolname = ANY(%(exclude)s)) AND s.query ~* %(preparable)s
GROUP BY r.rolname, s.queryid
ORDER BY calls DESC, r.rolname, s.queryid
LIMIT %(limit)s
"""
_ROLE_SEARCH_PATH = """
SELECT substr(c, length('search_path=') + 1)
FROM pg_db_role_setting d JOIN pg_roles r ON r.oid = d.setrole, unnest(d.setconfig) AS c
WHERE r.rolname = %s AND c LIKE 'search_path=%%'
  AND d.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
ORDER BY d.setdatabase DESC LIMIT 1
"""
_NOT_RULED = {"57014", "55P03"}  # statement or lock timeout: says nothing about the schema
_STATEMENT_NAME = sql.Identifier("guardian_app_query")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Absent(str, Enum):
    """Why the app's queries could not be read."""

    not_loaded = "not-loaded"  # pg_stat_statements is not in shared_preload_libraries
    not_created = "not-created"  # loaded, but CREATE EXTENSION was not run in this database
    no_permission = "no-permission"  # Guardian's role may not read other roles' statements


class AppQuery(_Frozen):
    role: str  # the role that ran it
    calls: int  # 0 for a query read from a file
    query: str  # normalized by pg_stat_statements: constants are $1, $2, …
    queryid: int


class AppQueries(_Frozen):
    """The top statements by calls, or why there are none to check (``absent`` and ``message``)."""

    queries: tuple[AppQuery, ...] = ()
    since: datetime | None = None  # calls are counted from here (pg_stat_statements' last reset), when known
    absent: Absent | None = None
    message: str = ""


class QueryProblem(_Frozen):
    query: AppQuery
    error: str  # PostgreSQL's message and SQLSTATE

    @property
    def line(self) -> str:
        calls = f" — {self.query.calls:,} calls" if self.query.calls else ""
        return f"{self.error}{calls}: {self.query.query}"


class Probe(_Frozen):
    """Each query's PREPARE outcome on one schema: ``errors[i]`` is None when ``queries.queries[i]`` prepared."""

    queries: AppQueries
    errors: tuple[str | None, ...]
    not_ruled: tuple[bool, ...]  # a timeout, or a query not tried within the total budget

    @property
    def failures(self) -> tuple[QueryProblem, ...]:
        return tuple(QueryProblem(query=q, error=e) for q, e in zip(self.queries.queries, self.errors) if e)


class AppQueryReport(_Frozen):
    """What the migration does to the app's queries."""

    checked: int  # queries that prepared before the migration and were tried after it
    broken: tuple[QueryProblem, ...]  # prepared before, fail after: the migration breaks them
    unchecked: tuple[QueryProblem, ...]  # fail before too (or timed out): not blamed on the migration
    absent: Absent | None = None
    message: str = ""

    @property
    def summary(self) -> str:
        if self.absent:
            return f"app queries not checked: {self.message}"
        text = f"{self.checked:,} app queries checked, {len(self.broken):,} break"
        return text + (f" ({len(self.unchecked):,} could not be checked)" if self.unchecked else "")


def read_app_queries(conn: psycopg.Connection, *, limit: int = 500,
                     exclude_roles: Iterable[str] | None = None) -> AppQueries:
    """The ``limit`` most-called preparable statements of this database, with the role that ran each; Guardian's
    own (``exclude_roles``, by default the connection's role) left out. Never raises for a missing or unreadable
    pg_stat_statements: ``absent`` and ``message`` say which and what to do."""
    database = conn.info.dbname
    with conn.transaction():
        loaded, schema, may_read, me = conn.execute(
            "SELECT current_setting('pg_stat_statements.max', true) IS NOT NULL,"
            " (SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
            "  WHERE e.extname = 'pg_stat_statements'),"
            " pg_has_role('pg_read_all_stats', 'USAGE'), session_user").fetchone()
    exclude = [me] if exclude_roles is None else list(exclude_roles)
    if not loaded:
        return _absent(Absent.not_loaded, database, me)
    if schema is None:
        return _absent(Absent.not_created, database, me)
    if not may_read:
        return _absent(Absent.no_permission, database, me)
    view = sql.SQL(".").join([sql.Identifier(schema), sql.Identifier("pg_stat_statements")])
    try:
        with conn.transaction():
            rows = conn.execute(sql.SQL(_READ).format(view=view),
                                {"exclude": exclude, "preparable": _PREPARABLE, "limit": limit}).fetchall()
            has_info = conn.execute("SELECT to_regclass(format('%%I.pg_stat_statements_info', %s::text)) IS NOT NULL",
                                    (schema,)).fetchone()[0]  # extension 1.9+ (PostgreSQL 14)
            info = sql.SQL("SELECT stats_reset FROM {}.pg_stat_statements_info").format(sql.Identifier(schema))
            since = conn.execute(info).fetchone()[0] if has_info else None
    except psycopg.errors.ObjectNotInPrerequisiteState:  # created, but the library was not preloaded
        return _absent(Absent.not_loaded, database, me)
    except psycopg.errors.InsufficientPrivilege:
        return _absent(Absent.no_permission, database, me)
    return AppQueries(queries=tuple(AppQuery(role=r, queryid=i, calls=c, query=q) for r, i, c, q in rows),
                      since=since)


def read_query_file(text: str, *, role: str) -> AppQueries:
    """The new app version's queries from a file (statements separated by ``;``, parameters as ``$1``), to be
    prepared as ``role``."""
    return AppQueries(queries=tuple(AppQuery(role=role, calls=0, queryid=p.index, query=p.text)
                                    for p in split_statements(text)))


def _absent(why: Absent, database: str, me: str) -> AppQueries:
    todo = {
        Absent.not_loaded: "pg_stat_statements is not loaded on this server: add shared_preload_libraries = "
                           "'pg_stat_statements' to postgresql.conf (or the provider's parameter group), restart "
                           f'PostgreSQL, then run CREATE EXTENSION pg_stat_statements in database "{database}"',
        Absent.not_created: "pg_stat_statements is loaded but not created in database "
                            f'"{database}": run CREATE EXTENSION pg_stat_statements there',
        Absent.no_permission: f'role "{me}" may not read other roles\' statements in pg_stat_statements: '
                              f'run GRANT pg_read_all_stats TO "{me}"',
    }[why]
    return AppQueries(absent=why, message=f"{todo}; the running app's queries were not checked")


def probe_app_queries(conn: psycopg.Connection, queries: AppQueries, *, statement_timeout: str = "2s",
                      total_seconds: float = 60.0) -> Probe:
    """PREPARE (then DEALLOCATE, never EXECUTE) each query as its role, in a read-only transaction that is rolled
    back, parameters left for PostgreSQL to infer. A session cut short raises; a query's own failure is recorded."""
    deadline = time.monotonic() + total_seconds
    errors: list[str | None] = []
    not_ruled: list[bool] = []
    for query in queries.queries:
        if time.monotonic() > deadline:
            errors.append(f"not tried: the {total_seconds:g} s budget for the app's queries was spent")
            not_ruled.append(True)
            continue
        try:
            _prepare(conn, query, statement_timeout)
        except psycopg.Error as exc:
            if session_lost(exc):
                raise
            errors.append(describe_pg_error(exc))
            not_ruled.append(getattr(exc.diag, "sqlstate", None) in _NOT_RULED)
        else:
            errors.append(None)
            not_ruled.append(False)
    return Probe(queries=queries, errors=tuple(errors), not_ruled=tuple(not_ruled))


def _prepare(conn: psycopg.Connection, query: AppQuery, statement_timeout: str) -> None:
    with conn.transaction(force_rollback=True):
        search_path = conn.execute(_ROLE_SEARCH_PATH, (query.role,)).fetchone()
        conn.execute("SET LOCAL transaction_read_only = on")
        conn.execute("SELECT set_config('statement_timeout', %s, true), set_config('lock_timeout', %s, true)",
                     (statement_timeout, statement_timeout))
        if search_path:
            conn.execute("SELECT set_config('search_path', %s, true)", search_path)
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(query.role)))
        # the recorded text goes in verbatim as PREPARE's body: psycopg sends a parameterless query unchanged, and
        # binary=True forces the extended protocol, which refuses a second statement smuggled after a semicolon
        conn.execute(sql.SQL("PREPARE {} AS ").format(_STATEMENT_NAME) + sql.SQL(query.query), prepare=False,
                     binary=True)
        conn.execute(sql.SQL("DEALLOCATE {}").format(_STATEMENT_NAME), prepare=False)


def check_app_queries(conn: psycopg.Connection, before: Probe, *, statement_timeout: str = "2s",
                      total_seconds: float = 60.0) -> AppQueryReport:
    """After the migration: the queries that prepared in ``before`` and no longer do (broken, with PostgreSQL's
    message and their calls), and those that failed before too or timed out (unchecked, not blamed)."""
    queries = before.queries
    if queries.absent:
        return AppQueryReport(checked=0, broken=(), unchecked=(), absent=queries.absent, message=queries.message)
    after = probe_app_queries(conn, queries, statement_timeout=statement_timeout, total_seconds=total_seconds)
    broken: list[QueryProblem] = []
    unchecked: list[QueryProblem] = []
    for query, was, now, now_open in zip(queries.queries, before.errors, after.errors, after.not_ruled):
        if was is not None:
            unchecked.append(QueryProblem(query=query, error=was))
        elif now is not None and now_open:
            unchecked.append(QueryProblem(query=query, error=now))
        elif now is not None:
            broken.append(QueryProblem(query=query, error=now))
    return AppQueryReport(checked=len(queries.queries) - len(unchecked), broken=tuple(broken),
                          unchecked=tuple(unchecked))
