"""What real Slack refuses, for the stand-in: Block Kit and view validity, scopes per method and event, membership.

Usage::

    problems = message_problems({"text": "hi", "blocks": [...]})     # [] when Slack would accept it
    needed = needed_scope("usergroups.users.list", {}, kind="public")  # "usergroups:read"
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

# Documented limits (docs.slack.dev, Block Kit reference and chat.postMessage)
MESSAGE_BLOCKS = 50
VIEW_BLOCKS = 100
MESSAGE_TEXT = 40_000
SECTION_TEXT = 3000
SECTION_FIELDS = 10
FIELD_TEXT = 2000
HEADER_TEXT = 150
BUTTON_TEXT = 75
ID_LENGTH = 255  # block_id, action_id

# channel kind -> the scope a bot token needs to read its history
HISTORY_SCOPES = {"public": "channels:history", "private": "groups:history", "im": "im:history", "mpim": "mpim:history"}
METHOD_SCOPES: dict[str, str | None] = {
    "api.test": None,
    "auth.test": None,
    "chat.postMessage": "chat:write",
    "chat.update": "chat:write",
    "chat.postEphemeral": "chat:write",
    "chat.getPermalink": None,
    "views.open": None,
    "views.update": None,
    "usergroups.users.list": "usergroups:read",
    "users.info": "users:read",
    "reactions.add": "reactions:write",
    "files.getUploadURLExternal": "files:write",
    "files.completeUploadExternal": "files:write",
    # conversations.replies / conversations.history: HISTORY_SCOPES by the channel's kind
}
HISTORY_METHODS = frozenset({"conversations.replies", "conversations.history"})
# methods that answer not_in_channel when the bot is not a member (chat.postMessage: unless chat:write.public
# lets it post in a public channel)
MEMBER_METHODS = frozenset({"chat.postMessage", "chat.postEphemeral", "chat.update", "conversations.replies",
                            "conversations.history"})

# event subscription -> the scope without which Slack never delivers it
EVENT_SCOPES: dict[str, str | None] = {
    "message.channels": "channels:history",
    "message.groups": "groups:history",
    "message.im": "im:history",
    "message.mpim": "mpim:history",
    "reaction_added": "reactions:read",
    "reaction_removed": "reactions:read",
    "app_mention": "app_mentions:read",
    "app_rate_limited": None,
}
MESSAGE_SUBSCRIPTIONS = {"public": "message.channels", "private": "message.groups", "im": "message.im",
                         "mpim": "message.mpim"}


def channel_kind(channel: str, private: Iterable[str] = ()) -> str:
    """public | private | im | mpim: D… is a DM, G… (or a channel listed in ``private``) a private channel."""
    if channel.startswith("D"):
        return "im"
    if channel in private or channel.startswith("G"):
        return "private"
    return "public"


def needed_scope(method: str, params: dict[str, Any], *, kind: str) -> str | None:
    """The scope a bot token needs for ``method`` on a channel of ``kind`` (None: no scope)."""
    if method in HISTORY_METHODS:
        return HISTORY_SCOPES[kind]
    return METHOD_SCOPES.get(method)


def event_subscription(event: dict[str, Any], private: Iterable[str] = ()) -> str:
    """The subscription name Slack delivers ``event`` under (message events by their channel's kind)."""
    kind = str(event.get("type") or "")
    if kind == "message":
        return MESSAGE_SUBSCRIPTIONS[channel_kind(str(event.get("channel") or ""), private)]
    return kind


def event_channel(event: dict[str, Any]) -> str | None:
    """The channel an event happened in (a reaction's item's channel), None for workspace events."""
    item = event.get("item")
    if isinstance(item, dict) and item.get("channel"):
        return str(item["channel"])
    return str(event["channel"]) if event.get("channel") else None


# ---------------------------------------------------------------- Block Kit


def message_problems(params: dict[str, Any]) -> tuple[str, list[str]]:
    """(Slack's error code, messages) for a chat.postMessage / chat.update / chat.postEphemeral payload; ("", [])
    when Slack would accept it."""
    text = params.get("text")
    if isinstance(text, str) and len(text) > MESSAGE_TEXT:
        return "msg_too_long", [f"text is {len(text)} characters; at most {MESSAGE_TEXT}"]
    blocks = params.get("blocks")
    if blocks is None or blocks == "" or blocks == []:  # no blocks: the text is the message
        return "", []
    problems = blocks_problems(blocks, MESSAGE_BLOCKS, "/blocks")
    return ("invalid_blocks", problems) if problems else ("", [])


def view_problems(view: Any) -> list[str]:
    """Why Slack would refuse ``view`` in views.open / views.update ([] when it would not)."""
    if not isinstance(view, dict):
        return ["view must be an object [json-pointer:/view]"]
    problems = blocks_problems(view.get("blocks"), VIEW_BLOCKS, "/view/blocks")
    if problems:
        return problems
    try:
        View(**{k: v for k, v in view.items() if k != "blocks"}, blocks=view.get("blocks")).to_dict()
    except (SlackObjectFormationError, TypeError, AttributeError, KeyError) as exc:
        return [f"{exc} [json-pointer:/view]"]
    return []


def blocks_problems(blocks: Any, most: int, where: str) -> list[str]:
    """Every reason Slack would refuse ``blocks``: slack_sdk's models (type, required fields, their limits,
    fields it does not know) and the documented limits it does not check (section fields, block_id reuse)."""
    if not isinstance(blocks, list) or not blocks:
        return [f"blocks must be a non-empty array [json-pointer:{where}]"]
    problems = []
    if len(blocks) > most:
        problems.append(f"no more than {most} items allowed [json-pointer:{where}]")
    seen: set[str] = set()
    for index, block in enumerate(blocks):
        at = f"{where}/{index}"
        if not isinstance(block, dict):
            problems.append(f"block must be an object [json-pointer:{at}]")
            continue
        problems += _model_problems(block, at)
        problems += _limit_problems(block, at)
        block_id = block.get("block_id")
        if isinstance(block_id, str):
            if block_id in seen:
                problems.append(f"block_id {block_id!r} is used twice [json-pointer:{at}/block_id]")
            seen.add(block_id)
    return problems


def _model_problems(block: dict[str, Any], at: str) -> list[str]:
    try:
        parsed = Block.parse(block)
    except (SlackObjectFormationError, TypeError, AttributeError, KeyError, ValueError) as exc:
        return [f"{exc} [json-pointer:{at}]"]
    if parsed is None or type(parsed) is Block:
        return [f"unknown block type {block.get('type')!r} [json-pointer:{at}/type]"]
    try:
        rendered = parsed.to_dict()
    except SlackObjectFormationError as exc:
        return [f"{exc} [json-pointer:{at}]"]
    return [f"unknown field [json-pointer:{at}{p}]" for p in _dropped(block, rendered)]


def _dropped(sent: Any, kept: Any, at: str = "") -> Iterator[str]:
    """Paths of keys in ``sent`` that slack_sdk's model did not keep: fields Slack does not know."""
    if isinstance(sent, dict) and isinstance(kept, dict):
        for key, value in sent.items():
            if key not in kept:
                if value not in (None, False):  # an explicit null / false default is harmless
                    yield f"{at}/{key}"
            else:
                yield from _dropped(value, kept[key], f"{at}/{key}")
    elif isinstance(sent, list) and isinstance(kept, list):
        for index, (a, b) in enumerate(zip(sent, kept)):
            yield from _dropped(a, b, f"{at}/{index}")


def _text(obj: Any) -> str:
    return str(obj.get("text") or "") if isinstance(obj, dict) else ""


def _limit_problems(block: dict[str, Any], at: str) -> list[str]:
    """The documented limits, checked here whether or not slack_sdk checks them too."""
    problems = []
    kind = block.get("type")
    if kind == "section":
        if len(_text(block.get("text"))) > SECTION_TEXT:
            problems.append(f"must be less than {SECTION_TEXT + 1} characters [json-pointer:{at}/text/text]")
        fields = block.get("fields") or []
        if len(fields) > SECTION_FIELDS:
            problems.append(f"no more than {SECTION_FIELDS} items allowed [json-pointer:{at}/fields]")
        for i, item in enumerate(fields):
            if len(_text(item)) > FIELD_TEXT:
                problems.append(f"must be less than {FIELD_TEXT + 1} characters [json-pointer:{at}/fields/{i}/text]")
    if kind == "header" and len(_text(block.get("text"))) > HEADER_TEXT:
        problems.append(f"must be less than {HEADER_TEXT + 1} characters [json-pointer:{at}/text/text]")
    if len(str(block.get("block_id") or "")) > ID_LENGTH:
        problems.append(f"must be less than {ID_LENGTH + 1} characters [json-pointer:{at}/block_id]")
    for path, element in _elements(block, at):
        if element.get("type") == "button" and len(_text(element.get("text"))) > BUTTON_TEXT:
            problems.append(f"must be less than {BUTTON_TEXT + 1} characters [json-pointer:{path}/text/text]")
        if len(str(element.get("action_id") or "")) > ID_LENGTH:
            problems.append(f"must be less than {ID_LENGTH + 1} characters [json-pointer:{path}/action_id]")
    return problems


def _elements(block: dict[str, Any], at: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for i, element in enumerate(block.get("elements") or []):
        if isinstance(element, dict):
            yield f"{at}/elements/{i}", element
    for key in ("accessory", "element"):
        if isinstance(block.get(key), dict):
            yield f"{at}/{key}", block[key]


def error_body(code: str, problems: list[str]) -> dict[str, Any]:
    """Slack's answer for refused blocks: the code, ``errors`` and ``response_metadata.messages``."""
    return {"ok": False, "error": code, "errors": problems,
            "response_metadata": {"messages": [f"[ERROR] {p}" for p in problems]}}
