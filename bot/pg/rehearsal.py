"""Lock rehearsal: run migrations on a rehearsal database in ONE transaction that is always rolled back.

Per statement we record the relation locks our backend newly took (pg_locks), the tables whose storage was
rewritten (relfilenode changed) and the duration. Relations are named plain when visible through the
search_path, else ``schema.name``; relations created by the statement itself are left out (no other session
can see them yet). PostgreSQL does not show a lock twice, so a lock an earlier statement of the same run
already holds is listed again (at its strongest held mode) only for relations the risk analysis says this
statement locks.

Usage::

    with connect_target(url, "rehearsal") as conn:
        result = rehearse(conn, [("001_add_index.sql", sql)], lock_timeout="3s")
    guardian plan --target-url "$REHEARSAL_URL" --format json migrations/001_add_index.sql
"""
from __future__ import annotations

import time
from collections.abc import Sequence

import psycopg
from pydantic import BaseModel, ConfigDict

from bot.errors import GuardianError
from bot.pg.connect import scrub
from bot.pg.locks import held_locks, mode_name, relations
from bot.sources.statements import Piece, split_statements

_MODE_RANK = {m: i for i, m in enumerate((
    "ACCESS SHARE", "ROW SHARE", "ROW EXCLUSIVE", "SHARE UPDATE EXCLUSIVE", "SHARE", "SHARE ROW EXCLUSIVE",
    "EXCLUSIVE", "ACCESS EXCLUSIVE"))}


class RehearsalRefused(GuardianError):
    code = "rehearsal-refused"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ObservedLock(_Frozen):
    relation: str
    mode: str  # PostgreSQL's spelling, e.g. "ACCESS EXCLUSIVE"


class StatementRehearsal(_Frozen):
    index: int
    line: int
    kind: str | None
    transactional: bool
    rehearsed: bool
    reason: str | None = None  # why it was not rehearsed
    error: str | None = None  # the database's error when it failed (SQLSTATE included)
    observed_locks: tuple[ObservedLock, ...] = ()
    rewrites: tuple[str, ...] = ()
    duration_ms: float | None = None


class FileRehearsal(_Frozen):
    path: str
    statements: tuple[StatementRehearsal, ...]


class Rehearsal(_Frozen):
    server_version: str
    lock_timeout: str
    statement_timeout: str
    files: tuple[FileRehearsal, ...]

    @property
    def failed(self) -> bool:
        return any(s.error for f in self.files for s in f.statements)


def non_transactional_reason(piece: Piece) -> str | None:
    """Why PostgreSQL refuses this statement inside a transaction block (or we must not run it), else None."""
    n, t = piece.node or {}, piece.node_type
    if t == "IndexStmt" and n.get("concurrent"):
        return "CREATE INDEX CONCURRENTLY cannot run inside a transaction block"
    if t == "DropStmt" and n.get("concurrent"):
        return "DROP INDEX CONCURRENTLY cannot run inside a transaction block"
    if t == "ReindexStmt" and any(
        p.get("DefElem", {}).get("defname") == "concurrently" for p in n.get("params") or ()
    ):
        return "REINDEX CONCURRENTLY cannot run inside a transaction block"
    if t == "ReindexStmt" and n.get("kind") in ("REINDEX_OBJECT_SYSTEM", "REINDEX_OBJECT_DATABASE"):
        return "REINDEX SYSTEM/DATABASE cannot run inside a transaction block"
    if t == "VacuumStmt" and n.get("is_vacuumcmd"):
        return "VACUUM cannot run inside a transaction block"
    if t == "ClusterStmt" and not n.get("relation"):
        return "CLUSTER without a table cannot run inside a transaction block"
    if t in ("CreatedbStmt", "DropdbStmt", "CreateTableSpaceStmt", "DropTableSpaceStmt", "AlterSystemStmt",
             "CreateSubscriptionStmt", "DropSubscriptionStmt", "AlterSubscriptionStmt"):
        return f"{t.removesuffix('Stmt')} cannot run inside a transaction block"
    if t == "TransactionStmt":
        return "transaction control; the rehearsal runs everything in its own transaction that is rolled back"
    if t is None:
        return "the statement does not parse"
    return None


def _error(exc: psycopg.Error) -> str:
    diag = exc.diag
    text = scrub(diag.message_primary or str(exc).strip().splitlines()[0])
    if diag.sqlstate == "55P03":
        text += " (lock_timeout: another session holds a conflicting lock)"
    elif diag.sqlstate == "57014":
        text += " (statement_timeout reached)"
    return f"{text} (SQLSTATE {diag.sqlstate})" if diag.sqlstate else text


