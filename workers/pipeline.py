"""The run of an approved request: start it, move it step by step with compare-and-set, fail it with where and why.

Usage::

    start_run(rt, request_id)          # approved -> queued, then the backup job (the approval flow calls this)

    run = begin(rt, request_id, "apply")   # backing_up -> applying, as the run's table says
    if run is None:
        return                         # a duplicate or orphaned job: the request moved on without us
    ...
    succeed(run, {"files": 3})          # records it and queues the step after apply in rt.pipeline (bot/run.py)
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from redis import Redis
from rq import get_current_job

from bot.errors import GuardianError, NotFound, StoreError, TransitionConflict
from bot.models import DbState, Request, RequestStatus, Step
from bot.pg.connect import classify, scrub
from workers import report
from workers.enqueue import deliver
from workers.liveness import hold_lease
from workers.runtime import Runtime, runtime

log = logging.getLogger(__name__)

ACTOR = "guardian"


@dataclass
class StepRun:
    """A step that won its compare-and-set and is recorded as running."""

    rt: Runtime
    request: Request
    step: Step

    @property
    def request_id(self) -> int:
        return self.request.id


def redis_for(rt: Runtime) -> Redis:
    """The Redis connection of the running job, else one from the settings."""
    job = get_current_job()
    if job is not None:
        return job.connection
    return rt.redis


def start_run(rt: Runtime, request_id: int, *, connection: Redis | None = None) -> bool:
    """Queue an approved request: the flow's approved -> queued compare-and-set, with the first step's
    outbox intent in the same transaction (``Flow.start_run``); the intent goes to RQ at once when
    ``connection`` (Redis) is given and up.

    Returns False, changing nothing, when the request is no longer approved (a second click, a
    reconciler that got there first, a cancel).
    """
    started = rt.flow.start_run(request_id)
    if started and connection is not None:
        deliver(rt.store, connection, pipeline=rt.pipeline)
    return started


def begin(rt: Runtime, request_id: int, step: str) -> StepRun | None:
    """Compare-and-set the request into ``step``'s status (rt.pipeline) and record the step; None when the CAS lost.

    A step that keeps the status of the step before it has no compare-and-set of its own: it begins when
    it finds the request in that status.
    """
    expected, new = rt.pipeline.expects(step), rt.pipeline[step].status
    job = get_current_job()
    if job is not None:
        hold_lease(job.connection, job.id)  # a flushed Redis must not make this step look dead
    try:
        if expected is new:
            request = rt.store.get_request(request_id)
            if request.status is not expected:
                raise TransitionConflict(f"request {request_id} is {request.status.value}, not {expected.value}; "
                                         "nothing was changed", current=request.status.value)
        else:
            request = rt.store.transition(request_id, expected, new, actor=ACTOR,
                                          detail={"job_id": job.id if job else None})
    except TransitionConflict as exc:
        log.info("request %s: %s job does nothing: %s", request_id, step, exc)
        return None
    except NotFound:
        log.warning("request %s: %s job for a request that does not exist; nothing to do", request_id, step)
        return None
    recorded = rt.store.start_step(request_id, step, job_id=job.id if job else None)
    log.info("request %s: %s started (attempt %s)", request_id, step, recorded.attempt)
    report.refresh_card(rt, request_id)
    return StepRun(rt=rt, request=request, step=recorded)


def succeed(run: StepRun, outcome: dict[str, Any], lines: list[str] | tuple[str, ...] = ()) -> bool:
    """Record the step as succeeded, post its outcome, and enqueue the step after it in the run's table;
    after the last step, the run is finished (``finish_run``).

    The store retries a lost connection to the bot's database (bot.store.retry); when it still
    cannot record the result, the step's work stands and nothing is failed: False is returned and
    the reconciler moves the request on from what the target holds (its ledger), never "worker died".
    """
    following = run.rt.pipeline.after(run.step.step)
    next_step = following.name if following is not None else None
    recorded = _record_success(run, outcome, lines, next_step)
    if next_step is None:
        finish_run(run.rt, run.request)
    return recorded


def _record_success(run: StepRun, outcome: dict[str, Any], lines: list[str] | tuple[str, ...],
                    next_step: str | None) -> bool:
    try:
        finished = run.rt.store.finish_step(run.step.id, "succeeded", outcome=outcome, enqueue=next_step)
    except StoreError as exc:
        if isinstance(exc, TransitionConflict):
            raise
        log.error("request %s: %s finished but its result could not be recorded [%s]: %s; the reconciler resumes "
                  "the request from the target", run.request_id, run.step.step, exc.code, exc)
        return False
    log.info("request %s: %s succeeded in %s ms", run.request_id, run.step.step, finished.duration_ms)
    report.post(run.rt, run.request, run.rt.notifier.step_report(run.request_id, run.step.step, "succeeded",
                                                                  finished.duration_ms, list(lines)))
    if next_step is not None:  # the intent is already committed with the step's result
        deliver(run.rt.store, redis_for(run.rt), pipeline=run.rt.pipeline)
    return True


def finish_run(rt: Runtime, request: Request) -> bool:
    """The last step succeeded: the request moves to succeeded (compare-and-set from the last step's status),
    its card is refreshed, the summary posted and its incident told. False when it was not in that status."""
    try:
        rt.store.transition(request.id, rt.pipeline.last.status, rt.pipeline.done, actor=ACTOR)
    except GuardianError as exc:
        log.warning("request %s: its last step succeeded but it could not be marked %s: %s", request.id,
                    rt.pipeline.done.value, exc)
        return False
    log.info("request %s: succeeded", request.id)
    report.refresh_card(rt, request.id)
    steps = rt.store.list_steps(request.id)
    backups = rt.store.list_backups(request_id=request.id)
    report.post(rt, request, rt.notifier.run_summary(
        request.id, [(s.step, s.duration_ms) for s in steps if s.status == "succeeded"],
        backups[-1].path.rsplit("/", 1)[-1] if backups else None, len(rt.store.list_events(request_id=request.id))))
    report.request_finished(request.id)
    return True


def fail(rt: Runtime, request_id: int, *, expected: RequestStatus, failed_step: str, db_state: DbState,
         error: GuardianError | str, step_id: int | None = None, outcome: dict[str, Any] | None = None) -> Request | None:
    """Mark the step and the request failed with where it failed and what the database holds now.

    ``error`` must already be scrubbed of URLs and passwords. Returns None when the request was no
    longer in ``expected`` (someone else decided its fate first).
    """
    code = getattr(error, "code", "step-failed")
    text = f"[{code}] {error}" if isinstance(error, GuardianError) else str(error)
    if step_id is not None:
        try:
            rt.store.finish_step(step_id, "failed", outcome=outcome, error=text)
        except TransitionConflict:
            log.info("request %s: step %s was already finished", request_id, step_id)
    try:
        request = rt.store.transition(request_id, expected, RequestStatus.FAILED, actor=ACTOR,
                                      detail={"code": code}, failed_step=failed_step, db_state=db_state,
                                      error=text)
    except TransitionConflict as exc:
        log.warning("request %s: could not mark failed at %s: %s", request_id, failed_step, exc)
        return None
    log.warning("request %s: failed at %s, database %s: %s", request_id, failed_step, db_state.value, text)
    report.post(rt, request, rt.notifier.failure_report(request_id, failed_step, db_state.value, text))
    report.refresh_card(rt, request_id)
    report.open_incident(request_id)
    return request


def step_error(exc: BaseException, environment: str, secret: str = "") -> GuardianError:
    """What a step reports: a database error classified for ``environment``, with URLs and ``secret`` scrubbed."""
    if not isinstance(exc, GuardianError):
        exc = classify(exc, environment, secret)
    return type(exc)(scrub(str(exc), secret), code=exc.code)


def revalidate(request_id: int) -> bool:
    """True while the approvals still bind; otherwise ``Flow.revalidate`` has voided them, said why and re-analyses."""
    problem = runtime().flow.revalidate(request_id)
    if problem is not None:
        log.info("request %s: approvals no longer bind (%s); the run stops here", request_id, problem)
        return False
    return True
