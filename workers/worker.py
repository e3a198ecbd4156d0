"""Runs an RQ worker (``guardian worker [--burst] [--queues ...]``) with its outbox pump and reconcile/cleanup loop.

Usage::

    run_worker(settings)                                  # runs here, analyses in a child process, until stopped
    run_worker(settings, burst=True)                      # both queues in this process, until they are empty
    run_worker(settings, queues=["guardian-analyze"])     # a worker for analyses only

Three threads beside RQ's loop: the outbox pump (committed job intents -> RQ, woken by NOTIFY, else
every PUMP_EVERY_S), the reconciler (every RECONCILE_EVERY_S) and webhooks/cleanup. Every process
the worker starts — RQ's work horses and scheduler, the analysis worker — dies with it
(PR_SET_PDEATHSIG): a worker killed with -9 leaves nothing running, and the reconciler finds its jobs
dead within seconds (the worker heartbeats every JOB_HEARTBEAT_S while a job runs; on this host the
process table answers at once).
"""
from __future__ import annotations

import ctypes
import importlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

import psycopg
from redis import Redis, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Queue, SimpleWorker, Worker

from bot import redaction
from bot.config import Settings, load_config
from bot.counters import COUNTERS
from bot.errors import GuardianError
from workers.enqueue import ANALYZE_QUEUE_NAME, QUEUE_NAME, QUEUE_NAMES, STEPS
from workers.liveness import mark_job_process

log = logging.getLogger(__name__)

# Every knob below can be set from the environment so a chaos run can drive recovery fast.
RECONCILE_EVERY_S = float(os.environ.get("GUARDIAN_RECONCILE_EVERY_S", "2"))  # one indexed query when idle
PUMP_EVERY_S = float(os.environ.get("GUARDIAN_PUMP_EVERY_S", "0.5"))  # the fallback when NOTIFY is not heard
WEBHOOK_EVERY_S = 2.0
CLEANUP_EVERY_S = 3600.0
RECONCILE_MIN_AGE_S = float(os.environ.get("GUARDIAN_RECONCILE_MIN_AGE_S", "1"))  # see workers.reconciler
JOB_HEARTBEAT_S = int(os.environ.get("GUARDIAN_JOB_HEARTBEAT_S", "2"))  # RQ job_monitoring_interval
WORKER_TTL_S = int(os.environ.get("GUARDIAN_WORKER_TTL_S", "20"))  # idle heartbeat every TTL-15 s; key kept TTL+60 s
_PR_SET_PDEATHSIG = 1
_forking_parent = 0
_PARENT_ENV = "GUARDIAN_WORKER_PARENT"  # set for the analysis process: the pid of the worker it dies with
ANALYSIS_RESTART_S = 2.0
REDIS_RETRY_S = 2.0
_hooks_registered = False


class ScrubbedFailures:
    """RQ keeps a failed job's traceback in Redis (the job hash, its Result, webhooks) for as long as the failed
    job registry does: it gets the same by-value scrub as our logs, so a password in an error stays in no store."""

    def handle_job_failure(self, job, queue, started_job_registry=None, exc_string="", execution=None):  # noqa: ANN001
        return super().handle_job_failure(job, queue, started_job_registry,  # type: ignore[misc]
                                          redaction.scrub(exc_string or ""), execution)


class GuardianWorker(ScrubbedFailures, Worker):
    """``guardian worker``'s RQ worker: a work horse per job."""


class GuardianSimpleWorker(ScrubbedFailures, SimpleWorker):
    """The same, running jobs in this process (``--burst`` in tests and benches)."""


def redis_connection(settings: Settings) -> Redis:
    return Redis.from_url(settings.redis_url.get_secret_value())


