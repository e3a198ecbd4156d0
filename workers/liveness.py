"""Whether an RQ job is really alive: on its queue, just popped by a live worker, or running on one.

Usage::

    if not job_live(redis, Job.fetch(jid, connection=redis)):
        ...                                  # the reconciler re-enqueues or settles the request

An RQ status is a hint, not the truth: a job whose worker died between dequeue and start still says
``queued`` (it sits in RQ's intermediate queue ``rq:queue:<name>:intermediate``, or — for a worker on
several queues, which pops with LPOP — in no list at all), and a job whose worker was killed with -9
still says ``started``. So a queued job is alive only while its id is on its queue's list or was
popped less than POPPED_GRACE_S ago, and a started job only while its worker is.
"""
from __future__ import annotations

import os
import socket
from datetime import datetime, timezone
from pathlib import Path

from redis import Redis
from rq import Queue, Worker
from rq.job import Job, JobStatus

# A worker moves a popped job to "started" within milliseconds (fork + a Redis pipeline); a job still
# "queued" but on no queue list this long after we first saw it so was dropped by a dead worker.
POPPED_GRACE_S = float(os.environ.get("GUARDIAN_POPPED_GRACE_S", "3"))
# A busy worker heartbeats every JOB_HEARTBEAT_S (workers.worker); one on another host that has been
# silent this long is dead. On this host the process table answers at once.
WORKER_SILENT_S = float(os.environ.get("GUARDIAN_WORKER_SILENT_S", "15"))
_HELD = {JobStatus.SCHEDULED, JobStatus.DEFERRED}
_POPPED_KEY = "guardian:popped:{job}:{enqueued}"


def job_live(connection: Redis, job: Job) -> bool:
    """True while ``job`` will still run or is running on a live worker."""
    status = job.get_status(refresh=True)
    if status in _HELD:
        return True
    if status == JobStatus.QUEUED:
        return _waiting(connection, job)
    if status == JobStatus.STARTED:
        return worker_alive(connection, job.worker_name)
    return False


def _waiting(connection: Redis, job: Job) -> bool:
    if connection.lpos(Queue(job.origin, connection=connection).key, job.id) is not None:
        return True
    # popped but not started: alive only within the grace period after we first noticed
    enqueued = job.enqueued_at.timestamp() if job.enqueued_at else 0
    key = _POPPED_KEY.format(job=job.id, enqueued=int(enqueued * 1000))
    now = datetime.now(timezone.utc).timestamp()
    connection.set(key, now, nx=True, ex=3600)
    first = float(connection.get(key) or now)
    return now - first < POPPED_GRACE_S


def worker_alive(connection: Redis, name: str | None) -> bool:
    """The worker's key is in Redis and, on this host, its process exists; elsewhere it heartbeats."""
    if not name:
        return False
    worker = Worker.find_by_key(Worker.redis_worker_namespace_prefix + name, connection=connection)
    if worker is None:
        return False
    if worker.hostname == socket.gethostname() and worker.pid:
        return pid_alive(worker.pid)
    beat = worker.last_heartbeat
    if beat is None:
        return True
    age = (datetime.now(timezone.utc) - beat.replace(tzinfo=timezone.utc)).total_seconds()
    return age <= WORKER_SILENT_S


def pid_alive(pid: int) -> bool:
    """The process exists and is not a zombie (a killed worker its parent has not reaped yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")
