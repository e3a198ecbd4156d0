"""Runs an RQ worker on the ``guardian`` queue (``guardian worker [--burst]``), plus the reconcile/cleanup loop."""
from __future__ import annotations

import logging
import os
import threading
import time

import psycopg
from redis import Redis, RedisError
from rq import Queue, Worker

from bot.config import Settings, load_config
from bot.errors import GuardianError

log = logging.getLogger(__name__)

QUEUE_NAME = "guardian"
RECONCILE_EVERY_S = 60.0
WEBHOOK_EVERY_S = 2.0
CLEANUP_EVERY_S = 3600.0
RECONCILE_MIN_AGE_S = 10.0  # requests changed more recently may have their job enqueued right now


def redis_connection(settings: Settings) -> Redis:
    return Redis.from_url(settings.redis_url.get_secret_value())


def run_worker(settings: Settings, *, burst: bool = False) -> int:
    """Work the guardian queue until stopped (or, with burst, until it is empty).

    Reconciles once before working (requests whose job vanished are re-enqueued first), then every
    minute in a background thread; expired backups are deleted hourly.
    """
    os.register_at_fork(after_in_child=_forget_parent_runtime)
    connection = redis_connection(settings)
    queue = Queue(QUEUE_NAME, connection=connection)
    worker = Worker([queue], connection=connection)
    stop = threading.Event()
    maintenance = _maintenance_runtime(settings)
    if maintenance is not None:
        _maintain(maintenance, connection, cleanup=False)
        if not burst:
            threading.Thread(target=_maintenance_loop, args=(maintenance, connection, stop),
                             name="guardian-maintenance", daemon=True).start()
    log.info("worker %s listening on queue %r (burst=%s)", worker.name, QUEUE_NAME, burst)
    try:
        worker.work(burst=burst, with_scheduler=True)  # runs `at=` jobs (maintenance windows, freezes)
    finally:
        stop.set()
        if maintenance is not None:
            maintenance.close()
    return 0


def _forget_parent_runtime() -> None:
    """In a forked job process: never touch the parent's pooled connections; build a runtime of our own."""
    import workers.runtime

    workers.runtime._current = None  # dropped, not closed: closing would end the parent's sessions too


def _maintenance_runtime(settings: Settings):
    """A Runtime of its own (never the process-wide one, which forked job processes must not share)."""
    from workers.runtime import Runtime

    if settings.database_url is None:
        log.warning("DATABASE_URL is not set; the worker runs without reconciling")
        return None
    return Runtime(settings=settings, config=load_config(settings.guardian_config))


def _maintain(rt, connection: Redis, *, cleanup: bool) -> None:
    from workers.backup import cleanup_backups
    from workers.reconciler import reconcile

    try:
        for line in reconcile(rt, redis=connection, min_age_s=RECONCILE_MIN_AGE_S):
            log.info("reconciler: %s", line)
        if cleanup:
            cleanup_backups(rt)
    except GuardianError as exc:
        log.warning("reconciler pass failed [%s]: %s; next pass in %ss", exc.code, exc, int(RECONCILE_EVERY_S))
    except (psycopg.Error, RedisError, OSError) as exc:  # a database or Redis hiccup: the next pass retries
        log.warning("reconciler pass failed (%s); next pass in %ss", type(exc).__name__, int(RECONCILE_EVERY_S))


def _maintenance_loop(rt, connection: Redis, stop: threading.Event) -> None:
    """Webhook events are pumped every WEBHOOK_EVERY_S; reconcile every RECONCILE_EVERY_S; cleanup hourly."""
    passes, last_reconcile = 0, time.monotonic()
    while not stop.wait(WEBHOOK_EVERY_S if rt.config.webhooks else RECONCILE_EVERY_S):
        if rt.config.webhooks:
            _pump_webhooks(rt, connection)
        if time.monotonic() - last_reconcile >= RECONCILE_EVERY_S - 0.5:
            last_reconcile = time.monotonic()
            passes += 1
            _maintain(rt, connection, cleanup=passes % int(CLEANUP_EVERY_S // RECONCILE_EVERY_S) == 1)
    log.info("maintenance loop stopped with the worker")


def _pump_webhooks(rt, connection: Redis) -> None:
    from workers.webhooks import pump

    try:
        pump(rt, connection)
    except GuardianError as exc:
        log.warning("webhook pump failed [%s]: %s; next pass in %ss", exc.code, exc, WEBHOOK_EVERY_S)
