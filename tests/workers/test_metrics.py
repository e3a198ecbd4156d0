"""GET /metrics over real HTTP to a running `guardian serve`, on real PostgreSQL and Redis: every family the
issue lists is there, and its values move when requests run through a real (in-process RQ) worker."""
from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from slack_sdk.errors import SlackApiError

from bot.config import Settings
from bot.counters import COUNTERS
from bot.metrics import QUEUES
from bot.models import RequestStatus
from bot.slack.outbound import ScrubbingWebClient
from bot.slack.server import make_server, stop_server
from bot.slack.standin import SlackStandIn
from workers.enqueue import QUEUE_NAMES, deliver
from workers.pipeline import start_run
from workers.reconciler import reconcile

REPO = Path(__file__).resolve().parents[2]
SIGNING_SECRET = "metrics-test-signing-secret"
FAMILIES = {
    "guardian_requests": "gauge",
    "guardian_step_duration_seconds": "histogram",
    "guardian_lock_timeout_retries": "counter",
    "guardian_queue_depth": "gauge",
    "guardian_queue_oldest_job_age_seconds": "gauge",
    "guardian_reconciler_recoveries": "counter",
    "guardian_slack_api_errors": "counter",
    "guardian_incidents_open": "gauge",
    "guardian_incidents": "gauge",
    "guardian_job_outbox_due": "gauge",
    "guardian_build_info": "gauge",
    "guardian_metrics_source_up": "gauge",
}


@pytest.fixture
def standin() -> Iterator[SlackStandIn]:
    """Slack's per-minute limits over 5 s: this test posts three requests' threads in a few seconds, and the
    helper that starts their threads (like a person's client) does not wait out a 429."""
    with SlackStandIn(rate_window=5.0) as running:
        yield running


class Scrape:
    def __init__(self, text: str) -> None:
        self.text = text
        self.types = {}
        self.samples: dict[tuple[str, frozenset], float] = {}
        for family in text_string_to_metric_families(text):
            self.types[family.name] = family.type
            for s in family.samples:
                self.samples[(s.name, frozenset(s.labels.items()))] = s.value

    def value(self, name: str, **labels: str) -> float:
        return self.samples.get((name, frozenset(labels.items())), 0.0)


