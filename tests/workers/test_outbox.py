"""The job outbox: intents commit with the state change, a real `guardian worker`'s pump moves them to RQ
when Redis is back, and a row sent twice runs its step once."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from redis import Redis, RedisError
from rq import Queue

from bot.errors import TransitionConflict
from bot.models import RequestStatus
from workers.enqueue import QUEUE_NAME, deliver, send

ROOT = Path(__file__).resolve().parents[2]


class ThrowawayRedis:
    """A redis-server of this test's own on a free port, to stop and start at will (nothing persisted)."""

    def __init__(self, workdir: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(self.workdir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                if Redis.from_url(self.url, socket_connect_timeout=0.2).ping():
                    return
            except RedisError:  # not listening yet
                pass
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_intent_commits_with_the_transition_and_a_conflict_writes_none(make_pipeline):
    p = make_pipeline()
    req = p.request([("001_a", "CREATE TABLE intent_a (id int);")])
    p.store.transition(req.id, RequestStatus.APPROVED, RequestStatus.QUEUED, actor="test", enqueue="backup")
    with pytest.raises(TransitionConflict):  # a second click: the compare-and-set loses and writes no intent
        p.store.transition(req.id, RequestStatus.APPROVED, RequestStatus.QUEUED, actor="test", enqueue="backup")
    rows = p.store.list_outbox(request_id=req.id)
    assert [(r.step, r.attempt, r.sent_at) for r in rows] == [("backup", 1, None)]
    p.store.enqueue_job("backup", request_id=req.id)  # the same unsent intent again: kept once
    assert len(p.store.list_outbox(request_id=req.id)) == 1


def test_a_committed_intent_wakes_the_pump_and_old_sent_ones_of_finished_requests_are_pruned(make_pipeline):
    p = make_pipeline()
    req = p.request([("001_a", "CREATE TABLE woken (id int);")])
    assert p.store.wait_for_intents(0.01) is False  # listening now; nothing committed yet
    p.store.transition(req.id, RequestStatus.APPROVED, RequestStatus.QUEUED, actor="test", enqueue="backup")
    assert p.store.wait_for_intents(5) is True  # NOTIFY on commit: the pump runs at once, not at its next poll
    assert deliver(p.store, p.redis) == 1
    p.work()
    assert p.store.get_request(req.id).status is RequestStatus.SUCCEEDED
    assert p.store.prune_outbox() == 0  # sent a moment ago: kept
    with psycopg.connect(p.rt.settings.database_url.get_secret_value(), autocommit=True) as conn:
        conn.execute("UPDATE guardian_bot.job_outbox SET sent_at = sent_at - interval '8 days'")  # a week on
    live = p.request([("002_b", "CREATE TABLE woken_b (id int);")])
    p.store.transition(live.id, RequestStatus.APPROVED, RequestStatus.QUEUED, actor="test", enqueue="backup")
    assert p.store.prune_outbox() == 3  # backup, apply, verify of the finished request; the live intent stays
    assert [r.request_id for r in p.store.list_outbox()] == [live.id]


def test_a_row_sent_twice_runs_its_step_once(make_pipeline):
    p = make_pipeline()
    req = p.request([("001_a", "CREATE TABLE sent_twice (id int);")])
    p.store.transition(req.id, RequestStatus.APPROVED, RequestStatus.QUEUED, actor="test", enqueue="backup")
    row = p.store.list_outbox(request_id=req.id)[0]
    jid = send(p.redis, row)
    assert send(p.redis, row) == jid  # the pump died before marking it sent: sent again
    assert Queue(QUEUE_NAME, connection=p.redis).get_job_ids() == [jid]
    p.work()
    assert p.store.get_request(req.id).status is RequestStatus.SUCCEEDED
    assert send(p.redis, row) == jid  # even after its job finished, the row queues nothing more
    assert Queue(QUEUE_NAME, connection=p.redis).get_job_ids() == []
    assert [s.step for s in p.store.list_steps(req.id)] == ["backup", "apply", "verify"]


def test_the_worker_pump_sends_what_was_recorded_while_redis_was_down(make_pipeline, tmp_path):
    p = make_pipeline()
    queue = ThrowawayRedis(tmp_path)
    queue.start()
    env = {**os.environ, **p.settings_env, "REDIS_URL": queue.url}
    worker = subprocess.Popen([sys.executable, "-m", "bot.cli", "worker"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # awaiting approval: no reconciler pass of the worker may start it behind the test's back
        req = p.request([("001_a", "CREATE TABLE while_down (id int);")], status=RequestStatus.AWAITING_APPROVAL)
        _wait_for(lambda: len(Redis.from_url(queue.url).smembers("rq:workers")) == 2, 30,
                  "the worker and its analysis process to start")
        queue.stop()
        # what the approval flow commits: the run and its intent, with no Redis to talk to
        p.store.transition(req.id, RequestStatus.AWAITING_APPROVAL, RequestStatus.APPROVED, actor="test")
        p.store.transition(req.id, RequestStatus.APPROVED, RequestStatus.QUEUED, actor="test", enqueue="backup")
        redis = Redis.from_url(queue.url, socket_connect_timeout=0.5)
        assert deliver(p.store, redis) == 0
        time.sleep(1.5)  # the worker's pump passes meanwhile fail quietly; the intent stays
        assert p.store.get_request(req.id).status is RequestStatus.QUEUED
        assert [r.sent_at for r in p.store.list_outbox(request_id=req.id)] == [None]
        assert worker.poll() is None  # the worker rides out the outage

        queue.start()
        done = _wait_for(lambda: (r := p.store.get_request(req.id)).status in (RequestStatus.SUCCEEDED,
                                                                             RequestStatus.FAILED) and r, 60,
                         "the run after Redis came back")
        assert done.status is RequestStatus.SUCCEEDED, done.error
        assert all(r.sent_at is not None for r in p.store.list_outbox(request_id=req.id))
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(timeout=10)
        queue.stop()
