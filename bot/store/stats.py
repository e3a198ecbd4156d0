"""Counts of the bot's state for `GET /metrics`: requests by state, step durations, incidents, unsent job intents."""
from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel

from bot.store.base import StoreBase

T = TypeVar("T")

SCRAPE_TIMEOUT_S = 3.0  # Prometheus gives a scrape 10 s by default: answer (or give up) well within it


class StepDurations(BaseModel, frozen=True):
    """Finished steps of one (step, outcome): cumulative counts at each bound (seconds), their count and sum."""

    step: str
    outcome: str
    buckets: list[int]
    count: int
    sum_s: float


class StateStats(BaseModel, frozen=True):
    requests: dict[tuple[str, str], int]          # (environment, state) -> requests
    steps: list[StepDurations]
    incidents: dict[str, int]                     # status -> incidents
    unsent_intents: int                           # due job intents not yet handed to Redis
    oldest_unsent_age_s: float | None


def _fail_fast(method: Callable[..., T]) -> Callable[..., T]:
    """Not retried through a lost connection (StoreBase retries other calls for 15 s): a scrape reports the
    database as down at once instead of outliving Prometheus's timeout."""

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> T:
        return method(*args, **kwargs)

    return call


class StatsStore(StoreBase):
    """Read-only aggregates; every query is indexed or bounded by the (small) tables it counts."""

    @_fail_fast
    def state_stats(self, bounds_s: Sequence[float]) -> StateStats:
        """Counts for a scrape; step durations bucketed at ``bounds_s`` (ascending seconds, without +Inf)."""
        # width_bucket over integer milliseconds (5x faster than a FILTER per bound on 80,000 steps, bench/metrics.py):
        # ms <= bound  <=>  ms < bound + 1, and width_bucket(ms, thresholds) <= k  <=>  ms < thresholds[k]
        thresholds = [int(round(b * 1000)) + 1 for b in bounds_s]
        with self._pool.connection(timeout=SCRAPE_TIMEOUT_S) as conn:
            with conn.transaction():
                conn.execute("SET LOCAL statement_timeout = '5s'")
                requests = {(r["environment"], r["status"]): r["n"] for r in conn.execute(
                    "SELECT environment, status, count(*) AS n FROM guardian_bot.requests GROUP BY 1, 2")}
                groups: dict[tuple[str, str], list[int]] = {}
                sums: dict[tuple[str, str], int] = {}
                for r in conn.execute(
                        """SELECT step, status, width_bucket(ms, %s::bigint[]) AS b, count(*) AS n, sum(ms) AS total
                           FROM (SELECT step, status,
                                        ceil(coalesce(duration_ms,
                                                      extract(epoch FROM finished_at - started_at) * 1000))::bigint AS ms
                                 FROM guardian_bot.steps WHERE finished_at IS NOT NULL) s
                           GROUP BY 1, 2, 3""", (thresholds,)):
                    key = (r["step"], r["status"])
                    groups.setdefault(key, [0] * (len(bounds_s) + 1))[r["b"]] += r["n"]
                    sums[key] = sums.get(key, 0) + int(r["total"])
                steps = []
                for (step, outcome), counts in sorted(groups.items()):
                    cumulative = [sum(counts[: k + 1]) for k in range(len(bounds_s))]
                    steps.append(StepDurations(step=step, outcome=outcome, buckets=cumulative, count=sum(counts),
                                               sum_s=sums[(step, outcome)] / 1000.0))
                incidents = {r["status"]: r["n"] for r in conn.execute(
                    "SELECT status, count(*) AS n FROM guardian_bot.incidents GROUP BY 1")}
                outbox = conn.execute(
                    """SELECT count(*) AS n,
                              extract(epoch FROM now() - min(coalesce(run_at, created_at)))::float8 AS age
                       FROM guardian_bot.job_outbox
                       WHERE sent_at IS NULL AND (run_at IS NULL OR run_at <= now())""").fetchone()
        return StateStats(requests=requests, steps=steps, incidents=incidents, unsent_intents=outbox["n"],
                          oldest_unsent_age_s=outbox["age"])
