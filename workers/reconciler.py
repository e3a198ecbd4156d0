"""Recovery: find requests whose job vanished (Redis flushed) or whose worker died, and re-enqueue or settle them.

Usage::

    actions = reconcile(rt)          # on worker start and every RECONCILE_EVERY_S (workers.worker runs it)

The bot's PostgreSQL state is the truth, Redis only a hint; every request in a non-terminal state is
owned here. A step's job counts as alive while its outbox intent is unsent (the pump will send it) or
its RQ job is really on a queue or running on a live worker (workers.liveness). Per request status:

* analyzing with no live analyze job -> the analysis is queued again; after ANALYZE_MAX_CRASHES
  analyses that died or raised, the request fails with why (nothing was applied);
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
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.job import Job

from bot.counters import COUNTERS, RECONCILER_RECOVERIES
from bot.errors import GuardianError, TransitionConflict
from bot.models import DbState, Request, RequestStatus
from bot.pg.connect import connect_target
from bot.pg.copy import COPY_GRACE_S, sweep_copies, sweep_recorded
from bot.sources.ledgers import read_ledger
from bot.store.outbox import JobIntent
from workers import fleet, pipeline
from workers.refs import to_migration
from workers.enqueue import deliver, job_id
from workers.liveness import job_live, running_elsewhere
from workers.plan import plan_parts
from workers.watchdog import application_name, lock_holder, ours, target_lock_key

log = logging.getLogger(__name__)

# A request changed this recently is left alone for one pass: the process that changed it may be
# between its commit and its next call (posting the card, refreshing it). State changes and their job
# intents commit together (the outbox), so this only covers that gap, not a job on its way to Redis.
RECONCILE_MIN_AGE_S = float(os.environ.get("GUARDIAN_RECONCILE_MIN_AGE_S", "1"))
# An analysing request with no analyze intent at all: `/migrate plan` writes it once the card is posted
# (Slack may take a while); only a request this old is treated as having lost it.
ANALYZE_ORPHAN_AGE_S = float(os.environ.get("GUARDIAN_ANALYZE_ORPHAN_AGE_S", "60"))
ANALYZE_MAX_CRASHES = int(os.environ.get("GUARDIAN_ANALYZE_MAX_CRASHES", "3"))
_BEFORE_RUN = [RequestStatus.ANALYZING, RequestStatus.APPROVED]  # then the run's start and its steps' statuses


def reconcile(rt: Any, *, redis: Redis | None = None, min_age_s: float = RECONCILE_MIN_AGE_S) -> list[str]:
    """One pass over every request in flight; returns one line per action taken.

    ``min_age_s`` leaves alone requests changed in the last seconds (see RECONCILE_MIN_AGE_S).
    """
    redis = redis or Redis.from_url(rt.settings.redis_url.get_secret_value())
    now = datetime.now(timezone.utc)
    actions: list[str] = []
    run = rt.pipeline
    active = list(dict.fromkeys([*_BEFORE_RUN, run.start, *(s.status for s in run.steps)]))
    for request in rt.store.list_requests(statuses=active, limit=1000):
        if now - request.updated_at < timedelta(seconds=min_age_s):
            log.debug("request %s: changed %ss ago; left alone this pass", request.id, min_age_s)
            continue
        action = _reconcile_one(rt, redis, request, now)
        if action:
            log.info("request %s: reconciled: %s", request.id, action)
            COUNTERS.add(RECONCILER_RECOVERIES, request.status.value)  # GET /metrics, by the state it was found in
            actions.append(f"request {request.id}: {action}")
    return actions + sweep_rehearsal_copies(rt)


def sweep_rehearsal_copies(rt: Any, *, grace_s: float = COPY_GRACE_S) -> list[str]:
    """Rehearsal copies whose worker died, dropped (bot/pg/copy.py): those recorded at least ``grace_s`` ago (a
    command's branch too; their records cleared), then any database of this installation's copies
    (``guardian_copy_<install>_req<id>``). One line per copy."""
    actions = []
    records = rt.store.list_copies(older_than_s=grace_s)
    for env in rt.config.environments.values():
        try:
            for name in sweep_recorded(env, records):
                rt.store.clear_copy(name)
                actions.append(f"{env.name}: rehearsal copy {name} left by a dead worker: dropped")
            actions += [f"{env.name}: rehearsal copy {name} left by a dead worker: dropped" for name in sweep_copies(env, rt.store.install_id)]
        except GuardianError as exc:
            log.warning("environment %s: rehearsal copies not swept: %s", env.name, exc.message)
    return actions


def _reconcile_one(rt: Any, redis: Redis, request: Request, now: datetime) -> str | None:
    status, run = request.status, rt.pipeline
    first = run.first.name
    if status is RequestStatus.ANALYZING:
        return _reconcile_analysis(rt, redis, request, now)
    if status is RequestStatus.APPROVED:
        if request.run_after is not None and request.run_after > now:
            if step_alive(redis, "start", request.id, store=rt.store):
                return None  # the flow's gate check is held until the freeze or window ends
        elif step_alive(redis, first, request.id, store=rt.store):
            return None
        return _schedule(rt, redis, request)
    if status is run.start:
        if step_alive(redis, first, request.id, store=rt.store):
            return None
        _requeue(rt, redis, request.id, first)
        return f"queued but its {first} job was gone: enqueued again"
    if status is RequestStatus.APPLYING and rt.store.get_rollout(request.id) is not None:  # a fleet rollout: its targets' jobs, not the apply step's
        return fleet.reconcile(rt, redis, request)
    step = _running_step(rt, request)
    rows = [s for s in rt.store.list_steps(request.id) if s.step == step]
    if rows and rows[-1].status == "succeeded":  # the step finished; the next one has not started yet
        return _resume_after(rt, redis, request, step)
    if step_alive(redis, step, request.id, store=rt.store) or _running_elsewhere(rt, redis, request.id, step):
        return None
    _close_running_steps(rt, request.id, step)
    spec = run[step]
    if spec.if_died is None:  # what the target holds is read from it (apply: its ledger)
        return _settle_apply(rt, request, redis)
    return _settle(rt, request, step, spec.if_died, spec.died)


def _running_step(rt: Any, request: Request) -> str:
    """The step of a request in a running status: the only one of that status, else (steps that keep the
    status of the one before them) the latest of them that started."""
    names = rt.pipeline.running(request.status)
    if len(names) == 1:
        return names[0]
    started = [s.step for s in rt.store.list_steps(request.id) if s.step in names]
    return started[-1] if started else names[0]


def _resume_after(rt: Any, redis: Redis, request: Request, step: str) -> str | None:
    """A step succeeded but the request did not move on: enqueue the next step, or finish a verified run."""
    following = rt.pipeline.after(step)
    if following is None:
        if step_alive(redis, step, request.id, store=rt.store) or _running_elsewhere(rt, redis, request.id, step):
            return None  # its job is still finishing the run (posting, marking it succeeded, telling the incident)
        if not pipeline.finish_run(rt, request):
            return None
        return f"{step} done but not marked {rt.pipeline.done.value}: {rt.pipeline.done.value}"
    if step_alive(redis, following.name, request.id, store=rt.store):
        return None
    _requeue(rt, redis, request.id, following.name)
    return f"{step} done but the {following.name} job was gone: enqueued again"


def _reconcile_analysis(rt: Any, redis: Redis, request: Request, now: datetime) -> str | None:
    """An analysing request whose analysis job is gone: queue it again, or fail it after repeated crashes."""
    latest = rt.store.latest_job(request.id, "analyze")
    if latest is None and now - request.updated_at < timedelta(seconds=ANALYZE_ORPHAN_AGE_S):
        return None  # `/migrate plan` may still be posting the card before it queues the analysis
    # no grace for a vanished analysis: running it twice is harmless (its compare-and-set keeps one)
    if step_alive(redis, "analyze", request.id, store=rt.store) or _running_elsewhere(rt, redis, request.id, "analyze",
                                                                                        grace=False):
        return None
    _close_running_steps(rt, request.id, "analyze", "the worker running the analysis died or it raised")
    crashes = 0
    for row in reversed([s for s in rt.store.list_steps(request.id) if s.step == "analyze"]):
        if row.status == "succeeded":
            break
        crashes += 1
    if crashes >= ANALYZE_MAX_CRASHES:
        return _fail_analysis(rt, request, crashes)
    _requeue(rt, redis, request.id, "analyze")
    if latest is None:
        return "analysing but no analysis was ever queued: queued"
    return "analysing but its analysis job was gone: enqueued again"


def _fail_analysis(rt: Any, request: Request, crashes: int) -> str | None:
    why = (f"the analysis stopped {crashes} times without finishing (its worker died or it raised an unexpected "
           "error); nothing was applied. The file may be too large or too complex to analyse: split it, or ask an "
           "operator to check the worker log, then plan again")
    try:
        failed = rt.store.transition(request.id, RequestStatus.ANALYZING, RequestStatus.FAILED, actor=pipeline.ACTOR,
                                     detail={"code": "analysis-crashed"}, failed_step="analyze",
                                     db_state=DbState.UNTOUCHED, error=f"[analysis-crashed] {why}")
    except TransitionConflict as exc:
        log.info("request %s: not failed after its crashed analyses: %s", request.id, exc)
        return None
    log.warning("request %s: failed: %s", request.id, why)
    flow = rt.flow
    flow.say(failed, f":x: Analysis failed: {why}.")
    flow.refresh_card(request.id)
    return f"analysis crashed {crashes} times: failed"


def _requeue(rt: Any, redis: Redis, request_id: int, step: str) -> None:
    """Write the step's intent again (same attempt, so the same deterministic job id) and send it now if Redis is up."""
    latest = rt.store.latest_job(request_id, step)
    rt.store.enqueue_job(JobIntent(step=step, attempt=latest.attempt if latest else 1), request_id=request_id)
    deliver(rt.store, redis, pipeline=rt.pipeline)


def _schedule(rt: Any, redis: Redis, request: Request) -> str | None:
    """Hand an approved request back to the flow, which re-checks freezes and windows before start_run."""
    rt.flow.schedule_run(request.id)
    deliver(rt.store, redis, pipeline=rt.pipeline)
    now = rt.store.get_request(request.id)
    if now.status is RequestStatus.APPROVED:
        return "approved, its gate check was gone: scheduled again"
    return "approved but never queued: started"


def step_alive(redis: Redis, step: str, request_id: int, *, store: Any = None) -> bool:
    """A job for this step will still run: its outbox intent is unsent, or its RQ job is on a queue or
    running on a live worker (workers.liveness). With ``store``, the job is the latest intent's attempt."""
    latest = store.latest_job(request_id, step) if store is not None else None
    if latest is not None and latest.sent_at is None:
        return True  # recorded in PostgreSQL; the pump sends it when Redis is up (or when it is due)
    try:
        job = Job.fetch(job_id(step, request_id, latest.attempt if latest else 1), connection=redis)
    except NoSuchJobError:
        return False
    return job_live(redis, job)


def _running_elsewhere(rt: Any, redis: Redis, request_id: int, step: str, *, grace: bool = True) -> bool:
    """The step's process still runs it though Redis lost its job (flushed or restarted under it)."""
    latest = rt.store.latest_job(request_id, step)
    return running_elsewhere(redis, job_id(step, request_id, latest.attempt if latest else 1), grace=grace)


def _close_running_steps(rt: Any, request_id: int, step: str, error: str = "the worker running this step died") -> None:
    for row in rt.store.list_steps(request_id):
        if row.step == step and row.status == "running":
            try:
                rt.store.finish_step(row.id, "failed", error=error)
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
