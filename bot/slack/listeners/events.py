"""Events API callbacks we subscribe to (message.channels, reaction_added); acknowledged, ignored for now."""
from __future__ import annotations

import logging
from typing import Any

from slack_bolt import App

from bot.config import GuardianConfig

logger = logging.getLogger(__name__)


def register(app: App, config: GuardianConfig) -> None:
    """Attach the event listeners (Bolt acks events itself; an unhandled event would answer 404)."""

    def handle_message_event(event: dict[str, Any]) -> None:
        logger.debug("message event channel=%s ts=%s", event.get("channel"), event.get("ts"))

    def handle_reaction_added_event(event: dict[str, Any]) -> None:
        logger.debug("reaction_added %s on %s", event.get("reaction"), event.get("item", {}).get("ts"))

    app.event("message")(handle_message_event)
    app.event("reaction_added")(handle_reaction_added_event)
