"""Lock rehearsal: run migrations on a rehearsal database in ONE transaction that is always rolled back.

Per statement we record, from one look at our own backend after it (bot/pg/locks.py; the look after the
previous statement serves as the one before, so a run costs one query per statement plus one): the
relation locks it newly took (pg_locks), the tables whose storage was rewritten and the pre-existing indexes
rebuilt (relfilenode changed), the indexes it built on pre-existing tables, the pre-existing tables it read
(pg_stat_xact counters: sequential scans, rows they returned, index scans), the duration, and its error
when it fails. Relations are named plain when visible through the search_path, else ``schema.name``;
relations created by the statement itself are left out (no other session can see them yet). PostgreSQL does
not show a lock twice, so a lock an earlier statement of the same run already holds is listed again (at its
strongest held mode) only for relations the risk analysis says this statement locks. A statement that
cannot run in a transaction is not rehearsed, except that DROP INDEX CONCURRENTLY's plain twin is tried in a
savepoint for the error it would meet. With ``commit`` (on a copy), what would reach beyond the copy's database
on the server it shares with the target is never committed (bot/pg/serverwide.py): a statement run alone only
when database-local, and a transaction part that changed a shared catalog (a role, even in a DO block; a
database's settings) rolled back instead, both said in the statement's reason and in ``Rehearsal.warnings``.

Usage::

    with connect_target(url, "rehearsal") as conn:
        result = rehearse(conn, [("001_add_index.sql", sql)], lock_timeout="3s")
    guardian plan --target-url "$REHEARSAL_URL" --format json migrations/001_add_index.sql
"""
from __future__ import annotations

import logging
import re
import threading
import time
from contextlib import nullcontext
from collections.abc import Sequence
from operator import attrgetter

import psycopg
from pydantic import BaseModel, ConfigDict

from bot.errors import GuardianError
from bot.pg.connect import describe_pg_error, second_session
from bot.pg.datafail import OffendingRows, offending_rows
from bot.pg.locks import Look, look, mode_name
from bot.pg.serverwide import NOT_ON_COPY, SharedCatalogs, alone_refusal, shared_change
from bot.pg.warm import Warmed, warm
from bot.risk import transaction_refusal, transactional
from bot.risk.parse import Piece, split_statements

log = logging.getLogger(__name__)
_WATCH_EVERY_S = 0.005

_DML = {"InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"}
_DROP_CONCURRENTLY = re.compile(r"^(DROP\s+INDEX\s+)CONCURRENTLY\s+", re.IGNORECASE)
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


class IndexChange(_Frozen):
    """An index of a pre-existing table that the statement rebuilt or built, and its table's lock then."""

    index: str
    table: str
    lock: str | None  # the strongest lock the transaction held on the table after the statement


class TableScan(_Frozen):
    """A pre-existing table the statement read (deltas of pg_stat_xact_user_tables for this statement)."""

    relation: str
    seq_scans: int
    rows_read: int  # by sequential scans; only this backend's share when PostgreSQL parallelised one
    index_scans: int
    lock: str | None  # the strongest lock the transaction held on it after the statement


class StatementRehearsal(_Frozen):
    index: int
    line: int
    kind: str | None
    transactional: bool
    rehearsed: bool
    reason: str | None = None  # why it was not rehearsed
    error: str | None = None  # the database's error when it failed (SQLSTATE included)
    sqlstate: str | None = None
    observed_locks: tuple[ObservedLock, ...] = ()
    rewrites: tuple[str, ...] = ()
    rebuilt_indexes: tuple[IndexChange, ...] = ()  # pre-existing indexes whose storage changed
    built_indexes: tuple[IndexChange, ...] = ()  # new indexes with storage on pre-existing tables
    scans: tuple[TableScan, ...] = ()
    duration_ms: float | None = None
    rows_changed: int | None = None  # INSERT/UPDATE/DELETE/MERGE: rows they changed
    wal_bytes: int | None = None  # WAL the server wrote while it ran (server-wide: other sessions' writes count too)
    held_ms: float | None = None  # from its start until its transaction ended: how long the locks it took were held
    offending: tuple[OffendingRows, ...] = ()  # a data-dependent failure: the rows that caused it (bot/pg/datafail.py)
    invalid_indexes: tuple[str, ...] = ()  # run alone on a copy and failed: the INVALID indexes it left behind
    # an earlier statement of the run was skipped (not runnable in a transaction), so the database here
    # may differ from the one the apply will see at this statement
    after_skip: bool = False


