"""Recovery: find requests whose job vanished (Redis flushed) or whose worker died, and re-enqueue or settle them.

Usage::

    actions = reconcile(rt)          # on worker start and every minute (workers.worker runs it)

The bot's PostgreSQL state is the truth, Redis only a hint. Per request status:

* approved (due) with no live backup job -> start_run (approved -> queued + backup job);
* queued with no live backup job -> the backup job is enqueued again;
* a running status whose step already succeeded -> the next step's job is enqueued again;
* backing_up / verifying whose job or worker is gone -> failed (untouched / applied_unverified);
* applying whose job or worker is gone -> our orphaned backend (application_name guardian-req<id>)
  is terminated, the target's ledgers say how many files committed, and the request fails with
  that db_state (untouched / partially_applied / applied_unverified).
"""
from __future__ import annotations

import logging
import os
import socket
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
from redis import Redis
from rq import Worker
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from bot.errors import GuardianError
from bot.models import DbState, Request, RequestStatus
from bot.pg.connect import connect_target
from bot.sources.ledgers import read_ledger
from workers import pipeline
from workers.apply import to_migration
from workers.enqueue import enqueue_step, job_id
from workers.plan import plan_parts
from workers.watchdog import application_name, lock_holder, ours, target_lock_key

log = logging.getLogger(__name__)

WORKER_SILENT_S = 15 * 60  # a worker with no heartbeat for this long counts as dead even on another host
_WAITING = {JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED}
NEXT_STEP: dict[str, str | None] = {"backup": "apply", "apply": "verify", "verify": None}
_ACTIVE = [RequestStatus.APPROVED, RequestStatus.QUEUED, RequestStatus.BACKING_UP, RequestStatus.APPLYING,
           RequestStatus.VERIFYING]


def reconcile(rt: Any, *, redis: Redis | None = None, min_age_s: float = 10.0) -> list[str]:
    """One pass over every request in flight; returns one line per action taken.

    ``min_age_s`` leaves alone requests changed in the last seconds (their job may be enqueued right now).
    """
    redis = redis or Redis.from_url(rt.settings.redis_url.get_secret_value())
    now = datetime.now(timezone.utc)
    actions: list[str] = []
    for request in rt.store.list_requests(statuses=_ACTIVE, limit=1000):
        if now - request.updated_at < timedelta(seconds=min_age_s):
            log.debug("request %s: changed %ss ago; left alone this pass", request.id, min_age_s)
            continue
        action = _reconcile_one(rt, redis, request, now)
        if action:
            log.info("request %s: reconciled: %s", request.id, action)
            actions.append(f"request {request.id}: {action}")
    return actions


def _reconcile_one(rt: Any, redis: Redis, request: Request, now: datetime) -> str | None:
    status = request.status
    if status is RequestStatus.APPROVED:
        if request.run_after is not None and request.run_after > now:
            gate = job_id("start", request.id, int(request.run_after.timestamp()))
            if _job_waiting(redis, gate):
                return None  # the flow's gate check is scheduled for when the freeze or window ends
        elif step_alive(redis, "backup", request.id):
            return None
        return _schedule(rt, redis, request)
    if status is RequestStatus.QUEUED:
        if step_alive(redis, "backup", request.id):
            return None
        enqueue_step(redis, "backup", request.id)
        return "queued but its backup job was gone: enqueued again"
    step = pipeline.RUNNING_STEP[status]
    rows = [s for s in rt.store.list_steps(request.id) if s.step == step]
    if rows and rows[-1].status == "succeeded":  # the step finished; the next one has not started yet
        return _resume_after(rt, redis, request, step)
    if step_alive(redis, step, request.id):
        return None
    _close_running_steps(rt, request.id, step)
    if status is RequestStatus.BACKING_UP:
        return _settle(rt, request, "backup", DbState.UNTOUCHED,
                       "the worker running the backup died; nothing was applied: retry the request")
    if status is RequestStatus.VERIFYING:
        return _settle(rt, request, "verify", DbState.APPLIED_UNVERIFIED,
                       "the worker running verify died; the migrations are applied but not verified: "
                       "check the thread's diff and verify by hand, or retry")
    return _settle_apply(rt, request, redis)


def _resume_after(rt: Any, redis: Redis, request: Request, step: str) -> str | None:
    """A step succeeded but the request did not move on: enqueue the next step, or finish a verified run."""
    following = NEXT_STEP[step]
    if following is None:
        try:
            rt.store.transition(request.id, RequestStatus.VERIFYING, RequestStatus.SUCCEEDED, actor=pipeline.ACTOR)
        except GuardianError as exc:
            log.info("request %s: not marked succeeded: %s", request.id, exc)
            return None
        return "verified but not marked succeeded: succeeded"
    if step_alive(redis, following, request.id):
        return None
    enqueue_step(redis, following, request.id)
    return f"{step} done but the {following} job was gone: enqueued again"


def _schedule(rt: Any, redis: Redis, request: Request) -> str | None:
    """Hand an approved request back to the flow, which re-checks freezes and windows before start_run."""
    flow = getattr(rt, "flow", None)
    if flow is None:
        started = pipeline.start_run(rt, request.id, connection=redis)
        return "approved but never queued: started" if started else None
    flow.schedule_run(request.id)
    now = rt.store.get_request(request.id)
    if now.status is RequestStatus.APPROVED:
        return "approved, its gate check was gone: scheduled again"
    return "approved but never queued: started"


