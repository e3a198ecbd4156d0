"""Applying one migration file in one transaction together with its ledger rows, as its tool would.

Usage::

    with connect_target(url, "staging") as conn, prisma_advisory_lock(conn):
        result = apply_migration(conn, "prisma", snapshot.migrations[0], request_id="r-42")
"""
from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

import psycopg

from bot.errors import GuardianError
from bot.pg.connect import describe_pg_error, session_lost, target_errors
from bot.sources.ledgers import (
    HISTORY_TABLE,
    PRISMA_TABLE,
    SIDECAR_TABLE,
    SUPABASE_TABLE,
    LedgerError,
    ensure_ledgers,
    prisma_checksum,
    statements_sha256,
)
from bot.sources.models import ApplyResult, Layout, Migration
from bot.risk.parse import split_statements
from bot.sources.supabase_parser import split_and_trim

log = logging.getLogger(__name__)

PRISMA_ADVISORY_LOCK_KEY = 72707369  # prisma-engines: the number that identifies Migrate
PRISMA_LOCK_TIMEOUT_S = 10.0

# execute(conn, migration): runs the migration's SQL on ``conn`` inside the open transaction.
Executor = Callable[[psycopg.Connection, Migration], None]


class ApplyError(GuardianError):
    """A migration's SQL failed; the database is rolled back to before the file."""

    code = "apply-failed"


class SessionLost(ApplyError):
    """The session was cut while a file ran (pg_terminate_backend, restart, failover): infrastructure, not the file."""

    code = "target-session-lost"


class LockBusy(GuardianError):
    code = "lock-busy"


def run_script(conn: psycopg.Connection, migration: Migration) -> None:
    """Default executor: the whole file as one simple query, as Prisma sends it."""
    if split_statements(migration.sql):
        conn.execute(migration.sql.encode("utf-8"))  # bytes: no client-side placeholder handling