class FileRehearsal(_Frozen):
    path: str
    statements: tuple[StatementRehearsal, ...]


class Rehearsal(_Frozen):
    server_version: str
    lock_timeout: str
    statement_timeout: str
    files: tuple[FileRehearsal, ...]
    scans_counted: bool = True  # track_counts is on: pg_stat_xact counts this transaction's scans
    timezone: str | None = None  # the session TimeZone it ran with (timestamp -> timestamptz depends on it)
    # on a copy (commit): what was kept from the server the copy lives on (bot/pg/serverwide.py): statements not
    # run, transactions rolled back instead of committed
    warnings: tuple[str, ...] = ()
    # time spent in our own observation between statements (looks, WAL positions, what we make of them): left out of
    # every hold time
    observed_ms: float = 0.0
    warmed: Warmed | None = None  # on a copy (commit): the touched tables read into its buffers first (bot/pg/warm.py)

    @property
    def failed(self) -> bool:
        return any(s.error for f in self.files for s in f.statements)

    @property
    def data_failures(self) -> list[tuple[str, StatementRehearsal]]:
        """(path, statement) of each statement that failed on the data it met, with the offending rows."""
        return [(f.path, s) for f in self.files for s in f.statements if s.offending]


def non_transactional_reason(piece: Piece, pg_version: int) -> str | None:
    """Why PostgreSQL refuses this statement inside a transaction block (the risk engine's classifier,
    bot.risk.transaction_refusal), or why we must not run it, else None."""
    if piece.node_type == "TransactionStmt":
        return "transaction control; the rehearsal runs everything in its own transaction that is rolled back"
    if piece.node_type is None:
        return "the statement does not parse"
    if piece.node_type in _SUBSCRIPTIONS:
        return f"{piece.node_type.removesuffix('Stmt')} reaches the publisher's server; the rehearsal never runs it"
    return transaction_refusal(piece.node_type, piece.node, pg_version)


# Not a question of transactions (the engine lets most of them run in one): they act on another server
_SUBSCRIPTIONS = ("CreateSubscriptionStmt", "DropSubscriptionStmt", "AlterSubscriptionStmt")


def _probe(conn: psycopg.Connection, piece: Piece) -> psycopg.Error | None:
    """The error of DROP INDEX CONCURRENTLY's plain twin, run in a savepoint rolled back at once (its locks go
    with it): what makes the plain drop fail (an index backing a constraint, no such index) fails the
    concurrent one too. Other statements that cannot run in a transaction are not probed."""
    if piece.node_type != "DropStmt" or not (piece.node or {}).get("concurrent"):
        return None
    plain, found = _DROP_CONCURRENTLY.subn(r"\1", piece.text, count=1)
    if not found:
        return None
    try:
        with conn.transaction(force_rollback=True):
            conn.execute(plain.encode("utf-8"))
    except psycopg.Error as exc:
        return exc
    return None


def _strongest(modes) -> str | None:
    return max(modes, key=lambda m: _MODE_RANK.get(m, -1), default=None)


