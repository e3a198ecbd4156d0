"""`guardian socket`: the same Bolt app over Slack Socket Mode (no public URL needed).

Usage::

    run_socket(load_settings(), load_config())   # needs SLACK_APP_TOKEN (xapp-..., connections:write) and SLACK_BOT_TOKEN
"""
from __future__ import annotations

import logging
import threading

from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.config import GuardianConfig, Settings
from bot.errors import ConfigError
from bot.slack.app import build_app

logger = logging.getLogger(__name__)
APP_TOKEN_HINT = ("Socket Mode needs an app-level token (xapp-…) with the connections:write scope: "
                  "create one under Basic Information → App-Level Tokens")


class _ReportedByUs(logging.Filter):
    """slack_sdk logs a refused app token as a multi-line error before raising; run_socket says it in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Failed to retrieve WSS URL")


def run_socket(settings: Settings, config: GuardianConfig) -> None:
    """Connect to Slack over Socket Mode and handle requests until interrupted. A refused or unusable app
    token is one ConfigError line (what is wrong, what to do), not a traceback."""
    settings.require("slack_app_token", "slack_bot_token")
    assert settings.slack_app_token is not None
    app = build_app(settings, config, socket_mode=True, verify_token=True)
    from bot.counters import COUNTERS

    # its Slack API errors count in GET /metrics of the deployment's `guardian serve`, if any (bot/counters.py)
    COUNTERS.connect_url(settings.redis_url.get_secret_value())
    sdk_logger = logging.getLogger(__name__ + ".sdk")
    sdk_logger.addFilter(_ReportedByUs())
    handler = SocketModeHandler(app, app_token=settings.slack_app_token.get_secret_value(), logger=sdk_logger)
    logger.info("guardian socket: connecting to Slack over Socket Mode")
    try:
        connect(handler, settings)
        logger.info("guardian socket: connected; handling requests until interrupted")
        threading.Event().wait()
    except KeyboardInterrupt:
        logger.info("guardian socket: interrupted, stopping")
    finally:
        handler.close()


def connect(handler: SocketModeHandler, settings: Settings) -> None:
    """Open the Socket Mode connection; a refused token or unreachable Slack raises one-line ConfigError."""
    try:
        handler.connect()
    except SlackApiError as exc:
        error = exc.response.get("error", "unknown error")
        raise ConfigError(f"SLACK_APP_TOKEN was refused by the Slack API at {settings.slack_api_url} ({error}). "
                          f"{APP_TOKEN_HINT}", code="slack-app-token") from None
    except (SlackClientError, OSError) as exc:
        raise ConfigError(f"cannot open a Socket Mode connection through {settings.slack_api_url} "
                          f"({type(exc).__name__}); check the network and SLACK_API_URL", code="slack-unreachable") from None
