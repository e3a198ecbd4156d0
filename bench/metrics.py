"""Scrape time of `GET /metrics` over a deployment's worth of history: how long one scrape takes to read the bot's
PostgreSQL state and Redis, against Prometheus's default scrape timeout.

Usage::

    .venv/bin/python bench/metrics.py              # --requests 20000 --jobs 500 --runs 20

Seeds a throwaway state database with --requests requests over three environments (each with analyze, backup,
apply and verify steps of varied durations, one in fifty failed with an incident), puts --jobs jobs on the
`guardian` queue of a reserved Redis database and some shared counters, then times --runs scrapes over real HTTP
to `guardian serve`'s WSGI app behind waitress (the endpoint Prometheus calls). Prints median, p95 and max, the
body's size and series count, and the ratio of p95 to the baseline, Prometheus's default scrape_timeout (10 s).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
import waitress  # noqa: E402
from redis import Redis  # noqa: E402
from rq import Queue  # noqa: E402

from bench import redis_db  # noqa: E402
from bot.counters import COUNTERS, LOCK_TIMEOUT_RETRIES, SLACK_API_ERRORS  # noqa: E402
from bot.local_services import create_database, drop_database, ensure_postgres, ensure_redis  # noqa: E402
from bot.metrics import Metrics, metrics_endpoint  # noqa: E402
from bot.schema import upgrade  # noqa: E402
from bot.slack.server import stop_server  # noqa: E402
from bot.store import Store  # noqa: E402

BASELINE_S = 10.0  # Prometheus's default scrape_timeout
ENVIRONMENTS = ("staging", "production", "tenants")


def seed(url: str, requests: int) -> None:
    """Requests, their steps and incidents, written in bulk (a bench's fixture, not the product's path)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """INSERT INTO guardian_bot.requests (environment, requester, status, created_at, updated_at)
               SELECT (ARRAY['staging','production','tenants'])[1 + g %% 3], 'U0BENCH',
                      CASE WHEN g %% 50 = 0 THEN 'failed' WHEN g %% 97 = 0 THEN 'awaiting_approval' ELSE 'succeeded' END,
                      now() - (g || ' minutes')::interval, now()
               FROM generate_series(1, %s) g""", (requests,))
        conn.execute(
            """INSERT INTO guardian_bot.steps (request_id, step, status, started_at, finished_at, duration_ms)
               SELECT r.id, s.step,
                      CASE WHEN r.status = 'failed' AND s.step = 'apply' THEN 'failed' ELSE 'succeeded' END,
                      r.created_at, r.created_at + make_interval(secs => s.scale * (1 + r.id % 17)),
                      (1000 * s.scale * (1 + r.id % 17))::int
               FROM guardian_bot.requests r
               CROSS JOIN (VALUES ('analyze', 0.2), ('backup', 3.0), ('apply', 1.5), ('verify', 0.4)) s(step, scale)
               WHERE r.status IN ('succeeded', 'failed')""")
        conn.execute(
            """INSERT INTO guardian_bot.incidents (request_id, status, opened_by)
               SELECT id, CASE WHEN id % 7 = 0 THEN 'open' ELSE 'resolved' END, 'guardian'
               FROM guardian_bot.requests WHERE status = 'failed'""")
        conn.execute("ANALYZE")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--jobs", type=int, default=500, help="jobs waiting on the guardian queue")
    parser.add_argument("--runs", type=int, default=20, help="scrapes timed")
    args = parser.parse_args()

    workdir = Path(tempfile.gettempdir()) / "guardian-bench"
    admin = ensure_postgres(None, workdir)
    redis_url = redis_db.reserve(ensure_redis(None, workdir))
    name, url = create_database(admin, "guardian_bench_metrics")
    server = None
    try:
        upgrade(url)
        started = time.monotonic()
        seed(url, args.requests)
        redis = Redis.from_url(redis_url)
        queue = Queue("guardian", connection=redis)
        for _ in range(args.jobs):
            queue.enqueue("bot.schema.schema_files")
        COUNTERS.connect_url(redis_url)
        for i in range(200):
            COUNTERS.add(SLACK_API_ERRORS, "chat.postMessage", ("ratelimited", "not_in_channel")[i % 2])
            COUNTERS.add(LOCK_TIMEOUT_RETRIES, ENVIRONMENTS[i % 3])
        with psycopg.connect(url) as conn:
            steps = conn.execute("SELECT count(*) FROM guardian_bot.steps").fetchone()[0]
        print(f"GET /metrics over {args.requests} requests ({steps} steps) in {len(ENVIRONMENTS)} environments, "
              f"{args.jobs} queued jobs; seeded in {time.monotonic() - started:.1f} s")

        store = Store(url, min_size=0, max_size=2)
        metrics = Metrics(store, Redis.from_url(redis_url, socket_timeout=3), ENVIRONMENTS)
        server = waitress.create_server(metrics_endpoint(metrics), host="127.0.0.1", port=0)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        endpoint = f"http://127.0.0.1:{server.effective_port}/metrics"
        times, body = [], b""
        for _ in range(args.runs + 1):
            clock = time.perf_counter()
            with urllib.request.urlopen(endpoint, timeout=BASELINE_S) as resp:
                body = resp.read()
            times.append(time.perf_counter() - clock)
        times = times[1:]  # the first opens the pool's connection
        series = sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))
        p95 = sorted(times)[max(0, int(len(times) * 0.95) - 1)]
        print(f"  {args.runs} scrapes: median {statistics.median(times) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms, "
              f"max {max(times) * 1000:.1f} ms; body {len(body) / 1024:.1f} KiB, {series} series")
        print(f"  baseline: Prometheus's default scrape_timeout {BASELINE_S:.0f} s; p95 ratio {p95 / BASELINE_S:.4f}")
        store.close()
    finally:
        if server is not None:
            stop_server(server)
        COUNTERS.connect(None)
        drop_database(admin, name)
        redis_db.release(redis_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
