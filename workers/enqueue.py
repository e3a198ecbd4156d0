"""Owns every enqueue: deterministic job ids per request and step, timeouts, no blind retries.

Usage::

    job = enqueue_step(redis, "analyze", request_id)
    job = enqueue_step(redis, "backup", request_id, attempt=2)
"""
from __future__ import annotations

import logging
from datetime import datetime

from redis import Redis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

log = logging.getLogger(__name__)

QUEUE_NAME = "guardian"
# step -> (dotted function, job timeout in seconds). Apply's timeout must exceed the statement
# timeouts it sets inside the target; the step itself enforces those.
STEPS: dict[str, tuple[str, int]] = {
    "analyze": ("workers.analyze.run", 15 * 60),
    "start": ("workers.gate.run", 15 * 60),
    "backup": ("workers.backup.run", 6 * 3600),
    "apply": ("workers.apply.run", 12 * 3600),
    "verify": ("workers.verify.run", 3600),
    "rollback": ("workers.rollback.run", 12 * 3600),
    "restore": ("workers.restore.run", 12 * 3600),
    "cleanup": ("workers.backup.cleanup", 3600),
}
_LIVE = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED}


def job_id(step: str, request_id: int, attempt: int = 1) -> str:
    return f"guardian-req{request_id}-{step}-{attempt}"


def queue(connection: Redis) -> Queue:
    return Queue(QUEUE_NAME, connection=connection)


def enqueue_step(
    connection: Redis,
    step: str,
    request_id: int,
    *,
    attempt: int = 1,
    at: datetime | None = None,
) -> Job:
    """Enqueue one step of one request, once: a live job with the same id is returned, not duplicated.

    RQ retries nothing here (no ``Retry``): the apply step must never run twice by accident, and
    every step starts with a compare-and-set on the request's status anyway.
    """
    func, timeout = STEPS[step]
    jid = job_id(step, request_id, attempt)
    try:
        existing = Job.fetch(jid, connection=connection)
        if existing.get_status(refresh=True) in _LIVE:
            log.info("request %s: %s job %s already queued", request_id, step, jid)
            return existing
    except NoSuchJobError:
        pass
    q = queue(connection)
    kwargs = dict(job_id=jid, job_timeout=timeout, result_ttl=7 * 86400, failure_ttl=30 * 86400,
                  description=f"request {request_id}: {step} (attempt {attempt})")
    if at is not None:
        job = q.enqueue_at(at, func, request_id, **kwargs)
    else:
        job = q.enqueue(func, request_id, **kwargs)
    log.info("request %s: enqueued %s as %s", request_id, step, jid)
    return job


def job_alive(connection: Redis, step: str, request_id: int, attempt: int = 1) -> bool:
    """Whether Redis still holds a queued or running job for this step (the reconciler's question)."""
    try:
        return Job.fetch(job_id(step, request_id, attempt), connection=connection).get_status(refresh=True) in _LIVE
    except NoSuchJobError:
        return False
