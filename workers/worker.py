"""Runs an RQ worker on the ``guardian`` queue (``guardian worker [--burst]``)."""
from __future__ import annotations

import logging

from redis import Redis
from rq import Queue, Worker

from bot.config import Settings

log = logging.getLogger(__name__)

QUEUE_NAME = "guardian"


def redis_connection(settings: Settings) -> Redis:
    return Redis.from_url(settings.redis_url.get_secret_value())


def run_worker(settings: Settings, *, burst: bool = False) -> int:
    """Work the guardian queue until stopped (or, with burst, until it is empty)."""
    connection = redis_connection(settings)
    queue = Queue(QUEUE_NAME, connection=connection)
    worker = Worker([queue], connection=connection)
    log.info("worker %s listening on queue %r (burst=%s)", worker.name, QUEUE_NAME, burst)
    worker.work(burst=burst, with_scheduler=False)
    return 0
