"""Apply step: a request's migrations on one dedicated connection, each file in one transaction with its ledger rows.

Usage (an RQ job; the backup step enqueues it)::

    enqueue_step(redis, "apply", request_id)

What it does, in order: takes the target's advisory lock (and Prisma's 72707369 for Prisma
projects) with pg_try_advisory_lock; sets lock_timeout/statement_timeout with set_config(…, true)
inside every migration transaction; retries a lock timeout (55P03) with exponential backoff and
jitter, posting the blocker; runs statements that cannot run in a transaction (CREATE/DROP INDEX
CONCURRENTLY, VACUUM, …) alone in autocommit, dropping the invalid index a failed one leaves; runs
`-- guardian: batch N` statements in short keyset batches. A file with such statements commits in
parts: what precedes each of them commits first, the rest commits with the ledger rows.

Each statement is timed (a file that does not parse goes whole, timed as a file): a transaction part's
statements go as one query with `SELECT clock_timestamp()` between them (run_timed), a statement run alone
goes alone. The file's record in the step's outcome lists per statement its index, line, kind, duration and
how long its locks were held (from its start until its transaction committed, as the rehearsal measures it),
which the thread then compares with the rehearsal's prediction statement by statement.
"""
from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors

from bot.counters import COUNTERS, LOCK_TIMEOUT_RETRIES
from bot.errors import GuardianError, TargetError
from bot.models import DbState, MigrationRef, Request
from bot.pg.connect import connect_target, describe_pg_error
from bot.pg.connect import session_lost as pg_session_lost
from bot.pg.summary import prediction_line, prediction_vs_actual, slowest_statement, statement_prediction_line
from bot.sources.apply import (
    ApplyError,
    SessionLost,
    apply_migration,
    check_applicable,
    mark_reverted,
    prisma_advisory_lock,
    record_started,
)
from bot.sources.ledgers import ensure_ledgers
from bot.sources.models import Migration
from bot.risk.parse import Piece
from workers import fleet, pipeline, report, truth
from workers.batch import plan_batch, run_batches
from workers.refs import to_migration
from workers.plan import Part, own_transactions, plan_parts
from workers.runtime import runtime
from workers.watchdog import Watchdog, application_name, fleet_session_name, target_lock_key

log = logging.getLogger(__name__)

T = TypeVar("T")
BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 30.0
BATCH_REPORT_EVERY_S = 5.0
_INVALID_INDEXES = "SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid"


class LockTimeoutError(TargetError):
    code = "lock-timeout"


@dataclass
class Progress:
    """What has been committed so far, to tell untouched from partially applied after a failure."""

    committed: int = 0
    files: list[dict[str, Any]] = field(default_factory=list)
    lock_retries: int = 0
    statements: list[dict[str, Any]] = field(default_factory=list)  # the current file's, once committed
    running: list[dict[str, Any]] = field(default_factory=list)  # statements of the open transaction (or attempt)

    def committed_now(self) -> None:
        """The open transaction committed: its statements' locks were held from their start until now."""
        now = time.perf_counter()
        for st in self.running:
            started = st.pop("_started")
            if "held_ms" not in st:  # alone (autocommit) and batched statements carry their own
                st["held_ms"] = round((now - started) * 1000, 3)
        self.statements += self.running
        self.running = []


@dataclass
class ApplyContext:
    rt: Any
    request: Request
    conn: psycopg.Connection
    layout: str
    lock_timeout: str
    statement_timeout: str
    tries: int
    dog: Watchdog
    progress: Progress
    approvers: list[str]
    backup_id: str | None
    ledger_id: str = ""      # the request id the sidecar records (a fleet target's: "<request>/<target>")
    quiet: bool = False      # a fleet target: its retries are logged, the rollout card reports for all targets

    def post(self, message: dict[str, Any]) -> None:
        if self.quiet:
            log.info("request %s: %s", self.request.id, message.get("text", ""))
            return
        report.post(self.rt, self.request, message)

    def retrying(self, name: str, attempt_once: Callable[[], T]) -> T:
        """Run ``attempt_once``; on a lock timeout (55P03) or a deadlock (40P01) back off (exponential, jittered)
        and try again, up to ``tries``."""
        attempt = 1
        while True:
            self.dog.clear_blockers()
            try:
                return attempt_once()
            except (pg_errors.LockNotAvailable, pg_errors.DeadlockDetected):  # rolled back: safe to run again
                blockers = self.dog.last_blockers()
                if attempt >= self.tries:
                    log.warning("request %s: %s: lock timeout on try %s of %s; giving up", self.request.id, name,
                                attempt, self.tries)
                    self.post(self.rt.notifier.lock_blockers(self.request.id, name, self.tries, blockers))
                    raise
                delay = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)
                log.info("request %s: %s: lock timeout on try %s of %s; retrying in %.1f s (blockers: %s)",
                         self.request.id, name, attempt, self.tries, delay, [b["pid"] for b in blockers])
                self.post(self.rt.notifier.lock_retry(self.request.id, name, attempt, self.tries, delay, blockers))
                self.progress.lock_retries += 1
                COUNTERS.add(LOCK_TIMEOUT_RETRIES, self.request.environment)  # GET /metrics, live
                time.sleep(delay)
                attempt += 1

    def local_timeouts(self) -> None:
        self.conn.execute("SELECT set_config('lock_timeout', %s, true), set_config('statement_timeout', %s, true)",
                          (self.lock_timeout, self.statement_timeout))