class _LockWatch:
    """The relation locks another backend holds, sampled every few milliseconds from a session of our own while a
    statement runs alone (its locks end with it, before our backend could look): what it was seen to hold, at
    least; a lock held for less than a sample's interval may be missed."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.pid, self.seen = conn.info.backend_pid, set()
        self._stop = threading.Event()
        self._session = second_session(conn, "guardian-rehearsal-locks")
        self._thread = threading.Thread(target=self._sample, name="rehearsal-lock-watch", daemon=True)

    def _sample(self) -> None:
        query = ("SELECT relation, mode FROM pg_locks WHERE pid = %s AND locktype = 'relation' AND granted "
                 "AND database <> 0")
        while not self._stop.is_set():
            self.seen.update(self._session.execute(query, (self.pid,)).fetchall())
            self._stop.wait(_WATCH_EVERY_S)

    def __enter__(self) -> "_LockWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._session.close()


def _watch(conn: psycopg.Connection) -> "_LockWatch | nullcontext":
    """A lock watch on ``conn``'s backend, or nothing when a second session cannot be opened (then no locks are
    shown for the statement, as before)."""
    try:
        return _LockWatch(conn)
    except psycopg.Error as exc:
        log.warning("rehearsal: the locks of a statement run alone are not watched: %s", describe_pg_error(exc))
        return nullcontext()


class _OwnTime:
    """The time a run spends in Guardian's own observation (looks, WAL positions, the rows made of them), which the apply does not spend:
    a clock that stops while we observe. A statement's hold is ``now()`` at its transaction's end minus ``now()``
    at its start: the wall time between them less the observation made in between (our look after each later
    statement would otherwise count in the hold of every earlier one: 1-6 ms each on a loaded server)."""

    def __init__(self) -> None:
        self.spent = 0.0  # seconds

    def now(self) -> float:
        return time.perf_counter() - self.spent

    def __enter__(self) -> "_OwnTime":
        self._from = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.spent += time.perf_counter() - self._from


def _run_one(conn: psycopg.Connection, piece: Piece, expected: frozenset[str], after_skip: bool,
             before: Look | None, own: _OwnTime, *, alone: bool = False) -> tuple[StatementRehearsal, Look]:
    """The statement run and observed; ``before`` is a look taken since the previous statement ran (the
    previous statement's look after it, when nothing ran in between; taken here when None), and the look after it
    is returned. Our looks and WAL readings are timed into ``own``. A statement run ``alone`` (autocommit) has its
    locks watched from a second session while it runs."""
    with own:
        before = before or look(conn)
        wal = _lsn(conn)
    with _watch(conn) if alone else nullcontext() as watch:
        started = time.perf_counter()
        cur = conn.execute(piece.text.encode("utf-8"))
        elapsed = (time.perf_counter() - started) * 1000
    with own:  # the look and what we make of it (a few ms over many relations) are ours too
        wal = _lsn(conn) - wal
        after = look(conn)
        changed = cur.rowcount if piece.node_type in _DML and cur.rowcount >= 0 else None
        return _observed(piece, expected, after_skip, before, after, getattr(watch, "seen", ()), elapsed, changed,
                         wal), after


def _observed(piece: Piece, expected: frozenset[str], after_skip: bool, before: Look, after: Look,
              watched: set, elapsed: float, changed: int | None, wal: int) -> StatementRehearsal:
    """The statement's row from the looks before and after it (and the locks watched while it ran alone)."""
    rel = before.relations
    taken = {(oid, mode_name(mode)) for oid, mode in after.locks - before.locks if oid in rel}
    taken |= {(oid, mode_name(mode)) for oid, mode in watched if oid in rel}
    touched = {oid for oid, r in rel.items() if r.name in expected or r.qualified in expected}
    for oid in touched - {oid for oid, _ in taken}:
        held = _strongest(mode_name(mode) for o, mode in before.locks if o == oid)
        if held:
            taken.add((oid, held))
    observed = sorted({(rel[oid].name, mode) for oid, mode in taken},
                      key=lambda lm: (lm[0], -_MODE_RANK.get(lm[1], -1)))
    rebuilt, built = _indexes(before, after)
    return StatementRehearsal(
        index=piece.index, line=piece.line, kind=piece.node_type, transactional=True, rehearsed=True,
        observed_locks=tuple(ObservedLock(relation=r, mode=m) for r, m in observed), rewrites=_rewrites(before, after),
        rebuilt_indexes=rebuilt, built_indexes=built, scans=_scans(before, after), duration_ms=round(elapsed, 3),
        after_skip=after_skip, rows_changed=changed, wal_bytes=wal,
    )


def _lsn(conn: psycopg.Connection) -> int:
    high, low = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0].split("/")
    return (int(high, 16) << 32) | int(low, 16)


def _held_until(rows: list[StatementRehearsal], starts: dict[int, float], ended: float) -> list[StatementRehearsal]:
    """Each statement that ran, with how long its locks were held: from its start until the transaction ended."""
    return [r.model_copy(update={"held_ms": round((ended - starts[i]) * 1000, 3)}) if i in starts else r
            for i, r in enumerate(rows)]


def _held(after: Look, oid: int) -> str | None:
    return _strongest(mode_name(mode) for o, mode in after.locks if o == oid)


def _rewrites(before: Look, after: Look) -> tuple[str, ...]:
    return tuple(sorted(
        r.name for oid, r in before.relations.items()
        if r.kind in ("r", "m") and r.filenode and oid in after.relations and after.relations[oid].filenode != r.filenode))


