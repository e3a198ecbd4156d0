"""What the target's ledgers say a request committed: the truth a failure records and a recovery resumes from.

Usage::

    applied = committed_files(rt, request)                 # ledger keys of this request's files that committed
    state = db_state(request, applied, parts_committed=0)  # untouched / partially_applied / applied

A file commits with its ledger rows in one transaction (workers.apply), so the sidecar's rows
carrying this request's id are the exact record of which files are in the database — whatever
the bot's own database managed to record before a worker, a session or the state database died.
"""
from __future__ import annotations

import logging
from typing import Any

import psycopg

from bot.errors import GuardianError, TargetError
from bot.models import DbState, Request
from bot.pg.connect import connect_target, describe_pg_error
from bot.sources.ledgers import read_ledger
from workers import pipeline
from workers.refs import to_migration
from workers.watchdog import application_name

log = logging.getLogger(__name__)


def committed_files(rt: Any, request: Request) -> list[str]:
    """Names (as the request holds them) of ``request``'s migrations whose ledger rows say they committed for it."""

    env = rt.config.environment(request.environment)
    layout = rt.config.project.layout
    with connect_target(env.database_url(), env.name, application_name=application_name(request.id, "truth")) as conn:
        done = _succeeded(conn, layout, request.id)
    keys = {ref.name: to_migration(ref, layout) for ref in request.migrations}
    return [name for name, m in keys.items() if (m.version, m.name) in done]


def _succeeded(conn: psycopg.Connection, layout: str, request_id: int) -> set[tuple[str, str]]:
    ledger = read_ledger(conn, layout)
    return {(s.version, s.name) for s in ledger.sidecar if s.succeeded and s.request_id == str(request_id)}


def db_state(request: Request, applied: list[str], *, parts_committed: int = 0) -> DbState:
    """APPLIED when every file committed, PARTIALLY_APPLIED when some file or part did, else UNTOUCHED."""
    if request.migrations and len(applied) == len(request.migrations):
        return DbState.APPLIED
    if applied or parts_committed:
        return DbState.PARTIALLY_APPLIED
    return DbState.UNTOUCHED


_HOLDS = {DbState.UNTOUCHED: "nothing of this request (untouched)",
          DbState.PARTIALLY_APPLIED: "part of this request (partially applied)"}


def after_lost_session(rt: Any, step: pipeline.StepRun, exc: BaseException, parts_committed: int,
                       outcome: dict[str, Any], secrets: tuple[str, ...]) -> bool:
    """The apply's target session was cut: ask the ledger what committed (a COMMIT in flight may have), go on to
    verify when every file is in, else fail saying it was the infrastructure. False when the ledger can't be read."""
    request = step.request
    try:
        applied = committed_files(rt, request)
    except (GuardianError, psycopg.Error) as read_exc:
        log.warning("request %s: the apply session died and the ledger cannot be read (%s)", request.id,
                    type(read_exc).__name__)
        return False
    state = db_state(request, applied, parts_committed=parts_committed)
    outcome = {**outcome, "from_ledger": applied}
    if state is DbState.APPLIED:
        log.warning("request %s: the apply session died after every file committed (the ledger says so); verifying",
                    request.id)
        pipeline.succeed(step, outcome, ["the database session was cut after the last commit; the target's ledger "
                                         "shows every file applied"])
        return True
    in_flight = next((ref.name for ref in request.migrations if ref.name not in applied), "a migration")
    cause = exc.__cause__ if isinstance(exc.__cause__, psycopg.Error) else exc
    detail = describe_pg_error(cause, *secrets)[:300]
    error = TargetError(
        f"the database session was terminated (by an administrator, a restart or a failover) while applying "
        f"{in_flight}; the database holds {_HOLDS[state]}: {len(applied)} of {len(request.migrations)} file(s) "
        f"committed, per the target's ledger. The migration did not fail: check the server, then Retry "
        f"({detail})", code="target-session-lost")
    log.warning("request %s: apply session lost while applying %s; database %s", request.id, in_flight, state.value)
    pipeline.fail(rt, request.id, expected=rt.pipeline["apply"].status, failed_step="apply", db_state=state,
                  error=error, step_id=step.step.id, outcome=outcome)
    return True