@contextmanager
def prisma_advisory_lock(conn: psycopg.Connection, timeout_s: float = PRISMA_LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold Prisma Migrate's session advisory lock (72707369) so `prisma migrate deploy` waits for us."""
    with advisory_lock(conn, PRISMA_ADVISORY_LOCK_KEY, timeout_s, holder="prisma migrate"):
        yield


@contextmanager
def advisory_lock(conn: psycopg.Connection, key: int, timeout_s: float, *, holder: str = "another session") -> Iterator[None]:
    """Session-level ``pg_advisory_lock(key)``, polled with pg_try_advisory_lock until ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
        if time.monotonic() >= deadline:
            raise LockBusy(
                f"advisory lock {key} is held by {holder} for more than {timeout_s:g}s; wait for it to finish "
                "and retry",
            )
        time.sleep(0.1)
    try:
        yield
    finally:
        if not conn.closed:
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


def _now(conn: psycopg.Connection) -> datetime:
    return conn.execute("SELECT clock_timestamp()").fetchone()[0]


def _own_rolled_back_failures(conn: psycopg.Connection, migration: Migration, request_id: str,
                              failed: list[tuple[str, str, datetime]]) -> list[str]:
    """Ids of ``failed`` Prisma rows this request wrote for ``migration`` when its one-transaction file failed and
    rolled back whole: the sidecar's failed row of the same request carries the same started_at. The database holds
    none of that attempt, so a retry may resolve them as `prisma migrate resolve --rolled-back` would."""
    ids = []
    for row_id, name, started in failed:
        if name != migration.ledger_name:
            continue
        ours = conn.execute(
            f"SELECT 1 FROM {SIDECAR_TABLE} WHERE layout = 'prisma' AND request_id = %s AND NOT succeeded "
            "AND version = %s AND name = %s AND started_at = %s",
            (request_id, migration.version, migration.name, started),
        ).fetchone()
        if ours:
            ids.append(row_id)
    return ids


def check_applicable(conn: psycopg.Connection, layout: Layout, migration: Migration, *,
                     own_row: str | None = None, request_id: str | None = None) -> None:
    """LedgerError unless ``migration`` may be applied now: not applied yet, and (Prisma) no failed row but
    ``own_row``, the started row this very apply wrote (record_started). A retry of ``request_id`` first resolves,
    as `prisma migrate resolve --rolled-back` does, the failed rows its own earlier attempt left when that attempt's
    transaction rolled back whole (nothing of it is in the database); any other failed row blocks (P3009)."""
    if layout == "prisma":
        failed = conn.execute(
            f"SELECT id, migration_name, started_at FROM {PRISMA_TABLE} WHERE finished_at IS NULL "
            "AND rolled_back_at IS NULL AND id IS DISTINCT FROM %s ORDER BY started_at", (own_row,)
        ).fetchall()
        if failed and request_id is not None:
            ours = _own_rolled_back_failures(conn, migration, request_id, failed)
            if ours and len(ours) == len(failed):
                conn.execute(f"UPDATE {PRISMA_TABLE} SET rolled_back_at = now() WHERE id = ANY(%s)", (ours,))
                log.info("request %s: resolved its own earlier failed attempt(s) of %s as rolled back (%s)",
                         request_id, migration.ledger_name, ", ".join(ours))
                failed = []
        if failed:
            raise LedgerError(
                f"failed migration(s) {', '.join(r[1] for r in failed)} block further applies, as `prisma migrate "
                "deploy` refuses too (P3009); fix what the failure left, then run "
                + " and ".join(f'`npx prisma migrate resolve --rolled-back "{r[1]}"`' for r in failed)
                + " (or `--applied` if it was finished by hand)",
                code="failed-migration",
            )
        done = conn.execute(
            f"SELECT 1 FROM {PRISMA_TABLE} WHERE migration_name = %s AND finished_at IS NOT NULL "
            "AND rolled_back_at IS NULL",
            (migration.ledger_name,),
        ).fetchone()
    elif layout == "supabase":
        done = conn.execute(
            f"SELECT 1 FROM {SUPABASE_TABLE} WHERE version = %s", (migration.version,)
        ).fetchone()
    else:
        done = conn.execute(f"SELECT 1 FROM {HISTORY_TABLE} WHERE version = %s", (migration.version,)).fetchone()
    if done:
        raise LedgerError(
            f"migration {migration.ledger_name} is already applied on this target; nothing to do",
            code="already-applied",
        )


def _record_sidecar(
    conn: psycopg.Connection, layout: Layout, migration: Migration, *, started: datetime,
    finished: datetime | None, duration_ms: int | None, succeeded: bool, error: str | None,
    statements_sha256: str | None, request_id: str | None, approvers: Sequence[str], backup_id: str | None,
) -> None:
    conn.execute(
        f"""INSERT INTO {SIDECAR_TABLE} (layout, version, name, sha256, statements_sha256, request_id, approvers,
               backup_id, started_at, finished_at, duration_ms, succeeded, error)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        (layout, migration.version, migration.name, migration.sha256, statements_sha256, request_id,
         list(approvers), backup_id, started, finished, duration_ms, succeeded, error),
    )


