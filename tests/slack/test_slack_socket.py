"""`guardian socket` against the stand-in: an app token Slack refuses is one clear line, never a traceback."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.slack.standin import DEFAULT_APP_TOKEN


def guardian_socket(standin, app_token: str, tmp_path: Path) -> subprocess.CompletedProcess:
    config = tmp_path / "guardian.toml"
    config.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DATABASE_URL", "REDIS_URL"))}
    env.update(SLACK_API_URL=standin.url, SLACK_BOT_TOKEN=standin.token, SLACK_APP_TOKEN=app_token,
               GUARDIAN_CONFIG=str(config))
    return subprocess.run([sys.executable, "-m", "bot.cli", "socket"], env=env, capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)


@pytest.mark.parametrize(("token", "why"), [
    ("xapp-1-not-a-real-token", "invalid_auth"),
    ("xoxb-guardian-standin", "not_allowed_token_type"),  # the bot token where the app-level one goes
    ("xapp-without-connections-write", "missing_scope"),
])
def test_a_refused_app_token_is_one_line_naming_connections_write(standin, tmp_path, token, why):
    standin.app_tokens["xapp-without-connections-write"] = {"authorizations:read"}
    done = guardian_socket(standin, token, tmp_path)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr and "SlackApiError" not in done.stderr, done.stderr
    assert "Failed to retrieve WSS URL" not in done.stderr  # slack_sdk's own multi-line report is not repeated
    told = [line for line in done.stderr.splitlines() if line.startswith("guardian:")]
    assert len(told) == 1 and " ERROR " not in done.stderr, done.stderr  # the rest are INFO/WARNING log lines
    assert told[0].startswith("guardian: SLACK_APP_TOKEN was refused") and why in told[0]
    assert "connections:write" in told[0] and token not in told[0]


def test_the_standin_opens_connections_only_for_app_tokens_with_connections_write(standin):
    client = WebClient(base_url=standin.url)
    assert client.apps_connections_open(app_token=DEFAULT_APP_TOKEN)["url"].startswith("ws://")
    with pytest.raises(SlackApiError) as caught:
        WebClient(token=DEFAULT_APP_TOKEN, base_url=standin.url).chat_postMessage(channel="C1", text="x")
    assert caught.value.response["error"] == "not_allowed_token_type"
