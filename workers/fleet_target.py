"""The job of one claimed fleet target: its ledger read, the apply step's code on its connection, its verify.

Usage (claimed by workers/fleet.advance, which writes its job intent)::

    run(request_id, "tenant_007", 1)    # queued -> running -> succeeded | failed | skipped, then advance
"""
from __future__ import annotations

import logging
import re
import time
from typing import Any

import psycopg
from rq import get_current_job

from bot.errors import GuardianError
from bot.fleet import FleetTarget, applied_files, open_target, read_state, target_url
from bot.models import MigrationRef, Request
from bot.pg.tools import find_pg_dump
from bot.sources.models import SourceSnapshot
from bot.store.fleet import RolloutTarget
from workers import fleet, pipeline
from workers.apply import Progress, apply_all
from workers.backup import write_backup
from workers.checks import run_verify_sql, touched_tables, verify_section
from workers.liveness import hold_lease
from workers.refs import to_migration
from workers.runtime import Runtime, runtime
from workers.watchdog import application_name

log = logging.getLogger(__name__)

BUSY_RETRY_S = 1.0  # a target whose lock is still held goes back to waiting after this

_INVALID_INDEXES = ("SELECT i.indexrelid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE NOT i.indisvalid AND n.nspname = ANY(current_schemas(false))")


def run(request_id: int, target: str, attempt: int) -> None:
    """The RQ job of one claimed target: queued -> running (unless the rollout halted since), apply what its ledger
    still lacks of the approved files, verify, record the outcome (a failure may halt the rollout), then advance."""
    rt = runtime()
    job = get_current_job()
    if job is not None:
        hold_lease(job.connection, job.id)
    row = rt.store.start_fleet_target(request_id, target, attempt, job.id if job else None)
    if row is None:
        log.info("request %s: target %s (attempt %s) does not start: the rollout is not running or the claim moved "
                 "on", request_id, target, attempt)
        return
    request = rt.store.get_request(request_id)
    env = rt.config.environment(request.environment)
    state, note = apply_target(rt, request, env, row)
    if state == "busy":  # a dead worker's session still holds the target's lock: the server ends it within seconds
        time.sleep(BUSY_RETRY_S)
        rt.store.release_fleet_target(request_id, target, attempt, note or "busy")
        fleet.advance(request_id)
        return
    log.info("request %s: target %s %s%s", request_id, target, state, f": {note}" if note else "")
    halted = rt.store.finish_fleet_target(request_id, target, state, note, halt_after=env.fleet.halt_after_failures,
                                          attempt=attempt)
    if halted:
        fleet.halted(rt, request, halted)
    fleet.advance(request_id)


def apply_target(rt: Runtime, request: Request, env: Any, row: RolloutTarget) -> tuple[str, str | None]:
    """(succeeded | failed | skipped | busy, one line): the target's ledger read first (drifted since the approval:
    skipped; already applied: succeeded), then the apply step's code on its connection, then its verify SQL and
    invalid indexes."""
    layout = rt.config.project.layout
    ft = FleetTarget(id=row.target, kind=row.kind, server=row.server, url_env=row.url_env)
    refs = [m for m in request.migrations if (m.ledger_name or m.name) in row.files]
    where, secret = f"{env.name}/{row.target}", ""
    try:
        secret = target_url(env, ft).get_secret_value()
        with open_target(env, ft, application_name=application_name(request.id, "fleet-check")) as conn:
            if request.source == "rollback":  # down SQL: what the ledger still holds as applied
                held = applied_files(conn, layout)
                todo = [m for m in refs if (m.ledger_name or m.name) in held]
            else:
                state, pending, reason = read_state(conn, layout, _snapshot(request, refs, layout), only=row.files,
                                                    own=f"{request.id}/{row.target}")
                if state == "drifted":
                    return "skipped", f"drifted after the approval ({reason}): not migrated; plan it again"
                todo = [m for m in refs if (m.ledger_name or m.name) in pending]
            touched = touched_tables(conn, request) if todo and ft.kind == "database" else []
            server_major = conn.info.server_version // 10000
        if todo and ft.kind == "database":  # its own dump first (the request's backup step covered the schemas)
            backup_target(rt, request, env, row.target, secret, server_major, touched)
        if todo:
            apply_all(rt, request, env, secret, Progress(), target=row.target, refs=todo)
        with open_target(env, ft, application_name=application_name(request.id, "fleet-verify")) as conn:
            failures = [f"{m.name}: {f}" for m in refs if (script := m.verify_sql or verify_section(m.sql))
                        for f in run_verify_sql(conn, script, env.statement_timeout)]
            failures += [f"index {i} is invalid" for (i,) in conn.execute(_INVALID_INDEXES).fetchall()]
        if failures:
            return "failed", "verify: " + "; ".join(failures)
        return "succeeded", None if todo else "nothing to do: its ledger already says so"
    except (GuardianError, psycopg.Error, OSError) as exc:
        if isinstance(exc, OSError):
            exc = GuardianError(f"its backup could not be written ({exc.strerror}); check backup.dir and free space",
                                code="backup-failed")
        error = pipeline.step_error(exc, where, secret)
        if error.code == "target-busy":
            return "busy", "its advisory lock is still held (a previous attempt's session); retried"
        return "failed", f"[{error.code}] {str(error).splitlines()[0] if str(error) else type(exc).__name__}"


def backup_target(rt: Runtime, request: Request, env: Any, target: str, url: str, server_major: int,
                  touched: list[str]) -> None:
    """A tenant database's dump before its apply, per [backup] (full, touched tables, or schema), recorded with
    the request like the backup step's."""
    binary, _ = find_pg_dump(server_major)
    mode = rt.config.backup.mode
    args = (["--schema-only"] if mode == "schema" or (mode == "touched" and not touched)
            else [f"--table={t}" for t in touched] if mode == "touched" else [])
    safe = re.sub(r"[^A-Za-z0-9_.]", "_", target)[:60]  # a query's names may hold anything
    write_backup(rt, env, url, binary, args, label=f"req{request.id}-{safe}", scope=mode,
                 app=application_name(request.id, "backup"), request_id=request.id)


def _snapshot(request: Request, refs: list[MigrationRef], layout: str) -> SourceSnapshot:
    """The approved files as a source snapshot, to read a target's ledger against exactly them."""
    return SourceSnapshot(layout=layout, repo="", folder="", commit=request.git_commit,
                          migrations=tuple(to_migration(m, layout) for m in refs))


