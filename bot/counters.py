"""Counters every Guardian process adds to (Slack API errors, lock-timeout retries, reconciler recoveries), kept
in one Redis hash so that `GET /metrics` on any `guardian serve` reports the whole deployment's totals.

Usage::

    COUNTERS.connect_url(settings.redis_url.get_secret_value())   # once per process: serve, socket, worker
    COUNTERS.add(SLACK_API_ERRORS, "chat.postMessage", "not_in_channel")
    COUNTERS.read()   # -> {("slack_api_errors", ("chat.postMessage", "not_in_channel")): 3, …}

Workers run on any machine that reaches Redis, so a per-process registry (or prometheus_client's multiprocess
directory, one machine only) would miss theirs. Redis holds only these counters beside the queue; losing it
resets them, which Prometheus's rate() and increase() read as a counter reset. A count Redis could not take is
kept in the process and added with the next one that gets through; a counter never fails what it counts.
"""
from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis import Redis

log = logging.getLogger(__name__)

KEY = "guardian:metrics:counters"
# family -> its label names, in the order add() takes their values
SLACK_API_ERRORS = "slack_api_errors"
LOCK_TIMEOUT_RETRIES = "lock_timeout_retries"
RECONCILER_RECOVERIES = "reconciler_recoveries"
FAMILIES: dict[str, tuple[str, ...]] = {
    SLACK_API_ERRORS: ("method", "error"),
    LOCK_TIMEOUT_RETRIES: ("environment",),
    RECONCILER_RECOVERIES: ("state",),
}
_MAX_LABEL = 100  # label values come from Slack and our config; bound them
COUNT_TIMEOUT_S = 1.0


class SharedCounters:
    """Counter families in a Redis hash (field: the JSON list [family, *label values])."""

    def __init__(self) -> None:
        self._redis: Redis | None = None
        self._pending: Counter[str] = Counter()
        self._lock = threading.Lock()

    def connect(self, redis: "Redis | None") -> None:
        """Count into ``redis`` from now on (None: only in this process, as in a test without a server)."""
        with self._lock:
            self._redis = redis

    def connect_url(self, url: str) -> None:
        """Count into the Redis at ``url``, with a client of its own whose 1 s timeouts mean a Redis that hangs
        never holds up the step or the Slack call being counted."""
        from redis import Redis

        self.connect(Redis.from_url(url, socket_timeout=COUNT_TIMEOUT_S, socket_connect_timeout=COUNT_TIMEOUT_S))

    def add(self, family: str, *labels: str, n: int = 1) -> None:
        if len(labels) != len(FAMILIES[family]):
            raise ValueError(f"{family} takes {len(FAMILIES[family])} label value(s), got {len(labels)}")
        field = json.dumps([family, *(str(v)[:_MAX_LABEL] for v in labels)])
        with self._lock:
            self._pending[field] += n
            redis, pending = self._redis, dict(self._pending)
        if redis is None:
            return
        from redis import RedisError

        try:
            pipe = redis.pipeline(transaction=False)
            for key, count in pending.items():
                pipe.hincrby(KEY, key, count)
            pipe.execute()
        except (RedisError, OSError) as exc:
            log.debug("metrics: Redis did not take %s count(s) (%s); kept for the next one", len(pending),
                      type(exc).__name__)
            return
        with self._lock:
            self._pending.subtract(pending)
            self._pending = +self._pending  # drop the zeros

    def read(self, redis: "Redis | None" = None) -> dict[tuple[str, tuple[str, ...]], int]:
        """Every family's counts: Redis's (``redis`` or the connected one; RedisError propagates) plus this
        process's not yet stored."""
        totals: Counter[tuple[str, tuple[str, ...]]] = Counter()
        source = redis if redis is not None else self._redis
        raw = source.hgetall(KEY) if source is not None else {}
        with self._lock:
            pending = dict(self._pending)
        for field, value in [*raw.items(), *pending.items()]:
            try:
                family, *labels = json.loads(field)
            except (ValueError, TypeError):
                continue  # not ours
            if family in FAMILIES and len(labels) == len(FAMILIES[family]):
                totals[(family, tuple(labels))] += int(value)
        return dict(totals)


COUNTERS = SharedCounters()
