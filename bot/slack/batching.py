"""Fewer, fuller thread messages: consecutive Block Kit messages combined up to Slack's per-message limits.

Slack accepts about one message a second per channel, so a 45-migration preview posted as 91 messages
would be throttled for a minute and a half; combined, it is a handful.

Usage::

    for message in combine(sql_messages + risk_messages):
        flow.post_in_thread(request, message)
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from bot.slack.mrkdwn import Message

MAX_BLOCKS = 50        # Slack: blocks per message
MAX_BLOCK_CHARS = 12_000  # well under what Slack takes in one message's blocks (msg_blocks_too_long)
MAX_TEXT = 3_000       # the notification text of a combined message
FILES_PER_UPLOAD = 10  # files shared by one files.completeUploadExternal call


def combine(messages: Iterable[Message]) -> Iterator[Message]:
    """``messages`` in order, consecutive ones merged (a divider between them) while the result stays
    within MAX_BLOCKS blocks and MAX_BLOCK_CHARS characters; a message too big to merge goes alone."""
    blocks: list[dict[str, Any]] = []
    texts: list[str] = []
    size = 0
    for message in messages:
        own = list(message.get("blocks") or [])
        own_size = len(json.dumps(own))
        if blocks and (len(blocks) + 1 + len(own) > MAX_BLOCKS or size + own_size > MAX_BLOCK_CHARS):
            yield _merged(texts, blocks)
            blocks, texts, size = [], [], 0
        if blocks:
            blocks.append({"type": "divider"})
        taken = {b.get("block_id") for b in blocks}
        blocks.extend({**b, "block_id": f"{b['block_id']}.{len(blocks)}"} if b.get("block_id") in taken - {None}
                      else b for b in own)  # Slack refuses a block_id used twice in one message
        texts.append(str(message.get("text") or ""))
        size += own_size
    if blocks or texts:
        yield _merged(texts, blocks)


def _merged(texts: list[str], blocks: list[dict[str, Any]]) -> Message:
    text = texts[0] if len(texts) == 1 else f"{texts[0]} (and {len(texts) - 1} more)"
    return {"text": text[:MAX_TEXT], "blocks": blocks}


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    """``items`` in consecutive lists of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start:start + size]
