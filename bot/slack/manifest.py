"""The Slack app manifest for `guardian manifest`: the /migrate command, interactivity, events and scopes.

Usage::

    print(json.dumps(build_manifest("Migration Guardian", "https://guardian.example.com", socket_mode=False)))
"""
from __future__ import annotations

from typing import Any

from bot.errors import ConfigError
from bot.slack.ids import Command
from bot.slack.server import EVENTS_PATH

# Exactly the scopes the bot uses (a test checks each against the Web API methods and events that need it):
BOT_SCOPES: tuple[str, ...] = (
    "commands",           # the /migrate slash command
    "chat:write",         # cards, thread steps, ephemerals (chat.postMessage, chat.update, chat.postEphemeral)
    "chat:write.public",  # post to the configured [slack] channel / incident_channel before anyone invites the bot
    "files:write",        # SQL too long for a message, the post-mortem, a rollout's Targets file
                          # (files.getUploadURLExternal, ...)
    "usergroups:read",    # approvers named by user group (usergroups.users.list)
    "channels:history",   # replies in incident threads (message.channels) and reading a pinned message
                          # (conversations.replies) in public channels
    "groups:history",     # the same in private channels (message.groups), so a private incident channel works
    "reactions:read",     # 📌 reactions on incident messages (reaction_added)
    "users:read",         # people's names in the post-mortem draft (users.info)
)
BOT_EVENTS: tuple[str, ...] = ("message.channels", "message.groups", "reaction_added")
USAGE_HINT = "help | plan <env> [<migration>…|pending] [--ref <git ref>] | sql <env> | status [<env>] | …"


def build_manifest(name: str = "Migration Guardian", request_url: str | None = None, socket_mode: bool = False) -> dict:
    """A manifest dict (JSON/YAML-serialisable). ``request_url`` is the public base URL or the full
    ``…/slack/events`` URL; it is required unless ``socket_mode``."""
    url = None
    if not socket_mode:
        if not request_url:
            raise ConfigError("a public request URL is required unless Socket Mode is used", code="usage-error")
        base = request_url.rstrip("/")
        url = base if base.endswith(EVENTS_PATH) else base + EVENTS_PATH
        if not url.startswith(("https://", "http://")):
            raise ConfigError(f"request URL must start with https://, got {request_url!r}", code="usage-error")
    command: dict[str, Any] = {
        "command": Command.MIGRATE.value,
        "description": "Review, approve and run PostgreSQL migrations",
        "usage_hint": USAGE_HINT,
        "should_escape": False,
    }
    interactivity: dict[str, Any] = {"is_enabled": True}
    events: dict[str, Any] = {"bot_events": list(BOT_EVENTS)}
    if url is not None:
        command["url"] = url
        interactivity["request_url"] = url
        events["request_url"] = url
    return {
        "display_information": {
            "name": name,
            "description": "Reviews, approves and safely runs PostgreSQL migrations from Slack.",
        },
        "features": {
            "bot_user": {"display_name": name, "always_online": True},
            "slash_commands": [command],
        },
        "oauth_config": {"scopes": {"bot": list(BOT_SCOPES)}},
        "settings": {
            "event_subscriptions": events,
            "interactivity": interactivity,
            "org_deploy_enabled": False,
            "socket_mode_enabled": socket_mode,
            "token_rotation_enabled": False,
        },
    }
