"""Slack's Web API rate limits for the stand-in: a token bucket per method tier, chat.postMessage per channel.

Usage::

    limits = RateLimits()                        # Slack's windows: Tier 3 = 50 a minute, posts 1 a second
    limits = RateLimits(window=6.0)              # tests: the same counts in a tenth of the time
    wait = limits.take("chat.postMessage", "C1") # 0.0, or seconds until Slack would accept it (-> 429)
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

# docs.slack.dev "Rate limits": Tier 1 1+/min, Tier 2 20+/min, Tier 3 50+/min, Tier 4 100+/min
TIERS = {1: 1, 2: 20, 3: 50, 4: 100}
METHOD_TIERS = {
    "api.test": 4,
    "auth.test": 4,
    "chat.update": 3,
    "chat.postEphemeral": 4,
    "chat.getPermalink": 4,
    "views.open": 4,
    "views.update": 4,
    "usergroups.users.list": 2,
    "users.info": 4,
    "conversations.replies": 3,
    "conversations.history": 3,
    "reactions.add": 3,
    "files.getUploadURLExternal": 4,
    "files.completeUploadExternal": 4,
}
POST_METHOD = "chat.postMessage"  # special: about one message a second per channel, short bursts allowed
POST_BURST = 10
DEFAULT_TIER = 3


@dataclass
class _Bucket:
    capacity: float
    per_second: float
    tokens: float
    at: float

    def take(self, now: float) -> float:
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.per_second)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.per_second


class RateLimits:
    """Buckets per (method) and, for chat.postMessage, per channel.

    ``window`` is the length of Slack's minute (60 s): a test may shorten it to make the same counts pass
    faster, but there is no way to switch the limits off.
    """

    def __init__(self, window: float = 60.0, post_burst: int = POST_BURST) -> None:
        if not window > 0:
            raise ValueError("the rate-limit window must be positive; limits cannot be switched off")
        self.window = float(window)
        self.post_burst = post_burst
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, method: str, channel: str | None = None) -> float:
        """Spend one call of ``method`` now: 0.0 when allowed, else the seconds until it would be."""
        if method == POST_METHOD:
            key, capacity, per_second = (method, channel or ""), float(self.post_burst), 60.0 / self.window
        else:
            per_minute = TIERS[METHOD_TIERS.get(method, DEFAULT_TIER)]
            key, capacity, per_second = (method, ""), float(per_minute), per_minute / self.window
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(capacity, per_second, capacity, now)
            return bucket.take(now)


def retry_after(wait: float) -> int:
    """The Retry-After header's value: whole seconds, at least one (Slack never says 0)."""
    return max(1, math.ceil(wait))