def _indexes(before: Look, after: Look) -> tuple[tuple[IndexChange, ...], tuple[IndexChange, ...]]:
    """(pre-existing indexes whose storage changed, new indexes with storage) on pre-existing tables.

    ALTER COLUMN TYPE re-creates the indexes on the column under a new oid and the same name, keeping the
    old relfilenode when the index needs no rebuild; so an index is matched to its old self by oid, else by
    name on the same table.
    """
    old_rel = before.relations
    by_name = {(r.qualified, r.table): r for r in old_rel.values() if r.kind == "i"}
    rebuilt, built = [], []
    for oid, r in after.relations.items():
        if r.kind != "i" or not r.filenode or r.table not in old_rel:
            continue
        old = old_rel.get(oid) or by_name.get((r.qualified, r.table))
        if old is None or old.filenode != r.filenode:
            change = IndexChange(index=r.name, table=old_rel[r.table].name, lock=_held(after, r.table))
            (built if old is None else rebuilt).append(change)
    order = attrgetter("table", "index")
    return tuple(sorted(rebuilt, key=order)), tuple(sorted(built, key=order))


def _scans(before: Look, after: Look) -> tuple[TableScan, ...]:
    """Pre-existing tables this statement read: its deltas of this transaction's scan counters."""
    old_rel = before.relations
    seq: dict[int, tuple[int, int]] = {}
    index_scans: dict[int, int] = {}
    for oid, r in after.relations.items():
        old = old_rel.get(oid)
        if r.kind == "i" and r.table in old_rel:
            delta = r.scans - (old.scans if old else 0)
            if delta:
                index_scans[r.table] = index_scans.get(r.table, 0) + delta
        elif old is not None and r.kind in ("r", "m") and r.scans != old.scans:
            seq[oid] = (r.scans - old.scans, r.tuples - old.tuples)
    return tuple(sorted(
        (TableScan(relation=old_rel[oid].name, seq_scans=seq.get(oid, (0, 0))[0], rows_read=seq.get(oid, (0, 0))[1],
                   index_scans=index_scans.get(oid, 0), lock=_held(after, oid))
         for oid in seq.keys() | index_scans.keys()), key=lambda t: t.relation))


def _hints(reports: Sequence[object | None]) -> dict[tuple[int, int], tuple[bool, frozenset[str]]]:
    """(file index, statement index) -> (transactional, relations the analysis says it locks)."""
    hints: dict[tuple[int, int], tuple[bool, frozenset[str]]] = {}
    for fi, report in enumerate(reports):
        for st in getattr(report, "statements", ()) or ():
            names = {lk.relation for lk in st.locks} | {lk.relation.removeprefix("public.") for lk in st.locks}
            hints[(fi, st.index)] = (st.transactional, frozenset(names))
    return hints


def _analyze(files: Sequence[tuple[str, str]], pg_version: int) -> list[object | None]:
    from bot.risk import Context, analyze

    return [analyze(sql, Context(pg_version=pg_version)) for _, sql in files]


class _Parts:
    """``commit`` mode: a file's statements in transactions that are committed, ended by each statement that must
    run alone (the apply's parts, workers/plan.py); a statement's locks are held until its transaction ends. A
    part that changed the server's shared catalogs (roles, databases, …: the copy shares them with the target) is
    rolled back instead, its statements saying so."""

    def __init__(self, conn: psycopg.Connection, rows: list[StatementRehearsal], guard: SharedCatalogs,
                 path: str, own: _OwnTime) -> None:
        self.conn, self.rows, self.starts, self.open, self.guard, self.path = conn, rows, {}, False, guard, path
        self.own = own
        self.warnings: list[str] = []
        self.named: set[str] = set()  # server-wide objects the part's statements change by their parse

    def begin(self) -> None:
        if not self.open:
            self.guard.begin(self.conn)
            self.conn.execute("BEGIN")
            self.open = True

    def end(self, *, commit: bool = True) -> bool:
        """Commit (or roll back) the open transaction; its statements' hold times end now. True when it was to be
        committed but changed server-wide objects, so was rolled back (what follows runs without its effects)."""
        kept, ended = (), self.own.now()  # the guard's reading is ours, not the apply's: not in the hold time
        if self.open:
            kept = tuple(sorted(set(self.guard.changed(self.conn)) | self.named)) if commit else ()
            self.conn.execute("COMMIT" if commit and not kept else "ROLLBACK")
            self.open = False
        if kept:
            what = ", ".join(kept)
            ran = sorted(self.starts)
            for i in ran:
                self.rows[i] = self.rows[i].model_copy(update={
                    "reason": f"changes server-wide objects ({what}): rehearsed, rolled back, not committed on the copy"})
            lines = ", ".join(str(self.rows[i].line) for i in ran)
            self.warnings.append(f"{self.path} line{'s' if len(ran) > 1 else ''} {lines}: changes server-wide objects "
                                 f"({what}): rehearsed, rolled back, not committed on the copy; what follows ran "
                                 "without it")
            log.warning("rehearsal: %s", self.warnings[-1])
        self.rows[:] = _held_until(self.rows, self.starts, ended)
        self.starts.clear()
        self.named.clear()
        return bool(kept)


