"""Telling the request's Slack thread what the pipeline did: step outcomes, timings, the refreshed status card.

Usage::

    report.post(rt, request, rt.notifier.step_report(request.id, "backup", "succeeded", 1234))
    report.refresh_card(rt, request.id)

Reporting never changes a step's outcome: a post Slack refuses is recorded (slack.post_failed) and tried again
later by a job, as every thread post is (Flow.post_in_thread), and the pipeline goes on.
"""
from __future__ import annotations

import logging
from typing import Any

from bot.models import Request

log = logging.getLogger(__name__)


def post(rt: Any, request: Request, message: dict[str, Any]) -> str | None:
    """Reply in the request's thread through Flow.post_in_thread (a post Slack refuses is recorded and tried
    again later); the reply's ts, or None (and nothing sent) without Slack, a thread, or Slack's taking it."""
    if not request.thread_ts:
        log.debug("request %s: no Slack thread; message not posted", request.id)
        return None
    return rt.flow.post_in_thread(request, message)


def refresh_card(rt: Any, request_id: int, note: str | None = None) -> None:
    """Re-render the root status card from the store with the lead's card (Flow.refresh_card) when installed."""
    try:
        flow = rt.flow
    except AttributeError:
        return  # no card builder yet: the thread replies are the report
    try:
        flow.refresh_card(request_id, note=note)
    except Exception:  # the card is another team's code; a bug there must not fail a migration
        log.exception("request %s: refreshing the status card failed; the pipeline goes on", request_id)


def open_incident(request_id: int) -> None:
    """Open the incident thread for a failed request (a failed rollback reports to its parent's incident)."""
    from bot.incidents import IncidentService
    from workers.runtime import runtime

    try:
        IncidentService(runtime().flow).on_request_failed(request_id)
    except Exception:  # noqa: BLE001 - the failure is already recorded and reported; the incident must not mask it
        log.exception("request %s: opening the incident failed; the failure is in the thread", request_id)


def request_finished(request_id: int) -> None:
    """A request succeeded: a rollback request mitigates its parent's incident."""
    from bot.incidents import IncidentService
    from workers.runtime import runtime

    try:
        IncidentService(runtime().flow).on_request_finished(request_id)
    except Exception:  # noqa: BLE001 - the run succeeded; reporting must not turn it into a failure
        log.exception("request %s: updating the incident failed", request_id)
