"""Whether an RQ job is really alive: on its queue, just popped by a live worker, or running on one.

Usage::

    if not job_live(redis, Job.fetch(jid, connection=redis)):
        ...                                  # the reconciler re-enqueues or settles the request

An RQ status is a hint, not the truth: a job whose worker died between dequeue and start still says
``queued`` (it sits in RQ's intermediate queue ``rq:queue:<name>:intermediate``, or — for a worker on
several queues, which pops with LPOP — in no list at all), and a job whose worker was killed with -9
still says ``started``. So a queued job is alive only while its id is on its queue's list or was
popped less than POPPED_GRACE_S ago, and a started job only while its worker is.

A flushed or restarted Redis forgets a running job altogether, so the process running a step also
holds a lease (``hold_lease``) it rewrites every LEASE_EVERY_S: ``running_elsewhere`` finds it again
within seconds, and a step whose job vanished is left alone while its process still runs it.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from redis import Redis, RedisError
from rq import Queue, Worker
from rq.job import Job, JobStatus

# A worker moves a popped job to "started" within milliseconds (fork + a Redis pipeline); a job still
# "queued" but on no queue list this long after we first saw it so was dropped by a dead worker.
POPPED_GRACE_S = float(os.environ.get("GUARDIAN_POPPED_GRACE_S", "3"))
# A busy worker heartbeats every JOB_HEARTBEAT_S (workers.worker); one on another host that has been
# silent this long is dead. On this host the process table answers at once.
WORKER_SILENT_S = float(os.environ.get("GUARDIAN_WORKER_SILENT_S", "15"))
LEASE_EVERY_S = float(os.environ.get("GUARDIAN_LEASE_EVERY_S", "2"))
# A running step's job that vanished from Redis this recently may still be running: its process
# rewrites its lease within LEASE_EVERY_S.
VANISHED_GRACE_S = float(os.environ.get("GUARDIAN_VANISHED_GRACE_S", str(LEASE_EVERY_S * 1.5 + 0.5)))
_HELD = {JobStatus.SCHEDULED, JobStatus.DEFERRED}
_POPPED_KEY = "guardian:popped:{job}:{enqueued}"
_LEASE_KEY = "guardian:lease:{job}"
_MISSING_KEY = "guardian:missing:{job}"
_OVER = {b"finished", b"failed", b"stopped", b"canceled"}
log = logging.getLogger(__name__)
_job_process = False  # set in a `guardian worker`'s forked work horse (workers.worker)


def mark_job_process() -> None:
    """This process is a work horse: it runs one job and ends, so a lease it holds ends with it."""
    global _job_process
    _job_process = True


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
    if worker.hostname is None or worker.birth_date is None:
        # Not a registration (RQ writes hostname, pid, birth and heartbeat together): what is left after Redis was
        # flushed or restarted under a worker and it then wrote one field (job working time). It proves nothing;
        # a live job process is found by its lease (running_elsewhere).
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


def hold_lease(connection: Redis, job_id: str) -> None:
    """In the process running ``job_id``: keep ``guardian:lease:<job>`` (host:pid) in Redis, rewritten every
    LEASE_EVERY_S until the job is over or the process ends, so a flush cannot make a live step look dead."""
    if not _job_process:  # an in-process worker (tests, benches) would keep renewing after the job
        return
    key, value = _LEASE_KEY.format(job=job_id), f"{socket.gethostname()}:{os.getpid()}"
    job_key = Job.key_for(job_id)

    def renew() -> None:
        while True:
            try:
                if connection.hget(job_key, "status") in _OVER:
                    connection.delete(key)
                    return
                connection.set(key, value, ex=int(LEASE_EVERY_S * 5) + 1)
            except RedisError as exc:  # Redis away: the next renewal puts the lease back
                log.debug("job %s: lease not renewed (%s)", job_id, type(exc).__name__)
            time.sleep(LEASE_EVERY_S)

    threading.Thread(target=renew, name=f"guardian-lease-{job_id}", daemon=True).start()


def running_elsewhere(connection: Redis, job_id: str, *, grace: bool = True) -> bool:
    """A process still runs ``job_id`` though RQ no longer says so: its lease is held by a live process, or
    (with ``grace``) the job vanished from Redis so recently that a live process has not rewritten its lease yet."""
    lease = connection.get(_LEASE_KEY.format(job=job_id))
    if lease is not None:
        host, _, pid = lease.decode().rpartition(":")
        return host != socket.gethostname() or pid_alive(int(pid))
    if not grace or connection.exists(Job.key_for(job_id)):
        return False  # RQ still knows the job (and job_live said it is dead): no flush to wait out
    key = _MISSING_KEY.format(job=job_id)
    now = datetime.now(timezone.utc).timestamp()
    connection.set(key, now, nx=True, ex=3600)
    return now - float(connection.get(key) or now) < VANISHED_GRACE_S
