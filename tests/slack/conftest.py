"""Slack fixtures: the Web API stand-in, settings pointing at it, and `guardian serve` on a free port."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from bot.config import GuardianConfig, Settings
from bot.slack.sender import SlackSender
from bot.slack.server import EVENTS_PATH, make_server, stop_server
from bot.slack.standin import SlackStandIn

SIGNING_SECRET = "test-signing-secret-0123456789abcdef"


@pytest.fixture
def standin() -> Iterator[SlackStandIn]:
    with SlackStandIn() as running:
        yield running


@pytest.fixture
def slack_settings(standin: SlackStandIn) -> Settings:
    return Settings(
        slack_bot_token=standin.token,
        slack_signing_secret=SIGNING_SECRET,
        slack_app_token=None,
        slack_api_url=standin.url,
    )


@pytest.fixture
def guardian_config() -> GuardianConfig:
    return GuardianConfig()


@dataclass
class RunningServer:
    base_url: str
    port: int

    @property
    def events_url(self) -> str:
        return self.base_url + EVENTS_PATH


@pytest.fixture
def server(slack_settings: Settings, guardian_config: GuardianConfig) -> Iterator[RunningServer]:
    """`guardian serve` bound to 127.0.0.1 on a free port, serving in a background thread."""
    wsgi_server, port = make_server(slack_settings, guardian_config, "127.0.0.1", 0)
    thread = threading.Thread(target=wsgi_server.run, name="guardian-serve", daemon=True)
    thread.start()
    try:
        yield RunningServer(base_url=f"http://127.0.0.1:{port}", port=port)
    finally:
        stop_server(wsgi_server)
        thread.join(timeout=5)
        assert not thread.is_alive(), "guardian serve did not stop"


@pytest.fixture
def sender(server: RunningServer) -> SlackSender:
    return SlackSender(server.events_url, signing_secret=SIGNING_SECRET)