def run(request_id: int) -> None:
    """The RQ job: backing_up -> applying, apply every migration, then enqueue verify (or fail with the db state)."""
    rt = runtime()
    step = pipeline.begin(rt, request_id, "apply")
    if step is None:
        return
    progress = Progress()
    secrets: tuple[str, ...] = ()
    try:
        env = rt.config.environment(step.request.environment)
        if env.fleet is not None:  # a fleet's targets are its tenants, never the environment's own database
            fleet.start(rt, step)   # the step stays running until the rollout succeeds
            return
        url = env.database_url().get_secret_value()
        secrets = (url,)
        apply_all(rt, step.request, env, url, progress)
    except (GuardianError, psycopg.Error) as exc:
        if session_lost(exc) and truth.after_lost_session(rt, step, exc, progress.committed, _outcome(progress),
                                                          secrets[:1]):
            return
        scrubbed = pipeline.step_error(exc, step.request.environment, *secrets[:1])
        db_state = DbState.PARTIALLY_APPLIED if progress.committed else DbState.UNTOUCHED
        log.warning("request %s: apply failed after %s committed part(s): %s", request_id, progress.committed,
                    scrubbed)
        pipeline.fail(rt, request_id, expected=rt.pipeline["apply"].status, failed_step="apply",
                      db_state=db_state, error=scrubbed, step_id=step.step.id, outcome=_outcome(progress))
        return
    except BaseException as exc:  # a bug or a job timeout: record where and what the database holds, then re-raise
        db_state = DbState.PARTIALLY_APPLIED if progress.committed else DbState.UNTOUCHED
        pipeline.fail(rt, request_id, expected=rt.pipeline["apply"].status, failed_step="apply",
                      db_state=db_state, step_id=step.step.id, outcome=_outcome(progress),
                      error=GuardianError(f"the apply stopped unexpectedly ({type(exc).__name__}); the database "
                                          "state below is what had committed: report this with the request id",
                                          code="apply-crashed"))
        raise
    compared = _against_rehearsal(rt, request_id, progress)
    slowest = slowest_statement(compared)
    lines = rt.notifier.migrations_applied([(f["name"], f["duration_ms"]) for f in progress.files],
                                           progress.lock_retries, [prediction_line(row) for row in compared],
                                           statement_prediction_line(*slowest) if slowest else None)
    pipeline.succeed(step, {**_outcome(progress), "prediction": compared}, lines)


def _against_rehearsal(rt: Any, request_id: int, progress: Progress) -> list[dict[str, Any]]:
    """The rehearsal's predicted durations and lock hold times (its request.rehearsed event) beside this apply's."""
    rehearsed = [e for e in rt.store.list_events(request_id=request_id) if e.kind == "request.rehearsed"]
    statements = (rehearsed[-1].detail or {}).get("statements") if rehearsed else None
    return prediction_vs_actual(statements, progress.files) if statements else []


def session_lost(exc: BaseException) -> bool:
    """The target session was cut under the apply (SessionLost from a file, or a raw psycopg error elsewhere)."""
    return isinstance(exc, SessionLost) or (isinstance(exc, psycopg.Error) and pg_session_lost(exc))


def _outcome(progress: Progress) -> dict[str, Any]:
    return {"files": progress.files, "committed_parts": progress.committed, "lock_retries": progress.lock_retries}


