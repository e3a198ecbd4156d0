"""The ``slack-post`` job: a thread message Slack did not take, even after the client's retries, posted again later.

Usage::

    run(request_id, {"text": "...", "blocks": [...]}, attempt=1)   # queued by Flow.post_later, never by hand
"""
from __future__ import annotations

import logging
from typing import Any

from workers.runtime import runtime

log = logging.getLogger(__name__)


def run(request_id: int, message: dict[str, Any], attempt: int = 1) -> None:
    """Post ``message`` in the request's thread; a failure queues the next late attempt or, when Slack's
    error cannot be fixed by waiting or the attempts are spent, records that the message was given up on."""
    rt = runtime()
    request = rt.store.get_request(request_id)
    if not rt.notifier.enabled or not request.channel or not request.thread_ts:
        log.warning("request %s: late post (attempt %s) has no Slack thread to go to; dropped", request_id, attempt)
        return
    sent = rt.notifier.post(f"request {request_id}: late post {attempt}", request.channel, message,
                            thread_ts=request.thread_ts)
    if sent.error:
        rt.flow.post_later(request_id, message, sent.error, attempt + 1)
        return
    rt.store.record_event("slack.post_delivered_late", actor="guardian", request_id=request_id,
                          detail={"attempt": attempt, "what": str(message.get("text") or "")[:200]})
    log.info("request %s: late post delivered (attempt %s)", request_id, attempt)
    rt.flow.refresh_card(request_id)  # the card stops saying the thread is behind once it is not
