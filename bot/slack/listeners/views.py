"""Modal submissions: ack at once (closing or erroring the modal); behaviour arrives with `/migrate sql`."""
from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App

from bot.config import GuardianConfig
from bot.slack.ids import BlockId, CallbackId

logger = logging.getLogger(__name__)


def register(app: App, config: GuardianConfig) -> None:
    """Attach the modal submission listeners."""

    def handle_sql_request_view(ack: Ack, body: dict[str, Any]) -> None:
        ack(response_action="errors", errors={BlockId.SQL_INPUT.value: "Pasted SQL is not available in this version yet."})
        logger.info("view %s submitted user=%s", CallbackId.SQL_REQUEST.value, body.get("user", {}).get("id"))

    app.view(CallbackId.SQL_REQUEST.value)(handle_sql_request_view)