@contextmanager
def running_server(p, *, token: str | None = None) -> Iterator[str]:
    settings = Settings(database_url=p.settings_env["DATABASE_URL"], redis_url=p.settings_env["REDIS_URL"],
                        slack_bot_token=p.standin.token, slack_signing_secret=SIGNING_SECRET,
                        slack_api_url=p.standin.url, guardian_metrics_token=token)
    server, port = make_server(settings, p.rt.config, "127.0.0.1", 0)
    thread = threading.Thread(target=server.run, name="guardian-serve", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_server(server)
        thread.join(timeout=5)


def scrape(base: str, **headers: str) -> Scrape:
    with urllib.request.urlopen(urllib.request.Request(base + "/metrics", headers=headers), timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return Scrape(resp.read().decode())


def test_metrics_families_move_when_requests_run(make_pipeline):
    p = make_pipeline(lock_timeout="300ms", apply_retries=1)
    with p.target() as conn:
        conn.execute("CREATE TABLE hot (id bigint PRIMARY KEY, v int)")
    with running_server(p) as base:
        before = scrape(base)
        for name, kind in FAMILIES.items():
            assert before.types.get(name) == kind, f"{name} missing or not a {kind}:\n{before.text}"
        assert before.value("guardian_metrics_source_up", source="postgresql") == 1
        assert before.value("guardian_metrics_source_up", source="redis") == 1
        # every state of every configured environment is there, at 0 before anything ran
        assert ("guardian_requests", frozenset({("environment", "staging"), ("state", "succeeded")})) in before.samples
        assert before.value("guardian_requests", environment="staging", state="succeeded") == 0
        assert before.value("guardian_queue_depth", queue="guardian") == 0

        ok = p.request([("001_ok", "CREATE TABLE metrics_ok (id int);")])
        start_run(p.rt, ok.id)
        deliver(p.store, p.redis)
        time.sleep(0.3)
        queued = scrape(base)
        assert queued.value("guardian_requests", environment="staging", state="queued") == 1
        assert queued.value("guardian_queue_depth", queue="guardian") == 1
        assert queued.value("guardian_queue_oldest_job_age_seconds", queue="guardian") >= 0.3

        lost = p.request([("002_lost", "CREATE TABLE metrics_lost (id int);")])  # approved; its starter died
        assert reconcile(p.rt, redis=p.redis, min_age_s=0) == [f"request {lost.id}: approved but never queued: started"]

        p.work()
        assert p.store.get_request(ok.id).status is RequestStatus.SUCCEEDED
        assert p.store.get_request(lost.id).status is RequestStatus.SUCCEEDED

        with pytest.raises(SlackApiError):  # a Web API call Slack refuses, made by this process
            ScrubbingWebClient(token=p.standin.token, base_url=p.standin.url).conversations_history(
                channel="C0NOTJOINED")
        blocked = p.request([("003_blocked", "ALTER TABLE hot ADD COLUMN c int;")])
        start_run(p.rt, blocked.id)
        blocker = psycopg.connect(p.target_url, application_name="metrics-blocker")
        blocker.execute("SELECT count(*) FROM hot").fetchone()  # holds ACCESS SHARE: the ALTER times out twice
        try:
            p.work()
        finally:
            blocker.rollback()
            blocker.close()
        assert p.store.get_request(blocked.id).status is RequestStatus.FAILED

        after = scrape(base)
    assert after.value("guardian_requests", environment="staging", state="succeeded") == 2
    assert after.value("guardian_requests", environment="staging", state="failed") == 1
    assert after.value("guardian_requests", environment="staging", state="queued") == 0
    assert after.value("guardian_queue_depth", queue="guardian") == 0
    assert after.value("guardian_queue_oldest_job_age_seconds", queue="guardian") == 0
    for step, outcome, n in (("backup", "succeeded", 3), ("apply", "succeeded", 2), ("apply", "failed", 1),
                             ("verify", "succeeded", 2)):
        count = after.value("guardian_step_duration_seconds_count", step=step, outcome=outcome)
        assert count == before.value("guardian_step_duration_seconds_count", step=step, outcome=outcome) + n
        assert after.value("guardian_step_duration_seconds_bucket", step=step, outcome=outcome, le="+Inf") == count
        assert after.value("guardian_step_duration_seconds_sum", step=step, outcome=outcome) > 0
    # the failed apply waited 300 ms twice: its bucket at 0.25 s does not hold it, the one at 0.5 s may not either
    assert after.value("guardian_step_duration_seconds_bucket", step="apply", outcome="failed", le="0.25") == 0
    assert after.value("guardian_lock_timeout_retries_total", environment="staging") == 1
    assert after.value("guardian_reconciler_recoveries_total", state="approved") == 1
    assert after.value("guardian_slack_api_errors_total", method="conversations.history", error="not_in_channel") >= 1
    assert after.value("guardian_incidents_open") == before.value("guardian_incidents_open") + 1
    assert after.value("guardian_incidents", status="open") == before.value("guardian_incidents", status="open") + 1

    # the sample Grafana dashboard asks only for series this scrape has
    dashboard = json.loads((REPO / "docs" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    asked = {name for e in exprs for name in re.findall(r"\b((?:guardian|process)_[a-z_]+)\b", e)}
    have = {name for name, _ in after.samples}
    assert asked and asked <= have, asked - have


def test_metrics_token_and_a_source_that_is_down(make_pipeline):
    p = make_pipeline()
    with running_server(p, token="scrape-token-123") as base:
        with pytest.raises(urllib.error.HTTPError) as refused:
            scrape(base)
        assert refused.value.code == 401
        with pytest.raises(urllib.error.HTTPError):
            scrape(base, Authorization="Bearer wrong")
        ok = scrape(base, Authorization="Bearer scrape-token-123")
        assert ok.value("guardian_metrics_source_up", source="redis") == 1
        assert "scrape-token-123" not in ok.text
    # Redis gone: the state families are still served, the queue families are left out and say so
    p.settings_env["REDIS_URL"] = "redis://127.0.0.1:1/0"
    with running_server(p) as base:
        down = scrape(base)
    assert down.value("guardian_metrics_source_up", source="redis") == 0
    assert down.value("guardian_metrics_source_up", source="postgresql") == 1
    assert down.types.get("guardian_requests") == "gauge" and "guardian_queue_depth" not in down.types


def test_queue_names_match_the_workers():
    assert QUEUES == QUEUE_NAMES


def test_counts_redis_refused_are_kept_and_added_later(redis_url):
    from redis import Redis

    from bot.counters import KEY, LOCK_TIMEOUT_RETRIES, SharedCounters

    counters = SharedCounters()
    counters.connect(Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5))
    counters.add(LOCK_TIMEOUT_RETRIES, "prod")  # Redis refused: kept in the process, still read
    assert counters.read(Redis.from_url(redis_url)) == {("lock_timeout_retries", ("prod",)): 1}
    live = Redis.from_url(redis_url)
    counters.connect(live)
    counters.add(LOCK_TIMEOUT_RETRIES, "prod")
    assert live.hgetall(KEY) == {b'["lock_timeout_retries", "prod"]': b"2"}
    assert counters.read() == {("lock_timeout_retries", ("prod",)): 2}
    with pytest.raises(ValueError):
        counters.add(LOCK_TIMEOUT_RETRIES, "prod", "extra")
    assert COUNTERS is not counters


def test_step_buckets_hold_durations_at_or_below_their_bound(store, state_db_url):
    """Prometheus's le is <=: a step of exactly 1 s is in le="1.0"; a step without duration_ms is timed from its
    timestamps; buckets are cumulative and +Inf holds every step."""
    from bot.store import NewMigration

    req = store.create_request("staging", "U0BUCKETS", [NewMigration(name="001_a", sql="SELECT 1;")])
    with psycopg.connect(state_db_url, autocommit=True) as conn:
        for ms in (100, 101, 1000, 1001, 2500, 9_000_000):
            conn.execute("""INSERT INTO guardian_bot.steps (request_id, step, status, finished_at, duration_ms)
                            VALUES (%s, 'apply', 'succeeded', now(), %s)""", (req.id, ms))
        conn.execute("""INSERT INTO guardian_bot.steps (request_id, step, status, started_at, finished_at)
                        VALUES (%s, 'apply', 'succeeded', now() - interval '2.4 s', now())""", (req.id,))
        conn.execute("""INSERT INTO guardian_bot.steps (request_id, step, status) VALUES (%s, 'verify', 'running')""",
                     (req.id,))
    stats = store.state_stats((0.1, 1.0, 2.5))
    (apply,) = stats.steps  # the running verify is not a finished step
    assert (apply.step, apply.outcome) == ("apply", "succeeded")
    assert apply.buckets == [1, 3, 6] and apply.count == 7
    assert abs(apply.sum_s - (0.1 + 0.101 + 1.0 + 1.001 + 2.5 + 9000.0 + 2.4)) < 0.01
