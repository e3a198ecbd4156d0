"""The `/migrate` slash command: parse, ack at once, then hand each subcommand to its handler."""
from __future__ import annotations

import logging
from typing import Any, Callable

from slack_bolt import Ack, App, Respond

from bot.config import GuardianConfig
from bot.slack.blocks import build_help_message, build_not_available_message, build_usage_message
from bot.slack.commands_grammar import CommandUsageError, HelpCommand, SlashCommand, parse_command
from bot.slack.ids import Command

logger = logging.getLogger(__name__)

# A subcommand handler runs after the ack; later issues add one per subcommand here.
SubcommandHandler = Callable[[SlashCommand, dict[str, Any], Respond], None]
SUBCOMMAND_HANDLERS: dict[type[SlashCommand], SubcommandHandler] = {}


def register(app: App, config: GuardianConfig) -> None:
    """Attach the `/migrate` listener to ``app``."""

    def handle_migrate_command(ack: Ack, command: dict[str, Any], respond: Respond) -> None:
        try:
            parsed = parse_command(command.get("text", ""))
        except CommandUsageError as exc:
            ack(**build_usage_message(exc.message), response_type="ephemeral")
            logger.info("/migrate usage error user=%s: %s", command.get("user_id"), exc.code)
            return
        if isinstance(parsed, HelpCommand):
            ack(**build_help_message(), response_type="ephemeral")
            return
        handler = SUBCOMMAND_HANDLERS.get(type(parsed))
        if handler is None:
            ack(**build_not_available_message(f"/migrate {parsed.name}"), response_type="ephemeral")
            return
        ack()
        logger.info("/migrate %s user=%s channel=%s", parsed.name, command.get("user_id"), command.get("channel_id"))
        handler(parsed, command, respond)

    app.command(Command.MIGRATE.value)(handle_migrate_command)
