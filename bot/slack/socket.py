"""`guardian socket`: the same Bolt app over Slack Socket Mode (no public URL needed).

Usage::

    run_socket(load_settings(), load_config())   # needs SLACK_APP_TOKEN (xapp-...) and SLACK_BOT_TOKEN
"""
from __future__ import annotations

import logging

from slack_bolt.adapter.socket_mode import SocketModeHandler

from bot.config import GuardianConfig, Settings
from bot.slack.app import build_app

logger = logging.getLogger(__name__)


def run_socket(settings: Settings, config: GuardianConfig) -> None:
    """Connect to Slack over Socket Mode and handle requests until interrupted."""
    settings.require("slack_app_token", "slack_bot_token")
    assert settings.slack_app_token is not None
    app = build_app(settings, config, socket_mode=True, verify_token=True)
    handler = SocketModeHandler(app, app_token=settings.slack_app_token.get_secret_value())
    logger.info("guardian socket: connecting to Slack over Socket Mode")
    try:
        handler.start()
    except KeyboardInterrupt:
        logger.info("guardian socket: interrupted, stopping")
    finally:
        handler.close()