def apply_all(rt: Any, request: Request, env: Any, url: str, progress: Progress, *, target: str | None = None,
              refs: list[MigrationRef] | None = None) -> None:
    """Apply every migration of ``request`` (or ``refs``) in order under the target's locks; raises on the first
    failure. ``target`` names a fleet target: its own advisory lock and sidecar id, its notes kept out of the thread.
    """
    layout = rt.config.project.layout
    where = env.name if target is None else f"{env.name}/{target}"
    name = application_name(request.id) if target is None else fleet_session_name(request.id, target)
    conn = connect_target(url, where, connect_timeout=10, application_name=name,
                          keepalives=True)  # a dead worker's session dies too
    with conn, ExitStack() as stack:
        _session_settings(conn, env)
        key = target_lock_key(where)
        if not conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
            raise TargetError(f"environment {where!r}: another Guardian apply holds this target's lock; "
                              "wait for it to finish, then retry", code="target-busy")
        stack.callback(_unlock, conn, key)
        if layout == "prisma":
            stack.enter_context(prisma_advisory_lock(conn))
        ctx = ApplyContext(rt=rt, request=request, conn=conn, layout=layout, lock_timeout=env.lock_timeout,
                           statement_timeout=env.statement_timeout, tries=env.apply_retries + 1, dog=None,
                           progress=progress, approvers=_approvers(rt, request.id),
                           backup_id=_backup_id(rt, request.id),
                           ledger_id=str(request.id) if target is None else f"{request.id}/{target}",
                           quiet=target is not None)
        redis = pipeline.redis_for(rt) if target is not None else None

        def on_waiters(waiting: list[dict[str, Any]]) -> None:
            if redis is not None:  # a fleet target: the health gate halts the rollout on it after this wave
                fleet.record_breach(redis, request.id, target, waiting)
            ctx.post(rt.notifier.waiters(request.id, len(waiting), max(w["wait_s"] for w in waiting), waiting))

        ctx.dog = stack.enter_context(Watchdog(
            url, conn.info.backend_pid, label=application_name(request.id, "watchdog"), on_waiters=on_waiters))
        for ref in (request.migrations if refs is None else refs):
            clock = time.monotonic()
            if layout != "prisma":
                # as `supabase db push` does before each file (pkg/migration/apply.go ApplyMigrations): a file's SET
                # (search_path, role, …) must not leak into the next; Prisma's deploy does not reset, nor do we there
                conn.execute("RESET ALL")
                _session_settings(conn, env)
            progress.statements, progress.running = [], []
            apply_file(ctx, ref)
            done: dict[str, Any] = {"name": ref.name, "duration_ms": int((time.monotonic() - clock) * 1000)}
            if progress.statements:  # sent statement by statement: the per-statement actuals
                done["statements"] = progress.statements
            progress.files.append(done)
            log.info("request %s: %s applied", request.id, ref.name)


def _session_settings(conn: psycopg.Connection, env: Any) -> None:
    """The apply session's own settings (set again after each RESET ALL)."""
    conn.execute("SELECT set_config('lock_timeout', %s, false), set_config('statement_timeout', %s, false)",
                 (env.lock_timeout, env.statement_timeout))
    if conn.info.server_version >= 140000:  # a query whose client died is cancelled within a second
        conn.execute("SET client_connection_check_interval = '1s'")


def _unlock(conn: psycopg.Connection, key: int) -> None:
    if not conn.closed and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


def _approvers(rt: Any, request_id: int) -> list[str]:
    return [d.user_id for d in rt.store.list_decisions(request_id) if d.decision == "approve"]


def _backup_id(rt: Any, request_id: int) -> str | None:
    done = [s for s in rt.store.list_steps(request_id) if s.step == "backup" and s.status == "succeeded"]
    backup_id = done[-1].outcome.get("backup_id") if done else None
    return str(backup_id) if backup_id is not None else None


def revert_file(ctx: ApplyContext, ref: MigrationRef) -> None:
    """A rollback request's part: the down SQL and the ledger saying "not applied" in ONE transaction."""
    migration = to_migration(ref, ctx.layout)

    def attempt_once() -> None:
        with ctx.conn.transaction():  # a savepoint: a lock timeout retries the down SQL alone
            ctx.conn.execute(ref.sql.encode("utf-8"))

    try:
        with ctx.conn.transaction():
            ctx.local_timeouts()
            ctx.retrying(f"{label(migration)} (down)", attempt_once)
            reverted = mark_reverted(ctx.conn, ctx.layout, migration)
    except pg_errors.LockNotAvailable as exc:
        raise LockTimeoutError(f"the down SQL of {label(migration)} could not get its locks after {ctx.tries} tries "
                               "and was rolled back; the blocker is named in the thread", sqlstate="55P03") from exc
    except psycopg.Error as exc:
        raise ApplyError(f"the down SQL of {label(migration)} failed and was rolled back: "
                         f"{describe_pg_error(exc)}"
                         "; fix the down SQL or restore the backup instead",
                         sqlstate=getattr(exc.diag, "sqlstate", None)) from exc
    log.info("request %s: %s reverted (%s ledger row(s))", ctx.request.id, label(migration), reverted)
    ctx.progress.committed += 1