def _job_waiting(redis: Redis, jid: str) -> bool:
    try:
        return Job.fetch(jid, connection=redis).get_status(refresh=True) in _WAITING
    except NoSuchJobError:
        return False


def step_alive(redis: Redis, step: str, request_id: int) -> bool:
    """A job for this step is waiting in Redis, or running on a worker that is still alive."""
    try:
        job = Job.fetch(job_id(step, request_id), connection=redis)
        status = job.get_status(refresh=True)
    except NoSuchJobError:
        return False
    if status in _WAITING:
        return True
    if status == JobStatus.STARTED:
        return worker_alive(redis, job.worker_name)
    return False


def worker_alive(redis: Redis, name: str | None) -> bool:
    """The worker's key is in Redis, its heartbeat is recent and, on this host, its process exists."""
    if not name:
        return False
    worker = Worker.find_by_key(Worker.redis_worker_namespace_prefix + name, connection=redis)
    if worker is None:
        return False
    if worker.hostname == socket.gethostname() and worker.pid and not _pid_alive(worker.pid):
        return False
    beat = worker.last_heartbeat
    if beat is not None and (datetime.now(timezone.utc) - beat.replace(tzinfo=timezone.utc)).total_seconds() > WORKER_SILENT_S:
        return False
    return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _close_running_steps(rt: Any, request_id: int, step: str) -> None:
    for row in rt.store.list_steps(request_id):
        if row.step == step and row.status == "running":
            try:
                rt.store.finish_step(row.id, "failed", error="the worker running this step died")
            except GuardianError as exc:
                log.info("request %s: step %s already finished: %s", request_id, row.id, exc)


def _settle(rt: Any, request: Request, step: str, db_state: DbState, why: str) -> str | None:
    failed = pipeline.fail(rt, request.id, expected=request.status, failed_step=step, db_state=db_state,
                           error=GuardianError(why, code="worker-died"))
    return f"{step} worker died: failed, database {db_state.value}" if failed else None


def _settle_apply(rt: Any, request: Request, redis: Redis | None = None) -> str | None:
    """Stop our orphaned backend if it still runs, read what the target committed, fail with that state."""
    env = rt.config.environment(request.environment)
    url = env.database_url()
    layout = rt.config.project.layout
    with connect_target(url, env.name, application_name=application_name(request.id, "reconciler")) as conn:
        terminated = _terminate_orphans(conn, request.id)
        holder = lock_holder(conn, target_lock_key(env.name))
        if holder and holder[1] == application_name(request.id):
            log.warning("request %s: pid %s still holds the target lock after termination", request.id, holder[0])
        migrations = [to_migration(m, layout) for m in request.migrations]
        ledger = read_ledger(conn, layout)
        done = {(s.version, s.name) for s in ledger.sidecar if s.succeeded and s.request_id == str(request.id)}
        applied = [m for m in migrations if (m.version, m.name) in done]
        server_major = conn.info.server_version // 10000
    if len(applied) == len(migrations) and redis is not None and request.source != "rollback":
        return _resume_from_ledger(rt, redis, request, [m.name for m in applied])
    if len(applied) == len(migrations):
        db_state = DbState.APPLIED_UNVERIFIED
    elif applied:
        db_state = DbState.PARTIALLY_APPLIED
    else:
        first = migrations[0]
        # a file that commits in parts (CONCURRENTLY, batches) may have committed some of them
        db_state = DbState.PARTIALLY_APPLIED if len(plan_parts(first.sql, server_major)) > 1 else DbState.UNTOUCHED
    why = (f"the worker running the apply died after {len(applied)} of {len(migrations)} migration(s) committed"
           + (f"; its database session was terminated ({len(terminated)})" if terminated else "")
           + "; the target's locks are free: check the database state below, then retry or roll back")
    return _settle(rt, request, "apply", db_state, why)


def _resume_from_ledger(rt: Any, redis: Redis, request: Request, applied: list[str]) -> str | None:
    """Every file committed (the target's ledger says so) but the apply's result was never recorded (its worker or
    the bot's database was lost after the last commit): record the step from the ledger and go on to verify."""
    step = rt.store.start_step(request.id, "apply")
    rt.store.finish_step(step.id, "succeeded", outcome={"files": [{"name": n} for n in applied], "from_ledger": True})
    log.warning("request %s: apply had committed all %s file(s) per the target's ledger; recorded, verify next",
                request.id, len(applied))
    resumed = _resume_after(rt, redis, request, "apply")
    return "apply had committed every file (the target's ledger says so): recorded" + (f"; {resumed}" if resumed else "")


def _terminate_orphans(conn: psycopg.Connection, request_id: int, wait_s: float = 10.0) -> list[int]:
    """pg_terminate_backend our dead apply's session(s) (application_name guardian-req<id>) and wait for them to end."""
    pids = ours(conn, request_id)
    for pid in pids:
        log.warning("request %s: terminating orphaned apply backend pid %s", request_id, pid)
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    deadline = time.monotonic() + wait_s
    while pids and ours(conn, request_id) and time.monotonic() < deadline:
        time.sleep(0.1)
    return pids