def run_worker(settings: Settings, *, burst: bool = False, queues: Sequence[str] | None = None) -> int:
    """Work the queues until stopped, or with burst until they are empty.

    By default this process works ``guardian`` (backups, applies, verifies…) and a child process of its
    own works ``guardian-analyze``, so an analysis never holds up a run; with burst (or
    GUARDIAN_ANALYSIS_PROCESS=0) one process works both, runs first; ``queues`` names exactly which.
    Reconciles and pumps the outbox once before working (work lost while no worker ran is queued
    first), then keeps both going in background threads; expired backups are deleted hourly.
    """
    parent = os.environ.get(_PARENT_ENV)
    if parent:  # the analysis process of a `guardian worker`: dies with it
        _die_with_parent(int(parent))
    _register_fork_hooks()
    connection = redis_connection(settings)
    COUNTERS.connect_url(settings.redis_url.get_secret_value())  # this worker's Slack errors, lock retries, recoveries
    analysis_child = queues is None and not burst and os.environ.get("GUARDIAN_ANALYSIS_PROCESS", "1") != "0"
    names = list(queues or ([QUEUE_NAME] if analysis_child else QUEUE_NAMES))
    stop = threading.Event()
    maintenance = _maintenance_runtime(settings) if not parent else None  # the parent reconciles and pumps
    threads: list[threading.Thread] = []
    from workers.backup import tidy_at_worker_start  # backup dir 0700; partial dumps of killed workers removed

    tidy_at_worker_start(maintenance.config if maintenance is not None else load_config(settings.guardian_config))
    if maintenance is not None:
        _maintain(maintenance, connection, cleanup=False)
        _pump(maintenance, wait_s=0)
        if not burst:
            threads += [threading.Thread(target=_pump_loop, args=(maintenance, stop), name="guardian-outbox-pump",
                                         daemon=True),
                        threading.Thread(target=_maintenance_loop, args=(maintenance, connection, stop),
                                         name="guardian-maintenance", daemon=True)]
    if analysis_child:
        threads.append(threading.Thread(target=_supervise_analysis, args=(stop,), name="guardian-analysis-process",
                                        daemon=True))
    for thread in threads:
        thread.start()
    preload_jobs(names)
    try:
        _work(connection, names, burst, stop)
    finally:
        stop.set()
        for thread in threads:  # the pump and reconciler finish their pass before the store closes
            thread.join(timeout=5 if thread.name != "guardian-analysis-process" else 35)
        if maintenance is not None:
            maintenance.close()
    return 0


def preload_jobs(names: Sequence[str]) -> list[str]:
    """Import the module of every job the queues ``names`` run, once, here: RQ's work horses are forked from this
    process and would otherwise each import their job's module (and workers.apply, backup, checks…) again — about
    16 ms of every fleet target's job (bench/fleet.py, profiled). A module that fails to import fails the worker's
    start, loudly, instead of every job."""
    modules = sorted({func.rsplit(".", 1)[0] for func, _, queue in STEPS.values() if queue in names})
    for module in modules:
        importlib.import_module(module)
    return modules


def _work(connection: Redis, names: list[str], burst: bool, stop: threading.Event) -> None:
    """RQ's loop; Redis lost where RQ does not ride it out itself (starting, registering) starts it again
    after REDIS_RETRY_S instead of ending the worker (a burst run ends: nothing could be worked)."""
    while True:
        try:
            worker = GuardianWorker([Queue(name, connection=connection) for name in names], connection=connection,
                            worker_ttl=WORKER_TTL_S, job_monitoring_interval=JOB_HEARTBEAT_S)
            log.info("worker %s listening on %s (burst=%s)", worker.name, ", ".join(names), burst)
            # the scheduler process runs jobs RQ holds for later (webhook retries); it dies with us like the horses
            worker.work(burst=burst, with_scheduler=True)
            return
        except (RedisConnectionError, RedisTimeoutError) as exc:
            if burst:
                raise
            log.warning("the worker on %s lost Redis (%s); starting again in %ss", ", ".join(names),
                        type(exc).__name__, REDIS_RETRY_S)
        for signum in (signal.SIGINT, signal.SIGTERM):  # RQ's handlers need Redis; ours only stop the wait
            signal.signal(signum, lambda *_: stop.set())
        if stop.wait(REDIS_RETRY_S):
            log.info("worker stopped while Redis was away")
            return


def _supervise_analysis(stop: threading.Event) -> None:
    """Keep one `guardian worker --queues guardian-analyze` child running; stop it when the worker stops.

    This thread starts it and outlives it (the child's parent-death signal follows the thread that forked it).
    """
    env = {**os.environ, _PARENT_ENV: str(os.getpid())}
    command = [sys.executable, "-m", "bot.cli", "worker", "--queues", ANALYZE_QUEUE_NAME]
    libc = ctypes.CDLL(None, use_errno=True)

    def die_with_us() -> None:  # between fork and exec: no window in which the child could outlive us
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    while not stop.is_set():
        child = subprocess.Popen(command, env=env, preexec_fn=die_with_us)
        log.info("analysis worker process %s started", child.pid)
        while child.poll() is None and not stop.wait(0.5):
            pass
        if child.poll() is None:  # we are stopping: a warm stop for it too, then the parent-death signal
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                log.warning("analysis worker process %s still busy after 30 s; it is killed with us", child.pid)
            return
        log.warning("analysis worker process %s exited with %s; restarting it in %ss", child.pid, child.returncode,
                    ANALYSIS_RESTART_S)
        stop.wait(ANALYSIS_RESTART_S)


