"""The one escaping rule for text the bot writes in Slack mrkdwn (pure: no I/O).

Text that did not come from the bot's own formatting (people, git, files, SQL, PostgreSQL) goes
through ``escape``, ``code`` or ``code_block``; mentions and links are made only here, from ids and
URLs the bot knows. ``plain_text`` objects are not parsed by Slack and need none of this.

Usage::

    f":no_entry: {mention(user)} rejected this request: {escape(reason)}"
    f"*Migrations*\\n• {code(name)}\\n{code_block(error)}"
"""
from __future__ import annotations

import re
from typing import Any

Message = dict[str, Any]  # a Block Kit message: the keyword arguments of chat.postMessage / chat.update
SECTION_LIMIT = 2900  # Slack: 3,000 characters per section text
# Slack user ids (U…, W… on Enterprise Grid); the underscore is accepted for test and demo ids
# (U_REQ): it cannot open or close a token, which is all the check is for.
_USER_ID = re.compile(r"[UW][A-Z0-9_]+")  # always fullmatch: "$" would let a trailing newline through
_GROUP_ID = re.compile(r"S[A-Z0-9_]+")
_URL = re.compile(r"https?://[^\s<>|]+")
_FENCE = re.compile(r"`{3,}")
_SLACK_TOKEN = re.compile(r"<((?:[@#!]|https?://|mailto:)[^<>|\s]*)(?:\|([^<>]*))?>")


class Mrkdwn(str):
    """Text already in mrkdwn, its outside parts escaped (e.g. an error message that mentions approvers)."""


def escape(text: object) -> str:
    """``&``, ``<`` and ``>`` as entities (Slack's control characters) and no run of three backticks,
    so the text can neither make a mention or link nor open or close a code block."""
    out = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _FENCE.sub(lambda m: " ".join(m.group(0)), out)


def as_mrkdwn(text: str) -> str:
    """``text`` as it may go into a mrkdwn field: unchanged when it is already ``Mrkdwn``, else escaped."""
    return str(text) if isinstance(text, Mrkdwn) else escape(text)


def mention(user_id: str) -> str:
    """``<@U…>`` for a Slack user id; anything that is not an id shape is shown as text, never as a token."""
    return f"<@{user_id}>" if _USER_ID.fullmatch(user_id or "") else escape(user_id)


def group_mention(group_id: str) -> str:
    """``<!subteam^S…>`` for a Slack user-group id; anything else is shown as text."""
    return f"<!subteam^{group_id}>" if _GROUP_ID.fullmatch(group_id or "") else escape(group_id)


def mention_any(entry: str) -> str:
    """A config entry that is a user id or a user-group id, mentioned as what it is."""
    return group_mention(entry) if _GROUP_ID.fullmatch(entry or "") else mention(entry)


def link(url: str, label: str) -> str:
    """``<url|label>`` for a URL the bot made or got from Slack (a permalink); only http(s) URLs."""
    if not _URL.fullmatch(url or ""):
        return escape(label)
    return f"<{url.replace('&', '&amp;')}|{escape(label).replace('|', '¦')}>"


def code(text: object) -> str:
    """Inline code: escaped, and a backtick inside (which would end it) shown as a look-alike."""
    inner = escape(text).replace("`", "ˋ").replace("\n", " ")
    return f"`{inner}`" if inner else "` `"


def code_block(text: object) -> str:
    """A fenced block whose content cannot close the fence or make a token."""
    inner = escape(text)
    if inner.startswith("`"):
        inner = "\n" + inner
    if inner.endswith("`"):
        inner += "\n"
    return f"```{inner or ' '}```"


def plain(slack_text: str) -> str:
    """What a person wrote, as readable plain text for a file such as the post-mortem, the same whichever way
    it reached us (a thread reply keeps Slack's entities, a slash command's text is already decoded):
    ``@channel``, ``@dbas``, ``click (https://…)``; user mentions stay ``<@U…>`` as the post-mortem shows people."""
    text = (slack_text or "").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")

    def token(m: re.Match[str]) -> str:
        target, label = m.group(1), m.group(2) or ""
        if target.startswith("@"):
            return f"<{target}>" if _USER_ID.fullmatch(target[1:]) else "@" + (label or target[1:])
        if target.startswith("!subteam^"):
            return label if label.startswith("@") else "@" + (label or target.removeprefix("!subteam^"))
        if target.startswith("!"):
            return "@" + (label or target[1:].split("^")[0])
        if target.startswith("#"):
            return "#" + (label or target[1:])
        return f"{label} ({target})" if label and label != target else target

    return _SLACK_TOKEN.sub(token, text)


def clip(text: str, limit: int = SECTION_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, saying so; never inside an entity or a token, and a code block the
    cut opens is closed again."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 24]
    if cut.rfind("&") > cut.rfind(";"):
        cut = cut[: cut.rfind("&")]
    if cut.rfind("<") > cut.rfind(">"):
        cut = cut[: cut.rfind("<")]
    if cut.count("```") % 2:
        cut = cut.rstrip("`")
        cut += "\n```" if cut.count("```") % 2 else ""
    return cut + "\n… (truncated)"