def apply_file(ctx: ApplyContext, ref: MigrationRef) -> None:
    """One migration file: the fast path sends it whole inside the ledger transaction; mixed files commit in parts."""
    if ctx.request.source == "rollback":
        revert_file(ctx, ref)
        return
    migration = to_migration(ref, ctx.layout)
    parts = plan_parts(ref.sql, ctx.conn.info.server_version // 10000)
    if not parts:  # only comments: nothing to run, the ledger rows still record it
        _ledgered(ctx, migration, lambda: None)
        return
    if len(parts) == 1 and parts[0].kind == "tx":
        only = parts[0].pieces
        if own_transactions(ref.sql) or all(p.node_type for p in only):  # statement by statement, each timed
            _ledgered(ctx, migration, lambda: _timed(ctx, only))
        else:  # it does not parse: sent whole, as its tool would, for the server to judge (timed as a file)
            _ledgered(ctx, migration, lambda: ctx.conn.execute(migration.sql.encode("utf-8")))
        return
    ensure_ledgers(ctx.conn, ctx.layout)  # refuse an already-applied file before committing any part of it
    with ctx.conn.transaction():
        check_applicable(ctx.conn, ctx.layout, migration, request_id=ctx.ledger_id)
    # Prisma: the started row commits first, as in `prisma migrate deploy`, so a crash between parts reads as P3009
    started = record_started(ctx.conn, ctx.layout, migration)
    tail: list[Piece] = parts[-1].pieces if parts[-1].kind == "tx" else []
    for part in (parts[:-1] if tail else parts):
        try:
            _run_part(ctx, migration, part)
        except psycopg.Error as exc:  # record the failure in the ledgers as the tool would, then raise ApplyError
            _ledgered(ctx, migration, lambda error=exc: _reraise(error), retry=False, started_row=started)
        ctx.progress.committed += 1
    _ledgered(ctx, migration, lambda: _timed(ctx, tail), started_row=started)


def _timed(ctx: ApplyContext, pieces: list[Piece], *, alone: bool = False) -> None:
    run_timed(ctx.conn, pieces, ctx.progress.running, alone=alone)


def run_timed(conn: psycopg.Connection, pieces: list[Piece], running: list[dict[str, Any]], *,
              alone: bool = False) -> None:
    """Run ``pieces`` and time each into ``running`` (cleared first: a retried attempt starts again);
    Progress.committed_now adds the hold times once the transaction commits. Several statements go as ONE
    query, as Prisma sends a file, with ``SELECT clock_timestamp()`` between them: the server's clock times each
    statement at the cost of one round trip for the file (one per statement cost the documenso corpus ~30 %
    more apply time on a loaded machine). ``alone``: one statement in autocommit, whose locks are held exactly
    while it runs.

    Usage (what bench/rehearsal.py replays the way the fast path sends a file)::

        apply_migration(conn, "prisma", migration, execute=lambda c, _m: run_timed(c, pieces, progress.running))
        progress.committed_now()
    """
    running.clear()
    if not pieces:
        return
    if alone or len(pieces) == 1:
        started = time.perf_counter()
        conn.execute(pieces[0].text.encode("utf-8"))
        ms = round((time.perf_counter() - started) * 1000, 3)
        running.append({"index": pieces[0].index, "line": pieces[0].line, "kind": pieces[0].node_type,
                        "duration_ms": ms, "_started": started, **({"held_ms": ms} if alone else {})})
        return
    # the newline before each `;`: a statement may end in a -- comment
    query = _MARK + "".join(f"{p.text}\n;\n{_MARK}" for p in pieces)
    cur = conn.execute(query.encode("utf-8"))
    returned = time.perf_counter()
    marks, position = [], 0
    while True:  # one result per statement, alternating: mark, statement, mark, …, mark
        if position % 2 == 0:
            marks.append(cur.fetchone()[0])
        position += 1
        if not cur.nextset():
            break
    last = marks[-1]
    for piece, before, after in zip(pieces, marks, marks[1:]):
        running.append({"index": piece.index, "line": piece.line, "kind": piece.node_type,
                        "duration_ms": round((after - before).total_seconds() * 1000, 3),
                        "_started": returned - (last - before).total_seconds()})


_MARK = "SELECT clock_timestamp();\n"


def label(migration: Migration) -> str:
    """How people name the file: Prisma's folder, else `<version>_<name>` (the sql/Supabase ledger key is the version)."""
    if migration.ledger_name.endswith(migration.name):
        return migration.ledger_name
    return f"{migration.version}_{migration.name}"


def _reraise(error: BaseException) -> None:
    raise error


def _ledgered(ctx: ApplyContext, migration: Migration, statements: Callable[[], object], *, retry: bool = True,
              started_row: str | None = None) -> None:
    """Run ``statements`` inside apply_migration's transaction (ledger rows included), retrying lock timeouts
    by rolling back to a savepoint: the ledger insert before it stays, nothing is recorded as failed per retry."""

    def execute(conn: psycopg.Connection, _migration: Migration) -> None:
        ctx.local_timeouts()

        def attempt_once() -> None:
            with conn.transaction():  # a savepoint inside the file's transaction
                statements()

        if retry:
            ctx.retrying(label(migration), attempt_once)
        else:
            attempt_once()

    try:
        apply_migration(ctx.conn, ctx.layout, migration, request_id=ctx.ledger_id, approvers=ctx.approvers,
                        backup_id=ctx.backup_id, execute=execute, started_row=started_row)
        ctx.progress.committed_now()  # the ledger transaction committed: the locks its statements took are gone
    except ApplyError as exc:
        if exc.details.get("sqlstate") == "55P03":
            raise LockTimeoutError(
                f"migration {label(migration)} could not get its locks within lock_timeout "
                f"{ctx.lock_timeout} after {ctx.tries} tries and was rolled back; the blocker is named in the "
                "thread: let it finish (or stop it), then retry", sqlstate="55P03") from exc
        raise
    ctx.progress.committed += 1


def _run_part(ctx: ApplyContext, migration: Migration, part: Part) -> None:
    conn, name = ctx.conn, label(migration)
    if part.kind == "tx":
        def in_tx() -> None:
            with conn.transaction():
                ctx.local_timeouts()
                _timed(ctx, part.pieces)
        ctx.retrying(name, in_tx)
    elif part.kind == "alone":
        piece = part.pieces[0]
        ctx.retrying(name, lambda: _alone(ctx, piece))
    else:
        started = time.perf_counter()
        _batched(ctx, name, part)
        piece = part.pieces[0]  # committed batch by batch: its locks were never held for the whole of it
        ctx.progress.running = [{"index": piece.index, "line": piece.line, "kind": piece.node_type, "batched": True,
                                 "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                                 "_started": started, "held_ms": None}]
    ctx.progress.committed_now()


def _alone(ctx: ApplyContext, piece: Piece) -> None:
    """A statement that cannot run in a transaction, in autocommit; an invalid index it leaves is dropped."""
    conn = ctx.conn
    before = {r[0] for r in conn.execute(_INVALID_INDEXES).fetchall()}
    try:
        _timed(ctx, [piece], alone=True)
    except psycopg.Error:
        if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            for (index,) in conn.execute(_INVALID_INDEXES).fetchall():
                if index not in before:
                    log.warning("request %s: dropping invalid index %s left by a failed statement",
                                ctx.request.id, index)
                    try:
                        conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {index}")
                    except psycopg.Error as exc:  # the original error matters more; verify flags the index
                        log.warning("request %s: could not drop invalid index %s (%s); drop it by hand",
                                    ctx.request.id, index, type(exc).__name__)
        raise


def _batched(ctx: ApplyContext, name: str, part: Part) -> None:
    piece = part.pieces[0]
    size, pause = part.batch or (1000, 0.05)
    plan = plan_batch(ctx.conn, piece.text, size, pause)
    last_post = [0.0]

    def progress(rows: int, batches: int, done: bool) -> None:
        if done or time.monotonic() - last_post[0] >= BATCH_REPORT_EVERY_S:
            last_post[0] = time.monotonic()
            ctx.post(ctx.rt.notifier.batch_progress(ctx.request.id, name, piece.index + 1, rows, batches, done))

    def one_batch(do: Callable[[], T]) -> T:
        return ctx.retrying(name, do)

    run_batches(ctx.conn, plan, one_batch, progress, request_id=ctx.request.id)
