"""Per-process resources a job needs (settings, config, store, Slack client), built once and reused.

Jobs take ids only and reload state through these, so a retried job sees the current truth.

Usage::

    rt = runtime()
    request = rt.store.get_request(request_id)
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cached_property

from typing import TYPE_CHECKING

from slack_sdk import WebClient

from bot import redaction
from bot.config import GuardianConfig, Settings, load_config, load_settings
from bot.run import RUN, Pipeline
from bot.slack.outbound import ScrubbingWebClient
from bot.slack.retries import with_retries
from bot.store import Store

if TYPE_CHECKING:
    from redis import Redis

    from bot.flow import Flow

_lock = threading.Lock()
_current: "Runtime | None" = None


@dataclass
class Runtime:
    settings: Settings
    config: GuardianConfig
    pipeline: Pipeline = RUN  # the run's steps in order (bot/run.py); tests run a request through their own

    @cached_property
    def store(self) -> Store:
        self.settings.require("database_url")
        return Store(self.settings.database_url.get_secret_value())

    @cached_property
    def slack(self) -> WebClient | None:
        """The Web API client (scrubbing known secrets), or None when no bot token is configured (CLI-only use)."""
        if self.settings.slack_bot_token is None:
            return None
        return with_retries(ScrubbingWebClient(token=self.settings.slack_bot_token.get_secret_value(),
                                               base_url=self.settings.slack_api_url))  # 429s waited out

    @cached_property
    def redis(self) -> "Redis":
        from redis import Redis

        # a Redis that does not answer must not hold a step (or the outbox pump's transaction) for long
        return Redis.from_url(self.settings.redis_url.get_secret_value(), socket_connect_timeout=5)

    @cached_property
    def flow(self) -> "Flow":
        from bot.flow import Flow

        return Flow(self.settings, self.config, self.store, self.redis, self.slack, dispatch=self.deliver)

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
