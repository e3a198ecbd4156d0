"""The ``slack-post`` job: a thread message Slack did not take, even after the client's retries, posted again later.

Usage::

    run(request_id, {"text": "...", "blocks": [...]}, attempt=1)   # queued by Flow.post_later, never by hand
    run(request_id, message, 1, incident_id)                       # a post into an incident's thread
"""
from __future__ import annotations

import logging
from typing import Any

from workers.runtime import runtime

log = logging.getLogger(__name__)


def run(request_id: int, message: dict[str, Any], attempt: int = 1, incident_id: int | None = None) -> None:
    """Post ``message`` in the request's thread (or ``incident_id``'s); a failure queues the next late attempt or,
    when Slack's error cannot be fixed by waiting or the attempts are spent, records that the message was given up on."""
    rt = runtime()
    channel, thread_ts, elsewhere = rt.flow.thread_of(request_id, incident_id)
    if not rt.notifier.enabled or not channel or not thread_ts:
        log.warning("request %s: late post (attempt %s) has no Slack thread to go to; dropped", request_id, attempt)
        return
    where = f"incident {incident_id}" if incident_id is not None else f"request {request_id}"
    sent = rt.notifier.post(f"{where}: late post {attempt}", channel, message, thread_ts=thread_ts)
    if sent.error:
        rt.flow.post_later(request_id, message, sent.error, attempt + 1, incident_id=incident_id)
        return
    detail: dict[str, Any] = {"attempt": attempt, "what": str(message.get("text") or "")[:200]}
    if incident_id is not None:
        detail["elsewhere"] = elsewhere
    rt.store.record_event("slack.post_delivered_late", actor="guardian", request_id=request_id,
                          incident_id=incident_id, detail=detail)
    log.info("request %s: late post delivered in %s's thread (attempt %s)", request_id, where, attempt)
    rt.flow.refresh_card(request_id)  # the card stops saying the thread is behind once it is not