def _register_fork_hooks() -> None:
    global _hooks_registered
    if not _hooks_registered:  # once per process: hooks registered twice would run twice in every child
        os.register_at_fork(before=_before_fork, after_in_child=_in_job_process)
        _hooks_registered = True


def _before_fork() -> None:
    global _forking_parent
    _forking_parent = os.getpid()


def _in_job_process() -> None:
    """In a forked job process: die with the worker, and never touch its pooled connections."""
    _die_with_parent(_forking_parent)
    _forget_parent_runtime()
    mark_job_process()


def _die_with_parent(parent: int) -> None:
    """PR_SET_PDEATHSIG(SIGKILL): the kernel kills this process when the worker that forked it dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            log.warning("job process %s: prctl(PR_SET_PDEATHSIG) failed (errno %s)", os.getpid(), ctypes.get_errno())
    except (OSError, AttributeError) as exc:  # not Linux: the reconciler still settles the job once it is dead
        log.warning("job process %s: cannot die with its worker (%s)", os.getpid(), exc)
        return
    if parent and os.getppid() != parent:  # the worker died before prctl took effect
        os._exit(1)


def _forget_parent_runtime() -> None:
    """Never touch the parent's pooled connections in a forked job process; build a runtime of our own."""
    import workers.runtime

    workers.runtime._current = None  # dropped, not closed: closing would end the parent's sessions too
    # module locks a parent thread may have held at the fork would stay held here forever: new ones
    workers.runtime._lock = threading.Lock()
    redaction._lock = threading.Lock()


def _maintenance_runtime(settings: Settings):
    """A Runtime of its own (never the process-wide one, which forked job processes must not share)."""
    from workers.runtime import Runtime

    if settings.database_url is None:
        log.warning("DATABASE_URL is not set; the worker runs without reconciling or pumping the outbox")
        return None
    return Runtime(settings=settings, config=load_config(settings.guardian_config))


def _pump(rt, *, wait_s: float) -> None:
    """One outbox pass (after waiting up to ``wait_s`` for a NOTIFY); workers.enqueue.deliver tolerates Redis and
    database errors."""
    if wait_s:
        rt.store.wait_for_intents(wait_s)
    rt.deliver()


def _pump_loop(rt, stop: threading.Event) -> None:
    while not stop.is_set():
        _pump(rt, wait_s=PUMP_EVERY_S)
    log.info("outbox pump stopped with the worker")


def _maintain(rt, connection: Redis, *, cleanup: bool) -> None:
    from workers.backup import cleanup_backups
    from workers.reconciler import reconcile
    from workers.reminders import remind

    try:
        for line in reconcile(rt, redis=connection, min_age_s=RECONCILE_MIN_AGE_S):
            log.info("reconciler: %s", line)
        for line in remind(rt):
            log.info("reminders: %s", line)
        if cleanup:
            cleanup_backups(rt)
            rt.store.prune_outbox()
    except GuardianError as exc:
        log.warning("reconciler pass failed [%s]: %s; next pass in %ss", exc.code, exc, RECONCILE_EVERY_S)
    except (psycopg.Error, RedisError, OSError) as exc:  # a database or Redis hiccup: the next pass retries
        log.warning("reconciler pass failed (%s); next pass in %ss", type(exc).__name__, RECONCILE_EVERY_S)


def _maintenance_loop(rt, connection: Redis, stop: threading.Event) -> None:
    """Reconcile every RECONCILE_EVERY_S, pump webhook events every WEBHOOK_EVERY_S, clean up backups hourly."""
    tick = min(RECONCILE_EVERY_S, WEBHOOK_EVERY_S) if rt.config.webhooks else RECONCILE_EVERY_S
    last_reconcile = time.monotonic()
    last_cleanup = last_reconcile - CLEANUP_EVERY_S  # the first pass of the loop cleans up, then hourly
    while not stop.wait(tick):
        if rt.config.webhooks:
            _pump_webhooks(rt, connection)
        now = time.monotonic()
        if now - last_reconcile >= RECONCILE_EVERY_S - 0.05:
            last_reconcile = now
            cleanup = now - last_cleanup >= CLEANUP_EVERY_S
            if cleanup:
                last_cleanup = now
            _maintain(rt, connection, cleanup=cleanup)
    log.info("maintenance loop stopped with the worker")


def _pump_webhooks(rt, connection: Redis) -> None:
    from workers.webhooks import pump

    try:
        pump(rt, connection)
    except GuardianError as exc:
        log.warning("webhook pump failed [%s]: %s; next pass in %ss", exc.code, exc, WEBHOOK_EVERY_S)