def apply_migration(
    conn: psycopg.Connection,
    layout: Layout,
    migration: Migration,
    *,
    request_id: str | None = None,
    approvers: Sequence[str] = (),
    backup_id: str | None = None,
    execute: Executor | None = None,
    environment: str = "target",
    started_row: str | None = None,
) -> ApplyResult:
    """Run one file's SQL and write its ledger rows (the tool's and our sidecar) in ONE transaction.

    ``conn`` must be idle (no open transaction); hold the target's advisory lock (and Prisma's, see
    prisma_advisory_lock) around it so no other deployer interleaves. On failure the file is rolled back and, in a second
    transaction, Prisma's failed row (``logs`` = the error) and a failed sidecar row are recorded;
    ApplyError is raised. ``started_row`` (Prisma) is the id of the row record_started committed before a file that
    commits in parts: it is finished (or gets the error in ``logs``) instead of a new row being written. ``execute`` replaces the default whole-script executor (e.g. to set
    timeouts or run statement by statement); it runs inside the open transaction.
    """
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise GuardianError("apply_migration needs a connection with no open transaction", code="busy-connection")
    execute = execute or run_script
    with target_errors(environment):
        ensure_ledgers(conn, layout)
    row_id = started_row or str(uuid.uuid4())
    # Supabase: the CLI's own split (pkg/parser SplitAndTrim), comments kept, as `supabase db push` stores it
    statements = split_and_trim(migration.sql) if layout == "supabase" else None
    stmts_sha = statements_sha256(statements) if statements is not None else None
    started = _now(conn)
    clock = time.monotonic()
    try:
        with conn.transaction():
            check_applicable(conn, layout, migration, own_row=started_row, request_id=request_id)  # no gap
            if layout == "prisma" and started_row is None:
                conn.execute(
                    f"INSERT INTO {PRISMA_TABLE} (id, checksum, started_at, migration_name, applied_steps_count) "
                    "VALUES (%s, %s, clock_timestamp(), %s, 0)",
                    (row_id, prisma_checksum(migration.sql), migration.ledger_name),
                )
            execute(conn, migration)
            duration_ms = int((time.monotonic() - clock) * 1000)
            finished = _now(conn)
            if layout == "prisma":
                conn.execute(
                    f"UPDATE {PRISMA_TABLE} SET applied_steps_count = applied_steps_count + 1, "
                    "finished_at = clock_timestamp() WHERE id = %s",
                    (row_id,),
                )
            elif layout == "supabase":
                conn.execute(
                    f"INSERT INTO {SUPABASE_TABLE} (version, name, statements) VALUES (%s, %s, %s)",
                    (migration.version, migration.name, statements),
                )
            else:
                conn.execute(
                    f"INSERT INTO {HISTORY_TABLE} (version, name, sha256, applied_at, duration_ms) "
                    "VALUES (%s, %s, %s, %s, %s)",
                    (migration.version, migration.name, migration.sha256, finished, duration_ms),
                )
            _record_sidecar(
                conn, layout, migration, started=started, finished=finished, duration_ms=duration_ms,
                succeeded=True, error=None, statements_sha256=stmts_sha, request_id=request_id,
                approvers=approvers, backup_id=backup_id,
            )
    except psycopg.Error as exc:
        error = describe_pg_error(exc)
        if session_lost(exc):  # nothing to record on a dead session; the server rolled back what had not committed
            log.warning("request %s: the session died while applying %s: %s", request_id, migration.ledger_name, error)
            raise SessionLost(
                f"the database session was terminated ({error}) by an administrator, a restart or a failover while "
                f"applying {migration.ledger_name}; the file did not fail: check the server, then retry",
                sqlstate=getattr(getattr(exc, "diag", None), "sqlstate", None), file=migration.ledger_name,
            ) from exc
        log.warning("request %s: migration %s failed: %s", request_id, migration.ledger_name, error)
        recorded = ""
        try:
            with conn.transaction():
                if layout == "prisma" and started_row is not None:  # record_failed_step: logs on the row
                    conn.execute(f"UPDATE {PRISMA_TABLE} SET logs = %s WHERE id = %s", (error, started_row))
                elif layout == "prisma":  # Prisma's failed state: finished_at and rolled_back_at both NULL
                    conn.execute(
                        f"INSERT INTO {PRISMA_TABLE} (id, checksum, started_at, migration_name, logs, "
                        "applied_steps_count) VALUES (%s, %s, %s, %s, %s, 0)",
                        (row_id, prisma_checksum(migration.sql), started, migration.ledger_name, error),
                    )
                _record_sidecar(
                    conn, layout, migration, started=started, finished=None,
                    duration_ms=int((time.monotonic() - clock) * 1000), succeeded=False, error=error,
                    statements_sha256=stmts_sha, request_id=request_id, approvers=approvers, backup_id=backup_id,
                )
        except psycopg.Error as record_exc:  # e.g. the connection died: the file is rolled back all the same
            log.error("request %s: could not record the failure of %s: %s", request_id, migration.ledger_name,
                      describe_pg_error(record_exc))
            recorded = " (the failure could not be recorded in the ledger: the connection failed)"
        raise ApplyError(
            f"migration {migration.ledger_name} failed and was rolled back: {error}{recorded}; fix the file "
            "and retry",
            sqlstate=getattr(getattr(exc, "diag", None), "sqlstate", None),
        ) from exc
    total_ms = int((time.monotonic() - clock) * 1000)
    return ApplyResult(
        layout=layout, version=migration.version, ledger_name=migration.ledger_name, started_at=started,
        finished_at=_now(conn), duration_ms=total_ms,
    )


