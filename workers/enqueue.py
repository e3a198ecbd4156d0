"""Owns every enqueue: job names to functions and queues, deterministic job ids, the outbox pump.

Usage::

    job = enqueue_step(redis, "analyze", request_id)             # straight to RQ (tests, operators)
    job = enqueue_step(redis, "backup", request_id, attempt=2)
    sent = deliver(store, redis)                                  # the outbox's unsent intents -> RQ

The bot never enqueues into Redis itself: it writes an intent to the store's job outbox in the same
transaction as the state change (``store.transition(..., enqueue="backup")``), and ``deliver`` — the
worker's pump thread, and the worker-side code right after its own commits — moves it to RQ.
"""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import psycopg
from redis import Redis, RedisError
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job

from bot.errors import StoreError
from bot.run import RUN, Pipeline
from bot.store import Store
from bot.store.outbox import OutboxJob
from workers.liveness import job_live

log = logging.getLogger(__name__)

QUEUE_NAME = "guardian"                # backups, applies, verifies, restores: never wait behind an analysis
ANALYZE_QUEUE_NAME = "guardian-analyze"  # analyses (bounded, but a big file can take a while)
QUEUE_NAMES = (QUEUE_NAME, ANALYZE_QUEUE_NAME)
# job name -> (dotted function, job timeout in seconds, queue): the run's steps (backup, apply, verify) come
# from its table (bot/run.py), whose timeouts apply's statement timeouts must stay under; these are the others.
OTHER_JOBS: dict[str, tuple[str, int, str]] = {
    "analyze": ("workers.analyze.run", 15 * 60, ANALYZE_QUEUE_NAME),
    "start": ("workers.gate.run", 15 * 60, QUEUE_NAME),
    "restore": ("workers.restore.run", 12 * 3600, QUEUE_NAME),
    "cleanup": ("workers.backup.cleanup", 3600, QUEUE_NAME),
    "ondemand-backup": ("workers.ondemand.backup", 6 * 3600, QUEUE_NAME),  # args: environment, user, channel
    "slack-post": ("workers.slack_post.run", 300, QUEUE_NAME),  # args: request id, message, attempt[, incident id]
    "fleet-target": ("workers.fleet_target.run", 12 * 3600, QUEUE_NAME),  # args: request id, target, attempt
    "fleet-advance": ("workers.fleet.advance", 15 * 60, QUEUE_NAME),  # args: request id (the end of a pause)
}


def jobs(pipeline: Pipeline = RUN) -> dict[str, tuple[str, int, str]]:
    """Every job the queue knows: ``pipeline``'s steps (on the main queue) and the others."""
    return {**{s.name: (s.job, s.timeout_s, QUEUE_NAME) for s in pipeline.steps}, **OTHER_JOBS}


STEPS = jobs(RUN)


def job_id(step: str, request_id: int, attempt: int = 1) -> str:
    return f"guardian-req{request_id}-{step}-{attempt}"


def queue(connection: Redis, name: str = QUEUE_NAME) -> Queue:
    return Queue(name, connection=connection)


def enqueue_step(
    connection: Redis,
    step: str,
    request_id: int,
    *,
    attempt: int = 1,
    at: datetime | None = None,
    pipeline: Pipeline = RUN,
) -> Job:
    """Enqueue one step of one request, once: a live job with the same id is returned, not duplicated.

    RQ retries nothing here (no ``Retry``): the apply step must never run twice by accident, and
    every step starts with a compare-and-set on the request's status anyway.
    """
    return _enqueue(connection, step, job_id(step, request_id, attempt), (request_id,), at=at,
                    description=f"request {request_id}: {step} (attempt {attempt})", pipeline=pipeline)


def _enqueue(connection: Redis, step: str, jid: str, args: tuple[Any, ...], *, at: datetime | None = None,
             description: str, meta: dict[str, Any] | None = None, pipeline: Pipeline = RUN) -> Job:
    func, timeout, queue_name = (STEPS if pipeline is RUN else jobs(pipeline))[step]
    try:
        existing = Job.fetch(jid, connection=connection)
        if job_live(connection, existing):
            log.info("%s: job %s already queued or running", description, jid)
            return existing
        # a dead job of the same id: a worker that died after popping it may have left it in the
        # intermediate queue, where RQ's own cleanup would later mark the new run failed
        Queue(existing.origin, connection=connection).intermediate_queue.remove(jid)
    except NoSuchJobError:
        pass
    q = queue(connection, queue_name)
    kwargs = dict(job_id=jid, job_timeout=timeout, result_ttl=7 * 86400, failure_ttl=30 * 86400,
                  description=description, meta=meta or {})
    job = q.enqueue_at(at, func, *args, **kwargs) if at is not None else q.enqueue(func, *args, **kwargs)
    log.info("%s: enqueued as %s on %s", description, jid, queue_name)
    return job


def outbox_job_id(row: OutboxJob) -> str:
    """A request's step keeps its deterministic id; any other job is named after its outbox row."""
    if row.request_id is not None:
        return job_id(row.step, row.request_id, row.attempt)
    return f"guardian-outbox{row.id}-{row.step}"


def send(connection: Redis, row: OutboxJob, pipeline: Pipeline = RUN) -> str:
    """Put one outbox row on its queue; the job id. Sending a row twice queues it once (RQ job id + meta)."""
    jid = outbox_job_id(row)
    try:
        existing = Job.fetch(jid, connection=connection)
        if existing.meta.get("outbox_id") == row.id:
            log.info("outbox row %s: job %s was already sent", row.id, jid)
            return jid
    except NoSuchJobError:
        pass
    if row.step not in STEPS and row.step not in pipeline:
        log.error("outbox row %s names an unknown job %r; dropped (marked sent, nothing queued)", row.id, row.step)
        return f"unknown-job:{row.step}"
    args = (row.request_id,) if row.request_id is not None else tuple(row.args)
    who = f"request {row.request_id}" if row.request_id is not None else f"outbox row {row.id}"
    _enqueue(connection, row.step, jid, args, description=f"{who}: {row.step} (attempt {row.attempt})",
             meta={"outbox_id": row.id}, pipeline=pipeline)
    return jid


def deliver(store: Store, connection: Redis, *, limit: int = 100, pipeline: Pipeline = RUN) -> int:
    """One pump pass: move due, unsent outbox rows to RQ. Redis being down ends the pass; the rows wait.

    Returns how many rows were sent. Safe to call from any number of processes at once.
    """
    def _send(row: OutboxJob) -> str | None:
        try:
            return send(connection, row, pipeline)
        except RedisError as exc:
            log.warning("outbox row %s (request %s, %s): the job queue is unreachable (%s); it stays queued "
                        "in PostgreSQL and is sent when Redis is back", row.id, row.request_id, row.step,
                        type(exc).__name__)
            return None

    try:
        return store.deliver_outbox(_send, limit=limit)
    except (psycopg.Error, StoreError) as exc:  # the bot's database is away: the intents are safe there
        log.warning("outbox pump pass failed (%s); the next pass retries", type(exc).__name__)
        return 0
