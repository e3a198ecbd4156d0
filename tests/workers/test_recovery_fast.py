"""Every non-terminal state has an owner: analyses whose job vanished or kept dying, jobs a dead worker left
in RQ's intermediate queue, and a `guardian worker` killed with -9 (its job process dies with it, and a
live worker settles the request)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from redis import Redis
from rq import Queue

from bot.models import DbState, RequestStatus
from workers.enqueue import QUEUE_NAME, job_id
from workers.pipeline import start_run
from workers.reconciler import reconcile, step_alive
from workers.worker import GuardianSimpleWorker

ROOT = Path(__file__).resolve().parents[2]
# A real RQ worker (one queue: it dequeues with LMOVE into rq:queue:guardian:intermediate) that dies
# with SIGKILL right after the dequeue, before the job starts: the window the issue found.
DIES_AFTER_DEQUEUE = """
import os, signal
from redis import Redis
from rq import Queue, Worker

class DiesAfterDequeue(Worker):
    def execute_job(self, job, queue):
        os.kill(os.getpid(), signal.SIGKILL)

r = Redis.from_url(os.environ["REDIS_URL"])
DiesAfterDequeue([Queue("guardian", connection=r)], connection=r).work(burst=True)
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


def _exists(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _wait_for(predicate, timeout: float, what: str, state=None):
    """``predicate()``'s first true value within ``timeout`` s; else fail, saying ``state()`` when given."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f"; {state()}" if state else ""))


def _request_state(p, request_id: int, worker_log: Path | None = None) -> str:
    """Where a request stands (status, step, error, its last events) and the tail of a worker's log: what a
    timed-out wait shows."""
    request = p.store.get_request(request_id)
    events = [f"{e.kind} {e.detail}" for e in p.store.list_events(request_id=request_id)[-8:]]
    tail = worker_log.read_text(errors="replace")[-3000:] if worker_log and worker_log.exists() else ""
    return (f"request {request_id} is {request.status.value} (step {request.failed_step}, error {request.error!r}); "
            f"events: {events}; worker log tail:\n{tail}")


def _dying_worker(p) -> None:
    env = {**os.environ, **p.settings_env}
    subprocess.run([sys.executable, "-c", DIES_AFTER_DEQUEUE], cwd=ROOT, env=env, timeout=60,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _intermediate(redis: Redis) -> list[str]:
    return Queue(QUEUE_NAME, connection=redis).intermediate_queue.get_job_ids()


def _analysing(p, name: str):
    return p.request([(name, f"CREATE TABLE {name} (id int);")], status=RequestStatus.ANALYZING)


def test_analysing_request_whose_job_vanished_is_analysed(make_pipeline):
    p = make_pipeline()
    req = _analysing(p, "t_flushed")
    p.rt.flow.enqueue("analyze", req.id)
    assert step_alive(p.redis, "analyze", req.id, store=p.store)
    p.redis.flushdb()  # Redis lost the queued analysis
    assert not step_alive(p.redis, "analyze", req.id, store=p.store)

    assert reconcile(p.rt, redis=p.redis, min_age_s=0) == [
        f"request {req.id}: analysing but its analysis job was gone: enqueued again"]
    assert reconcile(p.rt, redis=p.redis, min_age_s=0) == []  # its job is queued now
    p.work()
    assert p.store.get_request(req.id).status is RequestStatus.AWAITING_APPROVAL


def test_analysing_request_never_queued_is_analysed_once_it_is_old_enough(make_pipeline, monkeypatch):
    p = make_pipeline()
    req = _analysing(p, "t_never")  # its creator died before writing the analysis intent
    assert reconcile(p.rt, redis=p.redis, min_age_s=0) == []  # it may still be posting its card
    monkeypatch.setattr("workers.reconciler.ANALYZE_ORPHAN_AGE_S", 0.0)
    assert reconcile(p.rt, redis=p.redis, min_age_s=0) == [
        f"request {req.id}: analysing but no analysis was ever queued: queued"]
    p.work()
    assert p.store.get_request(req.id).status is RequestStatus.AWAITING_APPROVAL


def test_analysis_that_keeps_dying_fails_with_why_after_three_tries(make_pipeline):
    p = make_pipeline()
    req = _analysing(p, "t_crashing")
    p.rt.flow.enqueue("analyze", req.id)
    actions = []
    for _ in range(3):
        p.store.start_step(req.id, "analyze")  # the analysis started ...
        p.redis.flushdb()  # ... and its job died with its worker
        actions += reconcile(p.rt, redis=p.redis, min_age_s=0)
    assert actions == [f"request {req.id}: analysing but its analysis job was gone: enqueued again"] * 2 + [
        f"request {req.id}: analysis crashed 3 times: failed"]
    failed = p.store.get_request(req.id)
    assert failed.status is RequestStatus.FAILED and failed.failed_step == "analyze"
    assert failed.db_state is DbState.UNTOUCHED
    assert "stopped 3 times without finishing" in failed.error and "nothing was applied" in failed.error
    assert [s.status for s in p.store.list_steps(req.id)] == ["failed"] * 3  # none left "running"
    assert any("Analysis failed" in t for t in p.thread_texts(failed))
    assert reconcile(p.rt, redis=p.redis, min_age_s=0) == []


def test_backup_job_left_in_the_intermediate_queue_by_a_dead_worker_is_queued_again(make_pipeline, monkeypatch):
    p = make_pipeline()
    req = p.request([("001_a", "CREATE TABLE popped_a (id int);")])
    start_run(p.rt, req.id)
    _dying_worker(p)
    jid = job_id("backup", req.id)
    assert _intermediate(p.redis) == [jid]
    assert Queue(QUEUE_NAME, connection=p.redis).fetch_job(jid).get_status() == "queued"  # RQ's word; not the truth
    monkeypatch.setattr("workers.liveness.POPPED_GRACE_S", 0.5)
    assert reconcile(p.rt, redis=p.redis, min_age_s=0) == []  # just popped: its worker may be starting it
    time.sleep(0.6)

    assert reconcile(p.rt, redis=p.redis, min_age_s=0) == [
        f"request {req.id}: queued but its backup job was gone: enqueued again"]
    assert _intermediate(p.redis) == []
    p.work()
    assert p.store.get_request(req.id).status is RequestStatus.SUCCEEDED


def test_verify_job_left_in_the_intermediate_queue_does_not_keep_the_request_applying(make_pipeline, monkeypatch):
    p = make_pipeline()
    req = p.request([("001_a", "CREATE TABLE popped_v (id int);")])
    start_run(p.rt, req.id)
    GuardianSimpleWorker([Queue(QUEUE_NAME, connection=p.redis)], connection=p.redis).work(burst=True, max_jobs=2)
    assert p.store.get_request(req.id).status is RequestStatus.APPLYING  # backup and apply done; verify queued
    _dying_worker(p)
    assert _intermediate(p.redis) == [job_id("verify", req.id)]
    monkeypatch.setattr("workers.liveness.POPPED_GRACE_S", 0.0)

    assert reconcile(p.rt, redis=p.redis, min_age_s=0) == [
        f"request {req.id}: apply done but the verify job was gone: enqueued again"]
    p.work()
    assert p.store.get_request(req.id).status is RequestStatus.SUCCEEDED


def test_a_worker_key_redis_lost_under_a_worker_proves_no_life(make_pipeline):
    """Redis flushed or restarted under a running worker, which then wrote one field of its key again (RQ's job
    working time), and the worker was killed: the remnant (no hostname, pid, birth or heartbeat) must not keep the
    step "alive" until it expires — the request is settled on the next pass."""
    p = make_pipeline()
    req = p.request([("001_a", "CREATE TABLE remnant_t (id int);")])
    start_run(p.rt, req.id)
    p.store.transition(req.id, RequestStatus.QUEUED, RequestStatus.BACKING_UP, actor="test")
    job = Queue(QUEUE_NAME, connection=p.redis).fetch_job(job_id("backup", req.id))
    job.set_status("started")
    p.redis.hset(job.key, "worker_name", "gone-worker")
    p.redis.hset("rq:worker:gone-worker", "current_job_working_time", "3")
    p.redis.expire("rq:worker:gone-worker", 60)
    p.store.start_step(req.id, "backup", job_id=job.id)

    assert step_alive(p.redis, "backup", req.id, store=p.store) is False
    assert reconcile(p.rt, redis=p.redis, min_age_s=0) == [
        f"request {req.id}: backup worker died: failed, database untouched"]
    assert p.store.get_request(req.id).status is RequestStatus.FAILED


def test_worker_killed_with_9_takes_its_job_process_along_and_a_live_worker_settles_the_request(make_pipeline,
                                                                                               tmp_path):
    p = make_pipeline()
    req = p.request([("001_slow", "CREATE TABLE killed_t (id int);\nSELECT pg_sleep(30);\n")])
    env = {**os.environ, **p.settings_env, "GUARDIAN_RECONCILE_EVERY_S": "1"}
    first = subprocess.Popen([sys.executable, "-m", "bot.cli", "worker"], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    second = None
    try:
        start_run(p.rt, req.id)
        with p.target() as conn:
            _wait_for(lambda: p.session(conn, f"guardian-req{req.id}", running="pg_sleep"), 60,
                      "the apply to reach pg_sleep")
        horses = _children(first.pid)
        assert horses, "the worker runs the job in a forked process"
        first.kill()  # SIGKILL of the worker only, as `kill -9 <guardian worker>`
        first.wait(timeout=10)
        _wait_for(lambda: not any(_exists(pid) for pid in horses), 10, "the job process to die with its worker")

        killed_at = time.monotonic()
        second_log = tmp_path / "second-worker.log"
        with second_log.open("w") as log:
            second = subprocess.Popen([sys.executable, "-m", "bot.cli", "worker"], cwd=ROOT, env=env, stdout=log,
                                      stderr=subprocess.STDOUT)
        _wait_for(lambda: p.store.get_request(req.id).status is RequestStatus.FAILED, 60, "the request to be settled",
                  state=lambda: _request_state(p, req.id, second_log))
        print(f"settled {time.monotonic() - killed_at:.1f} s after the kill")
        failed = p.store.get_request(req.id)
        assert failed.failed_step == "apply" and failed.db_state is DbState.UNTOUCHED
        assert "worker running the apply died" in failed.error
        with p.target() as conn:
            assert conn.execute("SELECT to_regclass('killed_t')").fetchone()[0] is None
            assert not p.session(conn, f"guardian-req{req.id}")

        after = p.request([("002_after", "CREATE TABLE after_kill (id int);")])
        start_run(p.rt, after.id)
        _wait_for(lambda: p.store.get_request(after.id).status is RequestStatus.SUCCEEDED, 60, "the next request",
                  state=lambda: _request_state(p, after.id, second_log))
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)


def test_an_analysis_runs_in_its_own_process_while_an_apply_holds_the_worker(make_pipeline):
    p = make_pipeline()
    slow = p.request([("001_slow", "CREATE TABLE beside_t (id int);\nSELECT pg_sleep(30);\n")])
    env = {**os.environ, **p.settings_env}
    worker = subprocess.Popen([sys.executable, "-m", "bot.cli", "worker"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        start_run(p.rt, slow.id)
        with p.target() as conn:
            _wait_for(lambda: p.session(conn, f"guardian-req{slow.id}", running="pg_sleep"), 60,
                      "the apply to reach pg_sleep")
        planned = _analysing(p, "t_beside")
        p.rt.flow.enqueue("analyze", planned.id)
        _wait_for(lambda: p.store.get_request(planned.id).status is RequestStatus.AWAITING_APPROVAL, 60,
                  "the analysis")
        assert p.store.get_request(slow.id).status is RequestStatus.APPLYING  # the apply still holds its worker
        _wait_for(lambda: p.store.get_request(slow.id).status is RequestStatus.SUCCEEDED, 60, "the apply")
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=40)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(timeout=10)


def test_redis_flushed_under_a_running_apply_does_not_fail_it(make_pipeline):
    p = make_pipeline()
    req = p.request([("001_slow", "CREATE TABLE flushed_under (id int);\nSELECT pg_sleep(6);\n")])
    env = {**os.environ, **p.settings_env, "GUARDIAN_RECONCILE_EVERY_S": "0.5"}
    worker = subprocess.Popen([sys.executable, "-m", "bot.cli", "worker"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        start_run(p.rt, req.id)
        with p.target() as conn:
            _wait_for(lambda: p.session(conn, f"guardian-req{req.id}", running="pg_sleep"), 60,
                      "the apply to reach pg_sleep")
        p.redis.flushdb()  # RQ forgets the running job; its work horse rewrites its lease
        done = _wait_for(lambda: (r := p.store.get_request(req.id)).status in (RequestStatus.SUCCEEDED,
                                                                             RequestStatus.FAILED) and r, 90, "the run")
        assert done.status is RequestStatus.SUCCEEDED, done.error  # the reconciler left the live apply alone
        with p.target() as conn:
            assert conn.execute("SELECT to_regclass('flushed_under')").fetchone()[0] is not None
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=40)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(timeout=10)


def test_a_runtime_being_built_in_one_thread_does_not_hold_up_another_runtime(state_db_url, redis_url):
    """A worker's maintenance thread building its runtime (here: a store whose server never answers) must not
    block another runtime's first use — what a job process forked at that moment does. functools.cached_property
    (Python 3.11) shares one lock per property across instances: the forked job hung and its request stayed queued."""
    from bot.config import GuardianConfig, Settings
    import contextlib
    import socket
    import threading

    from bot.errors import StoreError
    from workers.runtime import Runtime

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # connections complete at TCP level; nothing ever answers
    try:
        stuck = Runtime(settings=Settings(database_url=f"postgresql://x@127.0.0.1:{silent.getsockname()[1]}/x",
                                          redis_url=redis_url), config=GuardianConfig())
        def build() -> None:
            with contextlib.suppress(StoreError):  # the pool gives up after its open timeout, long after the test
                stuck.flow  # flow -> store: blocks on the pool

        building = threading.Thread(target=build, daemon=True)
        building.start()
        time.sleep(0.5)
        assert building.is_alive(), "the first runtime should still be building its store"
        other = Runtime(settings=Settings(database_url=state_db_url, redis_url=redis_url), config=GuardianConfig())
        got = []
        use = threading.Thread(target=lambda: got.append(other.store.list_requests(limit=1)), daemon=True)
        use.start()
        use.join(timeout=5)
        assert got == [[]], "another runtime's first use waited for the one being built"
        other.close()
    finally:
        silent.close()
