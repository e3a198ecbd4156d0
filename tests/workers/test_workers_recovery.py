"""Recovery: a worker SIGKILLed mid-apply, Redis flushed between approval and run, approved requests never queued."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bot.models import DbState, RequestStatus
from workers.pipeline import start_run
from workers.reconciler import reconcile, step_alive
from workers.watchdog import lock_holder, target_lock_key

ROOT = Path(__file__).resolve().parents[2]
FORKED_WORKER = """
import os
from redis import Redis
from rq import Queue, Worker
r = Redis.from_url(os.environ["REDIS_URL"])
Worker([Queue("guardian", connection=r)], connection=r).work(burst=True)
"""


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_sigkilled_worker_mid_apply_is_settled_with_the_truth(make_pipeline):
    p = make_pipeline()
    req = p.request([("001_slow", "CREATE TABLE crash_t (id int);\nSELECT pg_sleep(30);\n")])
    start_run(p.rt, req.id)
    env = {**os.environ, **p.settings_env}
    worker = subprocess.Popen([sys.executable, "-c", FORKED_WORKER], cwd=ROOT, env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with p.target() as conn:
            _wait_for(lambda: p.session(conn, f"guardian-req{req.id}", running="pg_sleep"), 30,
                      "the apply to reach pg_sleep")
    finally:  # the worker and its work horse (rq puts the horse in its own process group), as when a machine dies
        horses = _children(worker.pid)
        os.killpg(worker.pid, signal.SIGKILL)
        for pid in horses:
            os.killpg(pid, signal.SIGKILL)
        worker.wait(timeout=10)
    assert p.store.get_request(req.id).status is RequestStatus.APPLYING
    with p.target() as conn:  # client_connection_check_interval: the server notices the dead client by itself
        _wait_for(lambda: not p.session(conn, f"guardian-req{req.id}"), 10, "the orphaned query to die")
    assert not step_alive(p.redis, "apply", req.id)  # the job still says "started"; its worker is dead

    actions = reconcile(p.rt, redis=p.redis, min_age_s=0)

    assert actions == [f"request {req.id}: apply worker died: failed, database untouched"]
    failed = p.store.get_request(req.id)
    assert failed.status is RequestStatus.FAILED
    assert failed.failed_step == "apply" and failed.db_state is DbState.UNTOUCHED
    assert "worker running the apply died after 0 of 1" in failed.error
    assert [s.status for s in p.store.list_steps(req.id) if s.step == "apply"] == ["failed"]
    with p.target() as conn:
        assert conn.execute("SELECT to_regclass('crash_t')").fetchone()[0] is None  # the transaction aborted
        assert lock_holder(conn, target_lock_key("staging")) is None
        assert not p.session(conn, f"guardian-req{req.id}")
    assert any("failed at *apply*" in t for t in p.thread_texts(failed))

    after = p.request([("002_after_crash", "CREATE TABLE after_crash (id int);")])
    start_run(p.rt, after.id)
    p.work()
    assert p.store.get_request(after.id).status is RequestStatus.SUCCEEDED


def test_redis_flush_between_approval_and_run_loses_no_request(make_pipeline):
    p = make_pipeline()
    queued = p.request([("001_a", "CREATE TABLE flushed_a (id int);")])
    start_run(p.rt, queued.id)
    never_queued = p.request([("002_b", "CREATE TABLE flushed_b (id int);")])  # approved; the process died
    waiting = p.request([("003_c", "CREATE TABLE flushed_c (id int);")])
    p.redis.flushdb()
    start_run(p.rt, waiting.id)  # queued after the flush: its job is live and must be left alone

    actions = reconcile(p.rt, redis=p.redis, min_age_s=0)

    assert sorted(actions) == sorted([
        f"request {queued.id}: queued but its backup job was gone: enqueued again",
        f"request {never_queued.id}: approved but never queued: started",
    ])
    assert reconcile(p.rt, redis=p.redis, min_age_s=0) == []  # nothing more to do
    p.work()
    for req in (queued, never_queued, waiting):
        assert p.store.get_request(req.id).status is RequestStatus.SUCCEEDED
    with p.target() as conn:
        assert conn.execute("SELECT count(*) FROM guardian.schema_history").fetchone()[0] == 3


def test_redis_flush_between_steps_resumes_with_the_next_step(make_pipeline):
    from rq import Queue, SimpleWorker

    p = make_pipeline()
    req = p.request([("001_a", "CREATE TABLE between_steps (id int);")])
    start_run(p.rt, req.id)
    SimpleWorker([Queue("guardian", connection=p.redis)], connection=p.redis).work(burst=True, max_jobs=1)
    assert p.store.get_request(req.id).status is RequestStatus.BACKING_UP  # backup done, apply not started
    p.redis.flushdb()

    assert reconcile(p.rt, redis=p.redis, min_age_s=0) == [
        f"request {req.id}: backup done but the apply job was gone: enqueued again"]
    p.work()
    assert p.store.get_request(req.id).status is RequestStatus.SUCCEEDED
    assert len(p.store.list_backups(request_id=req.id)) == 1  # the backup was not taken twice


def test_reconcile_leaves_recent_changes_alone(make_pipeline):
    p = make_pipeline()
    req = p.request([("001_a", "CREATE TABLE recent_a (id int);")])
    start_run(p.rt, req.id)
    p.redis.flushdb()
    assert reconcile(p.rt, redis=p.redis, min_age_s=60) == []
    assert p.store.get_request(req.id).status is RequestStatus.QUEUED


def test_worker_start_reconciles_then_works_in_forked_job_processes(make_pipeline, monkeypatch):
    from bot.config import Settings
    from workers.worker import run_worker

    p = make_pipeline()
    req = p.request([("001_a", "CREATE TABLE via_worker (id int);")])
    start_run(p.rt, req.id)
    p.redis.flushdb()  # the job is lost; only the reconciler at worker start can bring it back
    for key, value in p.settings_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr("workers.worker.RECONCILE_MIN_AGE_S", 0.0)

    assert run_worker(Settings(), burst=True) == 0

    assert p.store.get_request(req.id).status is RequestStatus.SUCCEEDED
