"""`GET /metrics` on `guardian serve`: the deployment's state in Prometheus text format.

Usage::

    metrics = Metrics(store, redis, environments=["staging", "production"])
    body, content_type = metrics.exposition(accept)    # what GET /metrics answers
    wsgi = metrics_endpoint(metrics, token=None)        # mounted by bot.slack.server at /metrics

Everything is read at scrape time from where the truth lives, so one scrape of any `guardian serve` covers
every process of the deployment, workers on other machines included: requests, steps and incidents from the
bot's PostgreSQL state (bot/store/stats.py), queues from Redis (RQ), and the counters processes add to
(bot/counters.py: Slack API errors, lock-timeout retries, reconciler recoveries) from their Redis hash. A
source that does not answer is reported as ``guardian_metrics_source_up{source=…} 0``; the rest still is.
"""
from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from bot.counters import COUNTERS, FAMILIES, LOCK_TIMEOUT_RETRIES, RECONCILER_RECOVERIES, SLACK_API_ERRORS
from bot.models import IncidentStatus, RequestStatus

if TYPE_CHECKING:
    from redis import Redis

    from bot.store import Store

log = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
# RQ queues the workers work (workers/enqueue.py QUEUE_NAMES; bot does not import workers, a test keeps them equal)
QUEUES = ("guardian", "guardian-analyze")
# seconds; steps range from an analysis of one file (well under a second) to a backup of a large database
STEP_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)
_COUNTER_HELP = {
    SLACK_API_ERRORS: "Slack Web API calls that failed, by method and Slack's error code (or the transport error)",
    LOCK_TIMEOUT_RETRIES: "Migration statements retried after a lock_timeout or deadlock on the target",
    RECONCILER_RECOVERIES: "Requests the reconciler moved on after their job was lost, by the state it found them in",
}


class GuardianCollector(Collector):
    """The guardian_* families, read from PostgreSQL and Redis at each collect()."""

    def __init__(self, store: "Store | None", redis: "Redis | None", environments: Sequence[str] = (),
                 version: str = "") -> None:
        self.store = store
        self.redis = redis
        self.environments = tuple(environments)
        self.version = version

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("guardian_metrics_source_up", "Whether this scrape could read the source (1) or not (0)",
                               labels=["source"])
        info = GaugeMetricFamily("guardian_build_info", "The running Guardian's version (always 1)", labels=["version"])
        info.add_metric([self.version], 1)
        yield info
        postgres_ok = yield from self._state()
        up.add_metric(["postgresql"], 1 if postgres_ok else 0)
        redis_ok = yield from self._redis()
        up.add_metric(["redis"], 1 if redis_ok else 0)
        yield up

    # ------------------------------------------------------------------ PostgreSQL: the bot's state
    def _state(self) -> Iterator[Metric]:
        from psycopg import Error as PgError
        from psycopg_pool import PoolTimeout

        from bot.errors import StoreError

        requests = GaugeMetricFamily("guardian_requests", "Migration requests by environment and state",
                                     labels=["environment", "state"])
        steps = HistogramMetricFamily("guardian_step_duration_seconds",
                                      "Duration of finished pipeline steps (analyze, backup, apply, verify, …) by "
                                      "step and outcome", labels=["step", "outcome"])
        incidents = GaugeMetricFamily("guardian_incidents", "Incidents by status", labels=["status"])
        open_ = GaugeMetricFamily("guardian_incidents_open", "Incidents not resolved (open, mitigating, mitigated)")
        outbox = GaugeMetricFamily("guardian_job_outbox_due",
                                   "Job intents due but not yet handed to Redis (grows while Redis is down)")
        outbox_age = GaugeMetricFamily("guardian_job_outbox_oldest_due_age_seconds",
                                       "Age of the oldest due job intent not yet handed to Redis (0 when none)")
        if self.store is None:
            return False
        try:
            stats = self.store.state_stats(STEP_BUCKETS)
        except (PgError, PoolTimeout, StoreError) as exc:
            log.warning("metrics: the bot's database did not answer (%s); state families left out", type(exc).__name__)
            return False
        environments = sorted({*self.environments, *(env for env, _ in stats.requests)})
        for env in environments:
            for state in RequestStatus:
                requests.add_metric([env, state.value], stats.requests.get((env, state.value), 0))
        for row in stats.steps:
            buckets = [(_le(b), n) for b, n in zip(STEP_BUCKETS, row.buckets)] + [("+Inf", row.count)]
            steps.add_metric([row.step, row.outcome], buckets, row.sum_s)
        for status in IncidentStatus:
            incidents.add_metric([status.value], stats.incidents.get(status.value, 0))
        open_.add_metric([], sum(n for s, n in stats.incidents.items() if s != IncidentStatus.RESOLVED.value))
        outbox.add_metric([], stats.unsent_intents)
        outbox_age.add_metric([], max(0.0, stats.oldest_unsent_age_s or 0.0))
        yield from (requests, steps, incidents, open_, outbox, outbox_age)
        return True

    # ------------------------------------------------------------------ Redis: queues and shared counters
    def _redis(self) -> Iterator[Metric]:
        from redis import RedisError

        depth = GaugeMetricFamily("guardian_queue_depth", "Jobs waiting on each RQ queue", labels=["queue"])
        age = GaugeMetricFamily("guardian_queue_oldest_job_age_seconds",
                                "Age of the oldest job waiting on each RQ queue (0 when empty)", labels=["queue"])
        running = GaugeMetricFamily("guardian_queue_running_jobs", "Jobs a worker is running, per RQ queue",
                                    labels=["queue"])
        failed = GaugeMetricFamily("guardian_queue_failed_jobs", "Jobs in each RQ queue's failed registry",
                                   labels=["queue"])
        counters = {family: CounterMetricFamily(f"guardian_{family}", _COUNTER_HELP[family], labels=list(labels))
                    for family, labels in FAMILIES.items()}
        try:
            redis = self.redis
            totals = COUNTERS.read(redis) if redis is not None else COUNTERS.read()
            if redis is not None:
                for name, (waiting, oldest, started, failures) in _queues(redis).items():
                    depth.add_metric([name], waiting)
                    age.add_metric([name], oldest)
                    running.add_metric([name], started)
                    failed.add_metric([name], failures)
        except (RedisError, OSError) as exc:
            log.warning("metrics: Redis did not answer (%s); queue and counter families left out", type(exc).__name__)
            return False
        for (family, labels), value in sorted(totals.items()):
            counters[family].add_metric(list(labels), value)
        if redis is not None:
            yield from (depth, age, running, failed)
        yield from counters.values()
        return redis is not None


