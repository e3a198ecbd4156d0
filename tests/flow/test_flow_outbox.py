"""Redis down at `/migrate plan` and at Approve: the person is told the truth, the intent is kept in
PostgreSQL (the job outbox), and the work runs once Redis is back — over real HTTP, a real redis-server."""
from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import psycopg
from redis import Redis, RedisError
from rq import Queue

from bot.models import RequestStatus as S
from bot.slack.ids import ActionId
from workers.enqueue import QUEUE_NAMES, deliver

from flow_harness import APPROVER_A
from workers.worker import GuardianSimpleWorker

ADD_COLUMN = "ALTER TABLE users ADD COLUMN nickname text;\n"


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


def _work(redis: Redis) -> None:
    GuardianSimpleWorker([Queue(name, connection=redis) for name in QUEUE_NAMES], connection=redis).work(burst=True)


def test_redis_down_at_plan_and_at_approve_says_the_truth_and_runs_when_it_is_back(harness, tmp_path):
    queue = ThrowawayRedis(tmp_path)
    queue.start()
    redis = Redis.from_url(queue.url, socket_connect_timeout=0.5)
    harness.flow._dispatch = lambda: deliver(harness.store, redis)  # the bot's job queue is this server
    harness.add_migration("20240101000000_add_nickname", ADD_COLUMN)
    try:
        queue.stop()
        sent, reply = harness.command("plan staging pending")
        texts = harness.replies(reply)
        assert any("opened on staging; analysing" in t for t in texts), texts  # recorded, and it will be
        assert not any("went wrong" in t or "nothing was changed" in t for t in texts), texts
        rid = harness.latest_request_id()
        assert harness.store.get_request(rid).status is S.ANALYZING
        assert [(j.step, j.sent_at) for j in harness.store.list_outbox(request_id=rid)] == [("analyze", None)]
        assert deliver(harness.store, redis) == 0  # the pump tolerates the outage; the intent stays

        queue.start()  # back, and empty: nothing had reached it
        assert deliver(harness.store, redis) == 1
        _work(redis)
        assert harness.store.get_request(rid).status is S.AWAITING_APPROVAL

        queue.stop()
        _, reply = harness.click(ActionId.APPROVE.value, rid, APPROVER_A)
        texts = harness.replies(reply)
        assert any(f"You approved request #{rid}" in t for t in texts), texts
        assert not any("nothing was changed" in t or "went wrong" in t for t in texts), texts
        assert harness.store.get_request(rid).status is S.QUEUED  # the run is recorded with its intent
        unsent = harness.store.list_outbox(unsent_only=True, request_id=rid)
        assert [(j.step, j.attempt) for j in unsent] == [("backup", 1)]

        queue.start()
        assert deliver(harness.store, redis) == 1
        assert deliver(harness.store, redis) == 0  # each intent is sent once
        _work(redis)
        done = harness.store.get_request(rid)
        assert done.status is S.SUCCEEDED, done.error
        with psycopg.connect(harness.targets["staging"]) as conn:
            names = [r[0] for r in conn.execute("SELECT migration_name FROM _prisma_migrations WHERE finished_at "
                                                "IS NOT NULL").fetchall()]
        assert names == ["20240101000000_add_nickname"]
        assert [j.step for j in harness.store.list_outbox(request_id=rid)] == ["analyze", "backup", "apply", "verify"]
        assert not harness.store.list_outbox(unsent_only=True)
    finally:
        redis.close()
        queue.stop()
