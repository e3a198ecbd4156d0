"""Buttons on request and incident cards: ack at once, then reply (behaviour arrives with the request flow)."""
from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App, Respond

from bot.config import GuardianConfig
from bot.slack.blocks import build_not_available_message
from bot.slack.ids import BUTTON_LABELS, ActionId

logger = logging.getLogger(__name__)


def register(app: App, config: GuardianConfig) -> None:
    """Attach one listener per ActionId."""

    def handle_card_action(ack: Ack, action: dict[str, Any], body: dict[str, Any], respond: Respond) -> None:
        ack()
        action_id = ActionId(action["action_id"])
        logger.info(
            "action %s value=%s user=%s", action_id.value, action.get("value"), body.get("user", {}).get("id")
        )
        respond(
            **build_not_available_message(BUTTON_LABELS[action_id]),
            response_type="ephemeral",
            replace_original=False,
        )

    for action_id in ActionId:
        app.action(action_id.value)(handle_card_action)