def _invalid_indexes(conn: psycopg.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid")}


def rehearse(
    conn: psycopg.Connection, files: Sequence[tuple[str, str]], *, lock_timeout: str = "5s",
    statement_timeout: str = "5min", reports: Sequence[object | None] | None = None, commit: bool = False,
) -> Rehearsal:
    """Rehearse ``files`` ((path, sql) in order) in one transaction, then roll it back, always; with ``commit``
    (on a throwaway copy only) the files run as the apply runs them: transactional statements in transactions that
    are committed (lock hold times end there), each statement that cannot run in a transaction alone in autocommit
    between them (its hold time is its duration; a failed one may leave an INVALID index, reported), so the copy
    holds the migrated schema afterwards. Without ``commit`` those statements are not rehearsed. The copy shares
    its server with the target, so with ``commit`` a statement that must run alone runs only when what it changes
    stays in the copy's database (bot/pg/serverwide.py alone_refusal: not ALTER SYSTEM, CREATE DATABASE, …), and a
    transaction that changed a shared catalog (roles, memberships, database settings, …; DO blocks included) is
    rolled back instead of committed; what follows either is marked ``after_skip``.

    ``conn`` must be in autocommit mode. ``reports`` are the risk engine's reports per file (computed
    here when omitted): their ``transactional`` verdicts and lock lists refine
    what is skipped and which already-held locks are attributed to a statement.
    """
    if not conn.autocommit:
        raise GuardianError("rehearse() needs an autocommit connection", code="busy-connection")
    version, counted, timezone = conn.execute(
        "SELECT current_setting('server_version'), current_setting('track_counts')::bool, current_setting('TimeZone')"
    ).fetchone()
    version = version.split()[0]
    pg_major = int(conn.info.server_version) // 10000
    if reports is None:
        reports = _analyze(files, pg_major)
    hints = _hints(reports)
    stopped: str | None = None
    skipped = False  # a statement that changes the database was skipped: what follows runs on a different one
    last: Look | None = None  # the look after the previous statement, while nothing else ran since
    data_failed: list[tuple[int, int, str]] = []  # (file, row, statement text) of integrity failures
    # commit: for the session (statements alone run outside any transaction), as the apply's connection has them
    timeouts = (f"SELECT set_config('lock_timeout', %s, {'false' if commit else 'true'}), "
                f"set_config('statement_timeout', %s, {'false' if commit else 'true'})")
    rows_by_file: list[tuple[str, list[StatementRehearsal], dict[int, float]]] = []
    warnings: list[str] = []
    # a fresh copy's pages are not in shared_buffers, the target's busy ones are: read in what the files touch first
    warmed = warm(conn, {name for _, names in hints.values() for name in names}) if commit else None
    own = _OwnTime()  # a clock without our observation: what the hold times are read from
    with SharedCatalogs(conn) if commit else nullcontext() as guard, (
            nullcontext() if commit else conn.transaction(force_rollback=True)):
        for file_index, (path, sql) in enumerate(files):
            rows: list[StatementRehearsal] = []
            starts: dict[int, float] = {}  # row -> when the statement started (without commit)
            parts = _Parts(conn, rows, guard, path, own)
            if file_index == 0:
                conn.execute(timeouts, (lock_timeout, statement_timeout))
            for piece in split_statements(sql):
                reason = non_transactional_reason(piece, pg_major)
                transactional_hint, expected = hints.get((file_index, piece.index), (True, frozenset()))
                if reason is None and not transactional_hint:
                    reason = "the analysis marks it as not runnable inside a transaction"
                alone = (commit and piece.node_type not in ("TransactionStmt", None, *_SUBSCRIPTIONS)
                         and (not transactional_hint or not transactional(piece.node_type, piece.node or {}, pg_major)))
                reason = None if alone else reason
                refused = alone_refusal(piece) if alone else None  # committed at once on the target's server
                if refused:
                    alone, reason = False, refused
                    warnings.append(f"{path} line {piece.line}: {refused}")
                is_tx = not alone and (reason is None or piece.node_type in ("TransactionStmt", None))
                failed = None if stopped or not reason else _probe(conn, piece)
                last = None if reason else last  # a probe's savepoint leaves scan counters behind
                if stopped or reason:
                    rows.append(StatementRehearsal(
                        index=piece.index, line=piece.line, kind=piece.node_type, transactional=is_tx,
                        rehearsed=False, reason=(reason if reason and reason.endswith(NOT_ON_COPY) else
                                                 f"not rehearsed: {reason}" + ("; its plain twin failed" if failed else "")
                                                 if reason else stopped),
                        error=failed and describe_pg_error(failed, timeouts=True),
                        sqlstate=failed and failed.diag.sqlstate, after_skip=skipped))
                    skipped = skipped or piece.node_type != "TransactionStmt"
                    if failed:
                        stopped = f"not rehearsed: an earlier statement ({path}:{piece.line}) fails"
                    continue
                invalid: set[str] = set()
                try:
                    if alone:  # what ran before it commits, as the apply's transaction part does
                        skipped = parts.end() or skipped
                        last, invalid = None, _invalid_indexes(conn)
                    elif commit:
                        if not parts.open:
                            last = None
                        parts.begin()
                        parts.named |= {shared_change(piece)} - {None}
                    (parts.starts if commit and not alone else starts)[len(rows)] = own.now()
                    row, last = _run_one(conn, piece, expected, skipped, last, own, alone=alone)
                    if alone:  # its locks ended with it: held as long as it ran
                        row, last = row.model_copy(update={"transactional": False, "held_ms": row.duration_ms}), None
                    rows.append(row)
                except psycopg.Error as exc:
                    if (exc.diag.sqlstate or "")[:2] in ("22", "23"):  # data, integrity: which rows, once rolled back
                        data_failed.append((file_index, len(rows), piece.text))
                    left = tuple(sorted(_invalid_indexes(conn) - invalid)) if alone else ()
                    rows.append(StatementRehearsal(
                        index=piece.index, line=piece.line, kind=piece.node_type, transactional=not alone,
                        rehearsed=False, error=describe_pg_error(exc, timeouts=True), sqlstate=exc.diag.sqlstate,
                        reason="failed during rehearsal" + (
                            f"; it left the INVALID index {', '.join(left)} (the apply drops it)" if left else ""),
                        after_skip=skipped, invalid_indexes=left))
                    stopped = f"not rehearsed: an earlier statement ({path}:{piece.line}) failed"
            if commit:  # a failed file's open transaction rolls back, as the apply rolls back a failed part
                skipped = parts.end(commit=not stopped) or skipped
                warnings += parts.warnings
            rows_by_file.append((path, rows, starts))
    ended = own.now()
    if guard is not None:
        log.info("rehearsal: shared catalogs checked before %d commit(s), %.1f ms each at most%s", len(guard.costs_ms),
                 max(guard.costs_ms, default=0), f" (not readable: {', '.join(guard.unwatched)})" if guard.unwatched else "")
    results = [FileRehearsal(path=path, statements=tuple(rows if commit else _held_until(rows, starts, ended)))
               for path, rows, starts in rows_by_file]
    for file_index, row, text in data_failed:  # counted on the data as it was before the statement
        f = results[file_index]
        found = offending_rows(conn, text, timeout=statement_timeout)
        statements = list(f.statements)
        statements[row] = statements[row].model_copy(update={"offending": found})
        results[file_index] = f.model_copy(update={"statements": tuple(statements)})
    return Rehearsal(server_version=version, lock_timeout=lock_timeout, statement_timeout=statement_timeout,
                     files=tuple(results), scans_counted=counted, timezone=timezone, warnings=tuple(warnings),
                     observed_ms=round(own.spent * 1000, 3), warmed=warmed)
