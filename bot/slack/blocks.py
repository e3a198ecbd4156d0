"""Block Kit builders (pure: no I/O); each returns the keyword arguments for ack/respond/chat.postMessage.

Usage::

    ack(**build_help_message(), response_type="ephemeral")
"""
from __future__ import annotations

from bot.slack.commands_grammar import SUBCOMMANDS, usage_line
from bot.slack.ids import BlockId
from bot.slack.mrkdwn import Message, as_mrkdwn, code, escape


def build_help_message() -> Message:
    """The `/migrate` command list (DESIGN §7), one line per subcommand."""
    lines = [f"{code(usage_line(c))} — {escape(c.summary)}" for c in SUBCOMMANDS]
    text = "Migration Guardian commands:\n" + "\n".join(lines)
    return {
        "text": text,
        "blocks": [
            {
                "type": "section",
                "block_id": BlockId.HELP.value,
                "text": {"type": "mrkdwn", "text": "*Migration Guardian commands*\n" + "\n".join(lines)},
            }
        ],
    }


def build_usage_message(message: str) -> Message:
    """A usage error: what was wrong and the usage line (``message`` is escaped unless it is ``Mrkdwn``)."""
    return {"text": f":warning: {as_mrkdwn(message)}"}


def build_error_message(message: str, error_id: str | None = None) -> Message:
    """A failure the user can act on (GuardianError) or quote (``error_id`` for unexpected errors).

    ``message`` may quote what people typed, git or PostgreSQL: it is escaped unless it is ``Mrkdwn``."""
    if error_id is None:
        return {"text": f":x: {as_mrkdwn(message)}"}
    return {"text": f":x: {as_mrkdwn(message)} If you report it, quote error id `{error_id}`."}


def build_not_available_message(what: str) -> Message:
    """A recognised command or button whose behaviour this version does not have yet."""
    return {"text": f":construction: {code(what)} is not available in this version of Migration Guardian yet."}