def _le(bound: float) -> str:
    return repr(float(bound))


def _queues(redis: "Redis") -> dict[str, tuple[int, float, int, int]]:
    """queue -> (jobs waiting, age of the oldest in seconds, jobs running, failed jobs)."""
    from rq import Queue
    from rq.exceptions import NoSuchJobError
    from rq.job import Job

    out = {}
    now = datetime.now(timezone.utc)
    for name in QUEUES:
        queue = Queue(name, connection=redis)
        oldest = 0.0
        for job_id in queue.get_job_ids(0, 5):  # the head; a job deleted under us is skipped
            try:
                job = Job.fetch(job_id, connection=redis)
            except NoSuchJobError:
                continue
            if job.enqueued_at is not None:
                enqueued = job.enqueued_at if job.enqueued_at.tzinfo else job.enqueued_at.replace(tzinfo=timezone.utc)
                oldest = max(0.0, (now - enqueued).total_seconds())
                break
        out[name] = (queue.count, oldest, queue.started_job_registry.count, queue.failed_job_registry.count)
    return out


class Metrics:
    """A registry with Guardian's families and this process's own (CPU, memory, file descriptors, Python)."""

    def __init__(self, store: "Store | None", redis: "Redis | None", environments: Sequence[str] = ()) -> None:
        from bot.version import version

        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(GuardianCollector(store, redis, environments, version()))
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The body and its content type: Prometheus text 0.0.4 unless ``accept`` asks for OpenMetrics or text 1.0.0."""
        encode, content_type = choose_encoder(accept)
        return encode(self.registry), content_type


def metrics_endpoint(metrics: Metrics, token: str | None = None) -> Callable[..., Iterable[bytes]]:
    """The WSGI app of GET /metrics; with ``token`` (GUARDIAN_METRICS_TOKEN) it wants ``Authorization: Bearer <token>``."""
    expected = f"Bearer {token}".encode() if token else None

    def endpoint(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            return _reply(start_response, "405 Method Not Allowed", b"GET /metrics only\n")
        if expected is not None and not hmac.compare_digest(
                environ.get("HTTP_AUTHORIZATION", "").encode("latin-1", "replace"), expected):
            return _reply(start_response, "401 Unauthorized",
                          b"send Authorization: Bearer <GUARDIAN_METRICS_TOKEN>\n",
                          [("WWW-Authenticate", 'Bearer realm="guardian-metrics"')])
        started = time.monotonic()
        body, content_type = metrics.exposition(environ.get("HTTP_ACCEPT", ""))
        log.debug("metrics: scraped in %.3f s (%s bytes)", time.monotonic() - started, len(body))
        return _reply(start_response, "200 OK", body, content_type=content_type)

    return endpoint


def _reply(start_response: Callable[..., Any], status: str, body: bytes, headers: list[tuple[str, str]] | None = None,
           *, content_type: str = "text/plain; charset=utf-8") -> Iterable[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body))), *(headers or [])])
    return [body]