def record_started(conn: psycopg.Connection, layout: Layout, migration: Migration) -> str | None:
    """Prisma: commit the row `prisma migrate deploy` writes before it runs a script (record_migration_started:
    new uuid, checksum, started_at, nothing else), for a file that commits in parts. A crash between parts then
    leaves what Prisma's own flow leaves, a started row that is not finished, which Prisma and Guardian both read
    as failed (P3009) rather than as pending. Returns the row id (None for other layouts). ``conn`` in autocommit."""
    if layout != "prisma":
        return None
    row_id = str(uuid.uuid4())
    with conn.transaction():
        check_applicable(conn, layout, migration)
        conn.execute(
            f"INSERT INTO {PRISMA_TABLE} (id, checksum, started_at, migration_name) VALUES (%s, %s, now(), %s)",
            (row_id, prisma_checksum(migration.sql), migration.ledger_name),
        )
    return row_id


_check_applicable = check_applicable  # older name, still imported by workers/apply.py


def mark_reverted(conn: psycopg.Connection, layout: Layout, migration: Migration) -> int:
    """Inside the caller's transaction: make the tool's ledger say ``migration`` is no longer applied, in rows the tool
    itself writes, so Guardian, the CLI's status and the CLI's next deploy all read "pending".

    Prisma: a failed row gets ``rolled_back_at``, exactly what `prisma migrate resolve --rolled-back` does
    (mark_migration_rolled_back.rs); a succeeded row is deleted, because Prisma never writes a finished row that is
    also rolled back (resolve refuses it, P3012) and `migrate status` would still count such a row as applied
    (diagnose_migration_history.rs matches rows by name only) while `migrate deploy` re-applies it. Our sidecar keeps
    the history. Supabase: the version row removed, as `supabase migration repair --status reverted` does; ours
    likewise. Returns the ledger rows changed. See rollback_advice for what the team must do in the repository.
    """
    ensure_ledgers(conn, layout)
    if layout == "prisma":
        failed = conn.execute(
            f"UPDATE {PRISMA_TABLE} SET rolled_back_at = now() "
            "WHERE migration_name = %s AND finished_at IS NULL AND rolled_back_at IS NULL",
            (migration.ledger_name,),
        ).rowcount
        done = conn.execute(
            f"DELETE FROM {PRISMA_TABLE} WHERE migration_name = %s AND finished_at IS NOT NULL "
            "AND rolled_back_at IS NULL",
            (migration.ledger_name,),
        ).rowcount
        return failed + done
    if layout == "supabase":
        cur = conn.execute(f"DELETE FROM {SUPABASE_TABLE} WHERE version = %s", (migration.version,))
    else:
        cur = conn.execute(f"DELETE FROM {HISTORY_TABLE} WHERE version = %s", (migration.version,))
    return cur.rowcount


def rollback_advice(layout: Layout, paths: Sequence[str]) -> str:
    """What the team must do in the repository after a rollback, so the tool's next deploy does not apply it again."""
    if not paths:
        return ""
    listed = ", ".join(f"`{p}`" for p in paths)
    deploy = {"prisma": "`prisma migrate deploy`", "supabase": "`supabase db push`"}.get(layout, "the next Guardian plan")
    what = "folder" if layout == "prisma" else "file"
    return (f"The ledger now says not applied, so {deploy} would apply {listed} again: delete the {what}"
            f"{'s' if len(paths) > 1 else ''} from the repository (or add a new migration that supersedes "
            f"{'them' if len(paths) > 1 else 'it'}) before anyone deploys.")


def repository_paths(layout: Layout, migrations: Sequence[object]) -> list[str]:
    """The repository paths a team removes to retire ``migrations`` (objects with ``path``): Prisma's folder, else
    the file."""
    out = []
    for m in migrations:
        path = getattr(m, "path", None)
        if path:
            out.append(path.rsplit("/", 1)[0] if layout == "prisma" and "/" in path else path)
    return out