def _run_one(conn: psycopg.Connection, piece: Piece, expected: frozenset[str]) -> StatementRehearsal:
    before_rel = relations(conn)
    before_locks = held_locks(conn)
    started = time.perf_counter()
    conn.execute(piece.text.encode("utf-8"))
    elapsed = (time.perf_counter() - started) * 1000
    after_locks = held_locks(conn)
    after_rel = relations(conn)
    taken = {(oid, mode_name(mode)) for oid, mode in after_locks - before_locks if oid in before_rel}
    touched = {oid for oid, rel in before_rel.items() if rel[0] in expected or rel[3] in expected}
    for oid in touched - {oid for oid, _ in taken}:
        held = [mode_name(mode) for o, mode in before_locks if o == oid]
        if held:
            taken.add((oid, max(held, key=lambda m: _MODE_RANK.get(m, -1))))
    observed = sorted({(before_rel[oid][0], mode) for oid, mode in taken},
                      key=lambda lm: (lm[0], -_MODE_RANK.get(lm[1], -1)))
    rewrites = sorted(
        rel[0] for oid, rel in before_rel.items()
        if rel[2] in ("r", "m") and oid in after_rel and rel[1] and after_rel[oid][1] != rel[1]
    )
    return StatementRehearsal(
        index=piece.index, line=piece.line, kind=piece.node_type, transactional=True, rehearsed=True,
        observed_locks=tuple(ObservedLock(relation=r, mode=m) for r, m in observed), rewrites=tuple(rewrites),
        duration_ms=round(elapsed, 3),
    )


def _hints(reports: Sequence[object | None]) -> dict[tuple[int, int], list[tuple[bool, frozenset[str]]]]:
    """(file index, line) -> [(transactional, relations the analysis says it locks)] per statement, in order."""
    hints: dict[tuple[int, int], list[tuple[bool, frozenset[str]]]] = {}
    for fi, report in enumerate(reports):
        for st in getattr(report, "statements", ()) or ():
            names = {lk.relation for lk in st.locks} | {lk.relation.removeprefix("public.") for lk in st.locks}
            hints.setdefault((fi, st.line), []).append((st.transactional, frozenset(names)))
    return hints


def _analyze(files: Sequence[tuple[str, str]], pg_version: int) -> list[object | None]:
    from bot.risk import Context, analyze

    return [analyze(sql, Context(pg_version=pg_version)) for _, sql in files]


def rehearse(
    conn: psycopg.Connection, files: Sequence[tuple[str, str]], *, lock_timeout: str = "5s",
    statement_timeout: str = "5min", reports: Sequence[object | None] | None = None,
) -> Rehearsal:
    """Rehearse ``files`` ((path, sql) in order) in one transaction, then roll it back, always.

    ``conn`` must be in autocommit mode. ``reports`` are the risk engine's reports per file (computed
    here when omitted): their ``transactional`` verdicts and lock lists refine
    what is skipped and which already-held locks are attributed to a statement.
    """
    if not conn.autocommit:
        raise GuardianError("rehearse() needs an autocommit connection", code="busy-connection")
    version = conn.execute("SELECT current_setting('server_version')").fetchone()[0].split()[0]
    if reports is None:
        reports = _analyze(files, int(conn.info.server_version) // 10000)
    hints = _hints(reports)
    results: list[FileRehearsal] = []
    stopped: str | None = None
    with conn.transaction(force_rollback=True):
        conn.execute("SELECT set_config('lock_timeout', %s, true), set_config('statement_timeout', %s, true)",
                     (lock_timeout, statement_timeout))
        for file_index, (path, sql) in enumerate(files):
            rows: list[StatementRehearsal] = []
            for piece in split_statements(sql):
                reason = non_transactional_reason(piece)
                same_line = hints.get((file_index, piece.line)) or [(True, frozenset())]
                transactional_hint, expected = same_line.pop(0) if len(same_line) > 1 else same_line[0]
                if reason is None and not transactional_hint:
                    reason = "the analysis marks it as not runnable inside a transaction"
                transactional = reason is None or piece.node_type in ("TransactionStmt", None)
                if stopped or reason:
                    rows.append(StatementRehearsal(
                        index=piece.index, line=piece.line, kind=piece.node_type, transactional=transactional,
                        rehearsed=False, reason=(f"not rehearsed: {reason}" if reason else stopped)))
                    continue
                try:
                    rows.append(_run_one(conn, piece, expected))
                except psycopg.Error as exc:
                    rows.append(StatementRehearsal(
                        index=piece.index, line=piece.line, kind=piece.node_type, transactional=True,
                        rehearsed=False, error=_error(exc), reason="failed during rehearsal"))
                    stopped = f"not rehearsed: an earlier statement ({path}:{piece.line}) failed"
            results.append(FileRehearsal(path=path, statements=tuple(rows)))
    return Rehearsal(server_version=version, lock_timeout=lock_timeout, statement_timeout=statement_timeout,
                     files=tuple(results))
