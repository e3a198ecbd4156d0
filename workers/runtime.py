"""Per-process resources a job needs (settings, config, store, Slack client), built once and reused.

Jobs take ids only and reload state through these, so a retried job sees the current truth.

Usage::

    rt = runtime()
    request = rt.store.get_request(request_id)
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from slack_sdk import WebClient

from bot import redaction
from bot.config import GuardianConfig, Settings, load_config, load_settings
from bot.run import RUN, Pipeline
from bot.slack.notifier import Notifier
from bot.slack.outbound import ScrubbingWebClient
from bot.slack.retries import with_retries
from bot.store import Store

if TYPE_CHECKING:
    from redis import Redis

    from bot.flow import Flow

_lock = threading.Lock()
_current: "Runtime | None" = None
T = TypeVar("T")


class _built_once(Generic[T]):
    """Like functools.cached_property, but each instance builds under a lock of its own.

    Python 3.11's cached_property holds ONE lock per property for every instance. A worker's maintenance thread
    building its runtime's flow (a Slack client, a pool) while RQ forks a job process left that lock held forever
    in the job process, whose own runtime then hung on first use: the job never started and its request stayed
    queued (bench/chaos.py, a kill -9 of the work horse on a fresh worker). A per-instance lock is new in a job
    process, which builds a runtime of its own."""

    def __init__(self, build: Callable[[Any], T]) -> None:
        self.build, self.name, self.__doc__ = build, build.__name__, build.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        try:
            return instance.__dict__[self.name]
        except KeyError:
            pass
        with instance._building:
            if self.name not in instance.__dict__:
                instance.__dict__[self.name] = self.build(instance)
            return instance.__dict__[self.name]


@dataclass
class Runtime:
    settings: Settings
    config: GuardianConfig
    pipeline: Pipeline = RUN  # the run's steps in order (bot/run.py); tests run a request through their own
    _building: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False, compare=False)

    @_built_once
    def store(self) -> Store:
        self.settings.require("database_url")
        return Store(self.settings.database_url.get_secret_value())

    @_built_once
    def slack(self) -> WebClient | None:
        """The Web API client (scrubbing known secrets), or None when no bot token is configured (CLI-only use)."""
        if self.settings.slack_bot_token is None:
            return None
        return with_retries(ScrubbingWebClient(token=self.settings.slack_bot_token.get_secret_value(),
                                               base_url=self.settings.slack_api_url))  # 429s waited out

    @_built_once
    def notifier(self) -> Notifier:
        """Slack for the domain and the steps (bot/slack/notifier.py); a no-op without a bot token."""
        return Notifier(self.slack)

    @_built_once
    def redis(self) -> "Redis":
        from redis import Redis

        # a Redis that does not answer must not hold a step (or the outbox pump's transaction) for long
        return Redis.from_url(self.settings.redis_url.get_secret_value(), socket_connect_timeout=5)

    @_built_once
    def flow(self) -> "Flow":
        from bot.flow import Flow

        return Flow(self.settings, self.config, self.store, self.redis, self.notifier, dispatch=self.deliver)

    def deliver(self) -> int:
        """Hand committed job intents to RQ now (a pump pass; Redis being down leaves them for the worker's pump)."""
        from workers.enqueue import deliver

        return deliver(self.store, self.redis, pipeline=self.pipeline)

    def close(self) -> None:
        if "store" in self.__dict__:
            self.store.close()


def runtime() -> Runtime:
    """The process-wide runtime, loaded from the environment on first use."""
    global _current
    with _lock:
        if _current is None:
            settings = load_settings()
            _current = Runtime(settings=settings, config=load_config(settings.guardian_config))
            redaction.register_configured(settings, _current.config)
        return _current


def install(rt: Runtime | None) -> None:
    """Use ``rt`` for jobs in this process (an in-process worker in tests and `guardian dev`)."""
    global _current
    with _lock:
        if _current is not None and _current is not rt:
            _current.close()
        _current = rt
